"""The main() every vla_ros node shares: init, spin, a clean exit on Ctrl-C, one sentence on bad configuration."""

from __future__ import annotations

import sys
from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node

from vla_ros.core.dds_profile import use_discovery_profile
from vla_ros.nodes.parameters import ParameterError


def run_node(name: str, make_node: Callable[[], Node], args: list[str] | None = None, threads: int = 2) -> int:
    """Create the node, spin it until shutdown, and return the process exit code."""
    use_discovery_profile()
    rclpy.init(args=args)
    node = None
    try:
        node = make_node()
        executor = MultiThreadedExecutor(num_threads=threads)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ParameterError as exc:
        print(f"[{name}] configuration error: {exc}", file=sys.stderr)
        return 2
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
