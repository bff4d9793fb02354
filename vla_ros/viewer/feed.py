"""The topics the view shows and how each message becomes plain data, for rclpy and rosbags messages alike.

`ViewerFeed.handle(topic, msg, received_s)` is what both drivers call: the viewer node for each message it
receives (node clock), and `vla-ros view --bag` for each message of the bag (its recorded time). Messages are
read by field name only, so the same code serves rclpy's classes and rosbags' deserialized dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from vla_ros.core import topics
from vla_ros.core.action_chunks import ChunkError
from vla_ros.core.image_msgs import ImageRejected, compressed_to_rgb8, image_to_rgb8
from vla_ros.core.messages import NS, read_chunk, stamp_ns

GROUNDING = "/vla/grounding"  # geometry_msgs/PoseArray from grounding_probe: [target, reference?] on the table


@dataclass(frozen=True)
class ViewedTopic:
    topic: str
    msgtype: str  # as rosbags and `ros2 topic` name it
    what: str


VIEWED_TOPICS = (
    ViewedTopic(topics.CAMERA_IMAGE, "sensor_msgs/msg/Image", "camera frames"),
    ViewedTopic(topics.CAMERA_IMAGE_COMPRESSED, "sensor_msgs/msg/CompressedImage", "camera frames (compressed)"),
    ViewedTopic(topics.JOINT_STATES, "sensor_msgs/msg/JointState", "the arm in 3-D and the joint plots"),
    ViewedTopic(topics.INSTRUCTION, "std_msgs/msg/String", "instructions"),
    ViewedTopic(topics.INSTRUCTION_REJECTED, "std_msgs/msg/String", "rejected instructions"),
    ViewedTopic(topics.TASK, "std_msgs/msg/String", "the task"),
    ViewedTopic(topics.PLAN, "std_msgs/msg/String", "the plan"),
    ViewedTopic(topics.ACTION_CHUNK, "trajectory_msgs/msg/JointTrajectory", "chunk paths"),
    ViewedTopic(topics.ARM_COMMAND, "trajectory_msgs/msg/JointTrajectory", "arm command plots"),
    ViewedTopic(topics.GRIPPER_COMMAND, "trajectory_msgs/msg/JointTrajectory", "gripper command plot"),
    ViewedTopic(topics.SAFETY_VETO, "std_msgs/msg/String", "vetoes"),
    ViewedTopic(GROUNDING, "geometry_msgs/msg/PoseArray", "the grounded target"),
    ViewedTopic(topics.DIAGNOSTICS, "diagnostic_msgs/msg/DiagnosticArray", "latency plots"),
)
# Without one of these a bag has nothing to look at: the view refuses it.
ESSENTIAL_TOPICS = (topics.CAMERA_IMAGE, topics.CAMERA_IMAGE_COMPRESSED, topics.JOINT_STATES)


class ViewerFeed:
    """Routes messages to a `ViewerRecording`; camera frames are thinned to `max_image_rate` per second."""

    def __init__(self, recording, max_image_rate: float = 10.0, on_problem: Callable[[str], None] | None = None):
        self.recording = recording
        self.min_image_gap_s = 1.0 / max_image_rate if max_image_rate > 0 else 0.0
        self.on_problem = on_problem or (lambda text: None)
        self._last_image_s = float("-inf")
        self.counts: dict[str, int] = {}
        self._handlers: dict[str, Callable] = {
            topics.CAMERA_IMAGE: lambda m, t: self._image(m, t, compressed=False),
            topics.CAMERA_IMAGE_COMPRESSED: lambda m, t: self._image(m, t, compressed=True),
            topics.JOINT_STATES: lambda m, t: recording.joints(_stamp_or(m, t), m.name, m.position),
            topics.INSTRUCTION: lambda m, t: recording.instruction(t, m.data),
            topics.INSTRUCTION_REJECTED: lambda m, t: recording.instruction(t, m.data, rejected=True),
            topics.TASK: lambda m, t: recording.task(t, m.data),
            topics.PLAN: lambda m, t: recording.plan(t, m.data),
            topics.ACTION_CHUNK: self._chunk,
            topics.ARM_COMMAND: self._command,
            topics.GRIPPER_COMMAND: self._command,
            topics.SAFETY_VETO: lambda m, t: recording.veto(t, m.data),
            GROUNDING: self._grounding,
            topics.DIAGNOSTICS: self._diagnostics,
        }

    @property
    def topics(self) -> list[str]:
        return list(self._handlers)

    def handle(self, topic: str, msg, received_s: float) -> None:
        handler = self._handlers.get(topic)
        if handler is None:
            return
        self.counts[topic] = self.counts.get(topic, 0) + 1
        handler(msg, received_s)

    # ------------------------------------------------------------------------------------ readers
    def _image(self, msg, received_s: float, compressed: bool) -> None:
        stamp = _stamp_or(msg, received_s)
        if stamp - self._last_image_s < self.min_image_gap_s:
            return
        try:
            rgb = compressed_to_rgb8(msg) if compressed else image_to_rgb8(msg)
        except ImageRejected as exc:
            self.on_problem(f"camera frame not shown: {exc}")
            return
        self._last_image_s = stamp
        self.recording.camera(stamp, rgb)

    def _chunk(self, msg, received_s: float) -> None:
        try:
            chunk = read_chunk(msg)
        except ChunkError as exc:
            self.on_problem(f"chunk not shown: {exc}")
            return
        self.recording.chunk(received_s, chunk, received_s)

    def _command(self, msg, received_s: float) -> None:
        if len(msg.points) == 1 and len(msg.points[0].positions) == len(msg.joint_names):
            self.recording.command(received_s, list(msg.joint_names), list(msg.points[0].positions))

    def _grounding(self, msg, received_s: float) -> None:
        if not len(msg.poses):
            return
        places = [(p.position.x, p.position.y) for p in msg.poses]
        self.recording.grounding(_stamp_or(msg, received_s), places[0], places[1] if len(places) > 1 else None)

    def _diagnostics(self, msg, received_s: float) -> None:
        statuses = [(s.name, _level(s.level), s.message, {kv.key: kv.value for kv in s.values}) for s in msg.status]
        self.recording.diagnostics(_stamp_or(msg, received_s), statuses)


def _stamp_or(msg, fallback_s: float) -> float:
    """The header stamp in seconds, or `fallback_s` when the message has none (zero)."""
    header = getattr(msg, "header", None)
    if header is None:
        return fallback_s
    ns = stamp_ns(header.stamp)
    return ns / NS if ns > 0 else fallback_s


def _level(level) -> int:
    """DiagnosticStatus.level is a byte: rclpy gives bytes, rosbags an int."""
    return level[0] if isinstance(level, (bytes, bytearray)) else int(level)
