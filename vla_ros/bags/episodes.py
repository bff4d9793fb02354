"""Simulated-workcell episodes as rosbag2 bags: what a recording on the real robot would hold.

One bag per episode, at the team's 5 Hz control rate, messages built with rosbags' type store (no rclpy):

    /vla/instruction    std_msgs/String               once, at the start (reliable)
    /vla/task           std_msgs/String               once, the normalized instruction (reliable, transient local)
    /camera/image_raw   sensor_msgs/Image rgb8        each step's observation, plus the final one (best effort)
    /joint_states       sensor_msgs/JointState        with each image: the six arm joints and `gripper` (opening,
                                                      1 = open)
    /vla/expert_action  std_msgs/Float32MultiArray    the expert's 7-D action for that step, 1 ms after its image

Bag times start at a fixed epoch, so a bag depends only on the episode (seed and plan). The episode's
instruction, family, seed, outcome and step count are in the bag's custom_data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vla_ros.bags.message_types import typestore
from vla_ros.bags.schedule import NS
from vla_ros.bags.writing import BagWriter
from vla_ros.core import topics
from vla_ros.core.action_chunks import ACTION_NAMES
from vla_ros.core.instruction import normalize_instruction

EXPERT_ACTION = "/vla/expert_action"
EPISODE_START_NS = 1_700_000_000 * NS
STEP_NS = NS // 5  # 5 Hz
FIRST_IMAGE_AFTER_NS = 10_000_000  # the task is latched before the first frame
ACTION_AFTER_NS = 1_000_000
CAMERA_FRAME = "camera"
GRIPPER_JOINT = "gripper"

TOPIC_TYPES = {
    topics.INSTRUCTION: "std_msgs/msg/String",
    topics.TASK: "std_msgs/msg/String",
    topics.CAMERA_IMAGE: "sensor_msgs/msg/Image",
    topics.JOINT_STATES: "sensor_msgs/msg/JointState",
    EXPERT_ACTION: "std_msgs/msg/Float32MultiArray",
}


def _qos(reliable: bool, latched: bool = False, depth: int = 10):
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    infinite = QosTime(2147483647, 4294967295)
    return Qos(QosHistory.KEEP_LAST, 1 if latched else depth,
               QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
               QosDurability.TRANSIENT_LOCAL if latched else QosDurability.VOLATILE,
               infinite, infinite, QosLiveliness.AUTOMATIC, infinite, False)


def _topic_qos() -> dict:
    return {
        topics.INSTRUCTION: _qos(True),
        topics.TASK: _qos(True, latched=True),
        topics.CAMERA_IMAGE: _qos(False, depth=5),
        topics.JOINT_STATES: _qos(True),
        EXPERT_ACTION: _qos(True),
    }


class EpisodeMessages:
    """Builds and serializes the episode's messages."""

    def __init__(self):
        store = typestore()
        self.store = store
        self.String = store.types["std_msgs/msg/String"]
        self.Header = store.types["std_msgs/msg/Header"]
        self.Time = store.types["builtin_interfaces/msg/Time"]
        self.Image = store.types["sensor_msgs/msg/Image"]
        self.JointState = store.types["sensor_msgs/msg/JointState"]
        self.Float32MultiArray = store.types["std_msgs/msg/Float32MultiArray"]
        self.MultiArrayLayout = store.types["std_msgs/msg/MultiArrayLayout"]
        self.MultiArrayDimension = store.types["std_msgs/msg/MultiArrayDimension"]

    def _header(self, stamp_ns: int, frame_id: str):
        sec, nanosec = divmod(stamp_ns, NS)
        return self.Header(stamp=self.Time(sec=sec, nanosec=nanosec), frame_id=frame_id)

    def _cdr(self, message, msgtype: str) -> bytes:
        return bytes(self.store.serialize_cdr(message, msgtype))

    def string(self, text: str) -> bytes:
        return self._cdr(self.String(data=text), "std_msgs/msg/String")

    def image(self, rgb: np.ndarray, stamp_ns: int) -> bytes:
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        height, width = rgb.shape[:2]
        message = self.Image(header=self._header(stamp_ns, CAMERA_FRAME), height=height, width=width,
                             encoding="rgb8", is_bigendian=0, step=width * 3, data=rgb.reshape(-1))
        return self._cdr(message, "sensor_msgs/msg/Image")

    def joint_state(self, names: list[str], positions: np.ndarray, stamp_ns: int) -> bytes:
        message = self.JointState(header=self._header(stamp_ns, ""), name=names,
                                  position=np.asarray(positions, np.float64), velocity=np.zeros(0, np.float64),
                                  effort=np.zeros(0, np.float64))
        return self._cdr(message, "sensor_msgs/msg/JointState")

    def action(self, action: np.ndarray) -> bytes:
        dim = self.MultiArrayDimension(label="action:" + ",".join(ACTION_NAMES), size=len(ACTION_NAMES),
                                       stride=len(ACTION_NAMES))
        message = self.Float32MultiArray(layout=self.MultiArrayLayout(dim=[dim], data_offset=0),
                                         data=np.asarray(action, np.float32).reshape(len(ACTION_NAMES)))
        return self._cdr(message, "std_msgs/msg/Float32MultiArray")


def write_episode_bag(path: str | Path, record, joint_names: tuple[str, ...], storage: str = "mcap") -> Path:
    """Write one `vla_ros.sim.rollout.Rollout` (rendered images required) as a bag at `path`."""
    observations = record.observations
    if not observations or observations[0].image is None:
        raise ValueError("episode bags need rendered camera images; run the workcell with render=True")
    build = EpisodeMessages()
    names = [*joint_names, GRIPPER_JOINT]
    task = record.task
    custom = {"instruction": task.instruction, "family": task.family, "seed": str(record.seed),
              "success": str(bool(record.success)).lower(), "steps": str(len(record.actions)),
              "control_hz": "5", "expert_action_topic": EXPERT_ACTION}
    qos = _topic_qos()
    with BagWriter(path, storage=storage, custom_data=custom) as writer:
        for topic, msgtype in TOPIC_TYPES.items():
            writer.add_topic(topic, msgtype, [qos[topic]])
        writer.write(topics.INSTRUCTION, EPISODE_START_NS, build.string(task.instruction))
        writer.write(topics.TASK, EPISODE_START_NS, build.string(normalize_instruction(task.instruction)))
        for step, observation in enumerate(observations):
            stamp = EPISODE_START_NS + FIRST_IMAGE_AFTER_NS + step * STEP_NS
            writer.write(topics.CAMERA_IMAGE, stamp, build.image(observation.image, stamp))
            positions = np.append(np.asarray(observation.joint_pos, np.float64), float(observation.gripper))
            writer.write(topics.JOINT_STATES, stamp, build.joint_state(names, positions, stamp))
            if step < len(record.actions):
                writer.write(EXPERT_ACTION, stamp + ACTION_AFTER_NS, build.action(record.actions[step]))
    return Path(path)
