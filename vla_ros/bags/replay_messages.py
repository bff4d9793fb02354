"""The message kit of offline replay: rosbags' classes (no rclpy), and the replay's output topics and types."""

from __future__ import annotations

from functools import lru_cache

from vla_ros.bags.message_types import typestore
from vla_ros.core import topics
from vla_ros.core.messages import MessageKit

OUTPUT_TYPES = {
    topics.MODEL_IMAGE: "sensor_msgs/msg/Image",
    topics.ACTION_TOKENS: "std_msgs/msg/Int32MultiArray",
    topics.ACTION_CHUNK: "trajectory_msgs/msg/JointTrajectory",
    topics.ARM_COMMAND: "trajectory_msgs/msg/JointTrajectory",
    topics.GRIPPER_COMMAND: "trajectory_msgs/msg/JointTrajectory",
    topics.ARM_CONTROLLER: "trajectory_msgs/msg/JointTrajectory",
    topics.GRIPPER_CONTROLLER: "trajectory_msgs/msg/JointTrajectory",
    topics.SAFETY_VETO: "std_msgs/msg/String",
    topics.PLAN: "std_msgs/msg/String",
}


@lru_cache(maxsize=1)
def rosbags_kit() -> MessageKit:
    t = typestore().types
    return MessageKit(Time=t["builtin_interfaces/msg/Time"], Duration=t["builtin_interfaces/msg/Duration"],
                      Header=t["std_msgs/msg/Header"], Image=t["sensor_msgs/msg/Image"], String=t["std_msgs/msg/String"],
                      Int32MultiArray=t["std_msgs/msg/Int32MultiArray"],
                      MultiArrayLayout=t["std_msgs/msg/MultiArrayLayout"],
                      MultiArrayDimension=t["std_msgs/msg/MultiArrayDimension"],
                      JointTrajectory=t["trajectory_msgs/msg/JointTrajectory"],
                      JointTrajectoryPoint=t["trajectory_msgs/msg/JointTrajectoryPoint"], numpy_sequences=True)


def serialize(message, msgtype: str) -> bytes:
    return bytes(typestore().serialize_cdr(message, msgtype))


def deserialize(data: bytes, msgtype: str):
    return typestore().deserialize_cdr(data, msgtype)
