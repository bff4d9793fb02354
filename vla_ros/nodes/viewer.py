"""viewer: the live view of a running graph in rerun (what `vla-ros view` starts, or the graph with view:=true).

Subscribes to the topics `vla_ros.viewer.feed` lists and logs them through `ViewerRecording`: camera frames, the
arm from /joint_states and the URDF, chunk paths, commands, vetoes, task and plan, per-node latency from
/diagnostics. It only subscribes, so the graph never waits for it; the high-rate streams (camera, joint states,
diagnostics) are read best-effort, so a slow viewer costs their publishers no retransmissions. A viewer that
cannot start (a port in use, no display) says so in one sentence and exits; nothing else notices.
"""

from __future__ import annotations

import sys
from functools import partial

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseArray
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from vla_ros.core import topics
from vla_ros.nodes.parameters import ParameterError, SettingsParameters
from vla_ros.nodes.qos import COMMANDS, LATCHED, SENSOR_LATEST
from vla_ros.nodes.runtime import run_node
from vla_ros.viewer.feed import GROUNDING, ViewerFeed
from vla_ros.viewer.server import ViewerError, ViewerSettings

BEST_EFFORT = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
SUBSCRIPTIONS = (  # topic, message class, QoS
    (topics.CAMERA_IMAGE, Image, SENSOR_LATEST),
    (topics.CAMERA_IMAGE_COMPRESSED, CompressedImage, SENSOR_LATEST),
    (topics.JOINT_STATES, JointState, BEST_EFFORT),
    (topics.INSTRUCTION, String, COMMANDS),
    (topics.INSTRUCTION_REJECTED, String, COMMANDS),
    (topics.TASK, String, LATCHED),
    (topics.PLAN, String, COMMANDS),
    (topics.ACTION_CHUNK, JointTrajectory, COMMANDS),
    (topics.ARM_COMMAND, JointTrajectory, COMMANDS),
    (topics.GRIPPER_COMMAND, JointTrajectory, COMMANDS),
    (topics.SAFETY_VETO, String, COMMANDS),
    (GROUNDING, PoseArray, COMMANDS),
    (topics.DIAGNOSTICS, DiagnosticArray, BEST_EFFORT),
)


class ViewerNode(Node):
    def __init__(self):
        super().__init__("viewer")
        self.settings = SettingsParameters(self, ViewerSettings).value
        # rerun after the parameters: a bad value is refused before it starts
        from vla_ros.robot.urdf import load_robot  # noqa: PLC0415
        from vla_ros.viewer.recording import ViewerRecording, blueprint, new_stream  # noqa: PLC0415
        from vla_ros.viewer.server import start_viewer  # noqa: PLC0415

        self.stream = new_stream()
        try:
            self.endpoint = start_viewer(self.stream, self.settings, blueprint())
        except ViewerError as exc:
            raise ParameterError(str(exc)) from None
        self.recording = ViewerRecording(self.stream, load_robot(), joint_period_s=self.settings.joint_period)
        self.feed = ViewerFeed(self.recording, self.settings.max_image_rate,
                               on_problem=lambda text: self.get_logger().warning(text, throttle_duration_sec=5.0))
        for topic, message_class, qos in SUBSCRIPTIONS:
            self.create_subscription(message_class, topic, partial(self.on_message, topic), qos)
        print(f"[viewer] {self.endpoint.describe()}", flush=True)  # the address to open: plain, on stdout

    def on_message(self, topic: str, msg) -> None:
        self.feed.handle(topic, msg, self.get_clock().now().nanoseconds * 1e-9)

    def destroy_node(self):
        stream = getattr(self, "stream", None)
        if stream is not None:
            stream.flush()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node("viewer", ViewerNode, args)


if __name__ == "__main__":
    sys.exit(main())
