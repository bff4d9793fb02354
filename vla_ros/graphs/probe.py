"""Talking to a running graph from a private rclpy context.

Used by `vla-ros demo`, the benchmarks and the multi-process tests alike: each waits for discovery by
matched counts, never by fixed sleeps.
"""

from __future__ import annotations

import os
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
