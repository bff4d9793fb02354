"""The replay's output messages, built with rosbags' type store (no rclpy) from the same layouts the nodes use."""

from __future__ import annotations

import numpy as np

from vla_ros.bags.message_types import typestore
from vla_ros.core import topics
from vla_ros.core.action_chunks import ACTION_NAMES, chunk_frame_id, chunk_points
from vla_ros.core.action_tokens import TokenMessageFields
from vla_ros.core.image_msgs import rgb8_fields

NS = 1_000_000_000

OUTPUT_TYPES = {
    topics.MODEL_IMAGE: "sensor_msgs/msg/Image",
    topics.ACTION_TOKENS: "std_msgs/msg/Int32MultiArray",
    topics.ACTION_CHUNK: "trajectory_msgs/msg/JointTrajectory",
    topics.ARM_COMMAND: "trajectory_msgs/msg/JointTrajectory",
    topics.GRIPPER_COMMAND: "trajectory_msgs/msg/JointTrajectory",
    topics.ARM_CONTROLLER: "trajectory_msgs/msg/JointTrajectory",
    topics.GRIPPER_CONTROLLER: "trajectory_msgs/msg/JointTrajectory",
    topics.SAFETY_VETO: "std_msgs/msg/String",
}


class OutputMessages:
    """Builds the output messages as rosbags objects and serializes them to CDR."""

    def __init__(self):
        self.store = typestore()
        t = self.store.types
        self.Time, self.Duration, self.Header = (t["builtin_interfaces/msg/Time"], t["builtin_interfaces/msg/Duration"],
                                                 t["std_msgs/msg/Header"])
        self.Image, self.String = t["sensor_msgs/msg/Image"], t["std_msgs/msg/String"]
        self.Int32MultiArray, self.Layout, self.Dimension = (t["std_msgs/msg/Int32MultiArray"],
                                                             t["std_msgs/msg/MultiArrayLayout"],
                                                             t["std_msgs/msg/MultiArrayDimension"])
        self.Trajectory, self.Point = t["trajectory_msgs/msg/JointTrajectory"], t["trajectory_msgs/msg/JointTrajectoryPoint"]

    def serialize(self, message, msgtype: str) -> bytes:
        return bytes(self.store.serialize_cdr(message, msgtype))

    def deserialize(self, data: bytes, msgtype: str):
        return self.store.deserialize_cdr(data, msgtype)

    def _stamp(self, stamp_ns: int):
        sec, nanosec = divmod(int(stamp_ns), NS)
        return self.Time(sec=sec, nanosec=nanosec)

    def _duration(self, ns: int):
        sec, nanosec = divmod(int(ns), NS)
        return self.Duration(sec=sec, nanosec=nanosec)

    def model_image(self, header, rgb: np.ndarray):
        """camera_ingest's output: rgb8 at the model's size, the source header kept."""
        f = rgb8_fields(rgb)
        return self.Image(header=header, height=f.height, width=f.width, encoding=f.encoding,
                          is_bigendian=f.is_bigendian, step=f.step, data=np.frombuffer(f.data, np.uint8))

    def action_tokens(self, fields: TokenMessageFields):
        dims = [self.Dimension(label=label, size=size, stride=stride) for label, size, stride in fields.dims]
        return self.Int32MultiArray(layout=self.Layout(dim=dims, data_offset=fields.data_offset),
                                    data=np.asarray(fields.data, np.int32))

    def action_chunk(self, actions: np.ndarray, stamp_ns: int, step_dt: float, task_hash: int, tokenizer: str):
        points = [self._point(positions, t_ns) for positions, t_ns in chunk_points(actions, step_dt)]
        header = self.Header(stamp=self._stamp(stamp_ns), frame_id=chunk_frame_id(task_hash, tokenizer))
        return self.Trajectory(header=header, joint_names=list(ACTION_NAMES), points=points)

    def joint_command(self, names, positions, reach_s: float, stamp_ns: int = 0):
        """As `vla_ros.nodes.trajectory_messages.joint_command`: one point reached after `reach_s`."""
        point = self._point([float(v) for v in positions], round(reach_s * 1e9))
        return self.Trajectory(header=self.Header(stamp=self._stamp(stamp_ns), frame_id=""), joint_names=list(names),
                               points=[point])

    def _point(self, positions, t_ns: int):
        empty = np.zeros(0, np.float64)
        return self.Point(positions=np.asarray(positions, np.float64), velocities=empty, accelerations=empty,
                          effort=empty, time_from_start=self._duration(t_ns))

    def string(self, text: str):
        return self.String(data=text)
