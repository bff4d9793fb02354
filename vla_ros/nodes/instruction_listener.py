"""instruction_listener: /vla/instruction text → the normalized task on /vla/task (latched), or a rejection."""

from __future__ import annotations

import sys

from rclpy.node import Node
from std_msgs.msg import String

from vla_ros.core import topics
from vla_ros.core.cdr import string_payload
from vla_ros.core.instruction import InstructionDecision, InstructionSettings, interpret_instruction
from vla_ros.nodes.diagnostics import OK, DiagnosticsReporter
from vla_ros.nodes.parameters import SettingsParameters
from vla_ros.nodes.qos import COMMANDS, LATCHED
from vla_ros.nodes.runtime import run_node

class InstructionListener(Node):
    def __init__(self):
        super().__init__("instruction_listener")
        self.settings = SettingsParameters(self, InstructionSettings)
        self.task = ""
        self.counts = {"accepted": 0, "rejected": 0, "stops": 0}
        self.last_rejection = ""
        self.task_pub = self.create_publisher(String, topics.TASK, LATCHED)
        self.rejected_pub = self.create_publisher(String, topics.INSTRUCTION_REJECTED, COMMANDS)
        # Raw: rclpy would silently replace invalid UTF-8, which must be rejected instead.
        self.create_subscription(String, topics.INSTRUCTION, self.on_instruction, COMMANDS, raw=True)
        self.task_pub.publish(String(data=self.task))  # latched idle task until the first instruction
        DiagnosticsReporter(self, self.report)
        self.get_logger().info(f"listening on {topics.INSTRUCTION}; max_chars={self.settings.value.max_chars}")

    def on_instruction(self, raw: bytes) -> None:
        try:
            decision = interpret_instruction(string_payload(raw), self.settings.value.max_chars)
        except ValueError as exc:
            decision = InstructionDecision(accepted=False, reason=f"malformed instruction message: {exc}")
        if not decision.accepted:
            self.counts["rejected"] += 1
            self.last_rejection = decision.reason
            self.rejected_pub.publish(String(data=decision.reason))
            self.get_logger().warning(f"rejected instruction: {decision.reason}", throttle_duration_sec=1.0)
            return
        self.counts["accepted"] += 1
        self.counts["stops"] += decision.is_stop
        self.task = decision.task
        self.task_pub.publish(String(data=self.task))
        self.get_logger().info("stop: task is now idle" if decision.is_stop else f"task: '{self.task}'")

    def report(self):
        # Rejections are the user's input errors, not a fault of the node: the level stays OK.
        message = f"task: '{self.task}'" if self.task else "idle"
        return OK, message, {**{k: str(v) for k, v in self.counts.items()}, "last_rejection": self.last_rejection}


def main(args: list[str] | None = None) -> int:
    return run_node("instruction_listener", InstructionListener, args)


if __name__ == "__main__":
    sys.exit(main())
