"""The main() every vla_ros node shares: init, spin, a clean exit on Ctrl-C, one sentence on bad configuration."""

from __future__ import annotations

import sys
import threading
import traceback
from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node

from vla_ros.core.dds_profile import use_discovery_profile
from vla_ros.nodes.parameters import ParameterError
from vla_ros.nodes.realtime import freeze_startup_objects


def run_node(name: str, make_node: Callable[[], Node], args: list[str] | None = None,
             threads: int | Callable[[Node], int] = 1) -> int:
    """Create the node, spin it until shutdown, and return the process exit code.

    One executor thread unless a node blocks inside a callback (`threads` > 1). rclpy's MultiThreadedExecutor
    costs far more CPU per callback: in the executor test graph, idle, the safety monitor took 25-68 % of a
    core and the chunk executor 37 % with it, 5-8 % and 5 % with the single-threaded one, and on the 2-core
    machine the multi-threaded monitor fell 0.1-2 s behind its inputs (stale-input vetoes of live commands).
    Work that must not wait behind callbacks runs in threads of its own (`NodeThreads`). `threads` may be a
    function of the built node, for a node that needs a second thread only in some configurations.
    """
    use_discovery_profile()
    rclpy.init(args=args)
    node = None
    try:
        node = make_node()
        freeze_startup_objects()  # full collections over start-up objects stalled the policy node for seconds
        count = threads(node) if callable(threads) else threads
        executor = SingleThreadedExecutor() if count <= 1 else MultiThreadedExecutor(num_threads=count)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ParameterError as exc:
        print(f"[{name}] configuration error: {exc}", file=sys.stderr)
        return 2
    except Exception:
        if node is None or rclpy.ok():
            raise
        # A node that ends itself (bag_player at the end of the bag) shuts ROS down from its own thread and
        # destroys the node's handles, possibly under a callback that is running: that is an orderly exit.
    finally:
        if node is not None:
            try:
                node.destroy_node()
            except Exception:
                # A signal shut the context down while destroy_node() tore down its handles (seen under load as an
                # rcl guard-condition error): the exit is still orderly. With ROS up, the error is real.
                if rclpy.ok():
                    raise
        rclpy.try_shutdown()
    return 0


class NodeThreads:
    """The threads a node runs beside its executor, and the event that tells them to stop.

    Made first thing in a node's __init__, so destroy_node() can call `stop()` whatever __init__ got to
    (rclpy's shutdown destroys a node that was refused half-way through, too).

    Ctrl-C or SIGTERM shuts the ROS context down before destroy_node() can stop the threads, so a publish
    in between fails ("publisher's context is invalid"). Such an error ends that thread quietly; any error
    while ROS is still up is raised as usual.
    """

    def __init__(self, node: Node):
        self.node = node
        self.stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, target: Callable[[], None], name: str) -> None:
        def run() -> None:
            try:
                target()
            except Exception:
                if self.node.context.ok():
                    raise

        thread = threading.Thread(target=run, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def stop(self, timeout_s: float) -> None:
        """Set `stopping` and wait up to `timeout_s` for each thread; one still running is named on stderr with
        where it is (the threads are daemons: the process still exits)."""
        self.stopping.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=timeout_s)
            if thread.is_alive():
                frame = sys._current_frames().get(thread.ident)
                where = "".join(traceback.format_stack(frame)[-4:]) if frame is not None else "(no frame)\n"
                print(f"[{self.node.get_name()}] thread {thread.name} did not stop within {timeout_s:.1f} s; it is "
                      f"at:\n{where}", file=sys.stderr, end="", flush=True)
