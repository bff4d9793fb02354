"""command_relay: the pass-through from the executor's command topics to the arm controllers.

It stands where the safety monitor will stand, with the same topic names, so the gate drops in without
changing other nodes. It forwards each command unchanged except for the header stamp: the executor
stamps commands with their observation time, while a JointTrajectoryController reads a non-zero stamp
as the trajectory's start time, so forwarded commands carry a zero stamp ("start now").
"""

from __future__ import annotations

import sys

from rclpy.node import Node
from trajectory_msgs.msg import JointTrajectory

from vla_ros.core import topics
from vla_ros.nodes.diagnostics import OK, DiagnosticsReporter
from vla_ros.nodes.qos import COMMANDS
from vla_ros.nodes.runtime import run_node


class CommandRelay(Node):
    def __init__(self):
        super().__init__("command_relay")
        self.forwarded = {"arm": 0, "gripper": 0}
        for key, source, target in (("arm", topics.ARM_COMMAND, topics.ARM_CONTROLLER),
                                    ("gripper", topics.GRIPPER_COMMAND, topics.GRIPPER_CONTROLLER)):
            publisher = self.create_publisher(JointTrajectory, target, COMMANDS)
            self.create_subscription(JointTrajectory, source,
                                     lambda msg, p=publisher, k=key: self.forward(msg, p, k), COMMANDS)
        DiagnosticsReporter(self, lambda: (OK, "forwarding (no safety checks)",
                                           {k: str(v) for k, v in self.forwarded.items()}))
        self.get_logger().warning("command_relay forwards commands WITHOUT safety checks; use safety_monitor on an arm")

    def forward(self, msg: JointTrajectory, publisher, key: str) -> None:
        msg.header.stamp.sec, msg.header.stamp.nanosec = 0, 0
        publisher.publish(msg)
        self.forwarded[key] += 1


def main(args: list[str] | None = None) -> int:
    return run_node("command_relay", CommandRelay, args)


if __name__ == "__main__":
    sys.exit(main())
