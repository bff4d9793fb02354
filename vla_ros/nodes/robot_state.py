"""robot_state: /robot_description and /tf from /joint_states for an arm whose driver publishes neither.

What robot_state_publisher does, with the wx250s URDF that widowx_sim uses (`vla_ros.robot.urdf`): the URDF
latched on /robot_description, the fixed links on /tf_static once, the movable joints on /tf for every
/joint_states message, stamped with it. The Interbotix bring-up runs its own robot_state_publisher; this node is
for set-ups without one (graph argument robot_state:=true with use_sim:=false).
"""

from __future__ import annotations

import sys

from rclpy.node import Node
from sensor_msgs.msg import JointState

from vla_ros.core import topics
from vla_ros.nodes.diagnostics import OK, WARN, DiagnosticsReporter
from vla_ros.nodes.frames import RobotFrames
from vla_ros.nodes.parameters import ParameterError, SettingsParameters
from vla_ros.nodes.qos import DEFAULT
from vla_ros.nodes.runtime import run_node
from vla_ros.robot.frames import RobotStateSettings
from vla_ros.robot.urdf import URDF_PATH, UrdfError, load_robot


class RobotState(Node):
    def __init__(self):
        super().__init__("robot_state")
        self.settings = SettingsParameters(self, RobotStateSettings).value
        try:
            robot = load_robot(self.settings.urdf_path or URDF_PATH)
        except UrdfError as exc:
            raise ParameterError(f"urdf_path: {exc}") from None
        self.frames = RobotFrames(self, robot, publish_description=self.settings.publish_description,
                                  prefix=self.settings.frame_prefix)
        self.received = 0
        self.create_subscription(JointState, topics.JOINT_STATES, self.on_joint_states, DEFAULT)
        DiagnosticsReporter(self, self.report)
        self.get_logger().info(f"{robot.name}: {len(robot.links)} links, {len(robot.movable_joints)} movable joints")

    def on_joint_states(self, msg: JointState) -> None:
        self.received += 1
        self.frames.publish_joints(msg.name, msg.position, msg.header.stamp)

    def report(self):
        values = {"joint_states": str(self.received), "publishes_tf": str(self.frames.publishes_tf).lower()}
        if not self.received:
            return WARN, "no /joint_states yet", values
        return OK, "publishing" if self.frames.publishes_tf else "publishing /robot_description only", values


def main(args: list[str] | None = None) -> int:
    return run_node("robot_state", RobotState, args)


if __name__ == "__main__":
    sys.exit(main())
