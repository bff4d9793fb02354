"""Periodic /diagnostics reports for a node."""

from __future__ import annotations

import socket
from typing import Callable

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node

from vla_ros.core.topics import DIAGNOSTICS
from vla_ros.nodes.qos import DEFAULT

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR

# A report: (level, message, key/value pairs).
Report = tuple[bytes, str, dict[str, str]]


class DiagnosticsReporter:
    """Publishes one DiagnosticStatus named after the node every `period_s`, filled in by `report()`."""

    def __init__(self, node: Node, report: Callable[[], Report], period_s: float = 1.0):
        self._node = node
        self._report = report
        self._publisher = node.create_publisher(DiagnosticArray, DIAGNOSTICS, DEFAULT)
        self._name = f"{node.get_namespace().rstrip('/')}/{node.get_name()}".lstrip("/")
        self._hardware_id = socket.gethostname()
        # Own group: a report never waits behind a long callback of the node.
        self._timer = node.create_timer(period_s, self.publish, callback_group=MutuallyExclusiveCallbackGroup())

    def publish(self) -> None:
        level, message, values = self._report()
        status = DiagnosticStatus(
            level=level,
            name=self._name,
            message=message,
            hardware_id=self._hardware_id,
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
        )
        array = DiagnosticArray(status=[status])
        array.header.stamp = self._node.get_clock().now().to_msg()
        self._publisher.publish(array)
