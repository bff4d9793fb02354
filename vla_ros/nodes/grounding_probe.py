"""grounding_probe: /vla/image + /vla/task (+ /joint_states) → /vla/grounding, where the policy puts the named blocks.

geometry_msgs/PoseArray in base_link, stamped with the frame's stamp: poses[0] the target, poses[1] the reference
when the task names one (z = 0, on the table). Optional (graph argument grounding:=true): it loads a second copy
of the policy (torch) and runs its forward pass up to `rate` times a second in a thread of its own, so it never
delays vla_policy's chunks beyond the CPU it takes (docs/benchmarks.md).
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
from geometry_msgs.msg import Pose, PoseArray
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from vla_ros.core import topics
from vla_ros.core.image_msgs import ImageRejected, image_to_rgb8
from vla_ros.core.messages import NS, stamp_ns
from vla_ros.nodes.diagnostics import OK, WARN, DiagnosticsReporter
from vla_ros.nodes.parameters import ParameterError, SettingsParameters
from vla_ros.nodes.qos import COMMANDS, DEFAULT, LATCHED, SENSOR_LATEST
from vla_ros.nodes.runtime import NodeThreads, run_node
from vla_ros.policy.grounding import GroundingSettings
from vla_ros.robot.urdf import BASE_LINK
from vla_ros.robot.wx250s import ARM_JOINTS, joint_values
from vla_ros.viewer.feed import GROUNDING


class GroundingProbeNode(Node):
    def __init__(self):
        super().__init__("grounding_probe")
        self.threads = NodeThreads(self)
        self.settings = SettingsParameters(self, GroundingSettings).value
        from vla_ros.policy.grounding import GroundingProbe  # noqa: PLC0415 - torch after the parameters
        from vla_ros.policy.modeling_vla import PolicyLoadError  # noqa: PLC0415

        try:
            self.probe = GroundingProbe(self.settings)
        except PolicyLoadError as exc:
            raise ParameterError(f"model_path: {exc}") from None
        self.lock = threading.Condition()
        self.image: Image | None = None
        self.task, self.joints = "", None
        self.published = self.errors = 0
        self.last_error = ""
        self.publisher = self.create_publisher(PoseArray, GROUNDING, COMMANDS)
        self.create_subscription(Image, topics.MODEL_IMAGE, self.on_image, SENSOR_LATEST)
        self.create_subscription(String, topics.TASK, self.on_task, LATCHED)
        self.create_subscription(JointState, topics.JOINT_STATES, self.on_joint_states, DEFAULT)
        DiagnosticsReporter(self, self.report)
        self.threads.start(self.work, "grounding")

    def on_image(self, msg: Image) -> None:
        with self.lock:
            self.image = msg
            self.lock.notify()

    def on_task(self, msg: String) -> None:
        with self.lock:
            self.task = msg.data

    def on_joint_states(self, msg: JointState) -> None:
        joints = joint_values(msg.name, msg.position, ARM_JOINTS)
        if joints is not None:
            self.joints = joints.astype(np.float32)

    def work(self) -> None:
        period = 1.0 / self.settings.rate
        while not self.threads.stopping.is_set():
            started = time.monotonic()
            with self.lock:
                self.lock.wait(timeout=period)
                image, task, joints, self.image = self.image, self.task, self.joints, None
            age = self.get_clock().now().nanoseconds / NS - (stamp_ns(image.header.stamp) / NS if image else 0.0)
            if image is not None and task and (self.settings.max_image_age == 0 or age <= self.settings.max_image_age):
                self.ground(image, task, joints)
            rest = period - (time.monotonic() - started)
            if rest > 0:
                self.threads.stopping.wait(rest)

    def ground(self, image: Image, task: str, joints) -> None:
        try:
            target, reference = self.probe.ground(image_to_rgb8(image), task, joints)
        except (ImageRejected, ValueError) as exc:
            self.errors += 1
            self.last_error = str(exc)
            return
        msg = PoseArray()
        msg.header.stamp, msg.header.frame_id = image.header.stamp, BASE_LINK
        for place in [target] + ([reference] if reference is not None else []):
            pose = Pose()
            pose.position.x, pose.position.y = float(place[0]), float(place[1])
            pose.orientation.w = 1.0
            msg.poses.append(pose)
        with self.lock:
            if task != self.task:
                return  # the task changed while we computed: this place belongs to no current task
        self.publisher.publish(msg)
        self.published += 1

    def report(self):
        values = {"published": str(self.published), "errors": str(self.errors), "last_error": self.last_error,
                  "task": self.task}
        return (WARN if self.errors and not self.published else OK), f"{self.published} groundings", values

    def destroy_node(self):
        self.threads.stopping.set()
        with self.lock:
            self.lock.notify_all()
        self.threads.stop(timeout_s=5.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node("grounding_probe", GroundingProbeNode, args)


if __name__ == "__main__":
    sys.exit(main())
