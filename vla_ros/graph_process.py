"""Running a graph as a subprocess and talking to it from a private rclpy context.

Used by `vla-ros demo`, the benchmarks and the multi-process tests alike: each waits for discovery by
matched counts, never by fixed sleeps.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Callable

import rclpy
from rclpy.executors import SingleThreadedExecutor


class ProbeNode:
    """A node in its own Context to publish, subscribe and wait from a test, benchmark or demo."""

    def __init__(self, name: str = "vla_ros_probe"):
        from vla_ros.core.dds_profile import use_discovery_profile  # noqa: PLC0415

        use_discovery_profile()
        self.context = rclpy.Context()
        domain = os.environ.get("ROS_DOMAIN_ID")
        rclpy.init(context=self.context, **({"domain_id": int(domain)} if domain else {}))
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_until(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
            self.executor.spin_once(timeout_sec=0.02)

    def spin_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)

    def wait_for_reports(self, nodes, timeout_s: float = 60.0) -> None:
        """Wait until each named node has published on /diagnostics.

        Discovery on localhost is asymmetric: this node sees a remote node's endpoints at once, but the
        remote node may learn of this node's subscriptions seconds later, and what it publishes meanwhile is
        lost. A report received from a node proves that node already knows this participant.
        """
        from diagnostic_msgs.msg import DiagnosticArray  # noqa: PLC0415

        if not hasattr(self, "_reporting"):
            self._reporting: set[str] = set()
            self.node.create_subscription(
                DiagnosticArray, "/diagnostics",
                lambda msg: self._reporting.update(s.name.rsplit("/", 1)[-1] for s in msg.status), 10)
        missing = lambda: set(nodes) - self._reporting  # noqa: E731
        self.spin_until(lambda: not missing(), timeout_s, f"reports from {sorted(missing())}")

    def collect(self, msg_type, topic: str, qos) -> list:
        received: list = []
        self.node.create_subscription(msg_type, topic, received.append, qos)
        return received

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


class GraphProcess:
    """`vla-ros launch GRAPH args…` in a subprocess, its output captured line by line."""

    def __init__(self, graph: str, *arguments: str, echo: bool = False, grace_s: float = 5.0):
        self.echo = echo
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vla_ros.cli", "launch", graph, *arguments, "--grace", str(grace_s)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if self.echo:
                print(f"  {line}", end="", flush=True)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def pid(self, node: str, timeout_s: float = 30.0) -> int:
        """The process id `vla-ros launch` reported for a node."""
        deadline = time.monotonic() + timeout_s
        pattern = re.compile(rf"started {re.escape(node)} \(pid (\d+)\)")
        while time.monotonic() < deadline:
            for line in list(self.lines):
                match = pattern.search(line)
                if match:
                    return int(match.group(1))
            time.sleep(0.05)
        raise TimeoutError(f"{node} was never started:\n{self.output}")

    def stop(self, timeout_s: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._reader.join(timeout=5)
        return code
