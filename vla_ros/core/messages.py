"""The one conversion between the pipeline's messages and plain data, for rclpy's and rosbags' message classes.

Readers are duck-typed (both libraries' messages have the same fields). Builders take the classes from a
`MessageKit`: the nodes use `vla_ros.nodes.messages.RCLPY`, offline replay `vla_ros.bags.replay_messages.rosbags_kit()`.
The two differ only in how a sequence field is given (rclpy: a list or bytes; rosbags: a numpy array), so the
same stage writes byte-identical CDR through either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from vla_ros.core.action_chunks import (EE_DELTA, NAMES_BY_SPACE, ActionChunk, chunk_frame_id, chunk_points,
                                        parse_chunk)
from vla_ros.core.action_tokens import TokenMessageFields
from vla_ros.core.image_msgs import rgb8_fields

NS = 1_000_000_000


@dataclass(frozen=True)
class MessageKit:
    """The message classes of one library, by their ROS names, and how it takes sequence fields."""

    Time: Callable
    Duration: Callable
    Header: Callable
    Image: Callable
    String: Callable
    Int32MultiArray: Callable
    MultiArrayLayout: Callable
    MultiArrayDimension: Callable
    JointTrajectory: Callable
    JointTrajectoryPoint: Callable
    numpy_sequences: bool  # rosbags: numpy arrays; rclpy: lists (and bytes for uint8)

    # ------------------------------------------------------------------------------------ builders
    def stamp(self, stamp_ns: int):
        sec, nanosec = divmod(int(stamp_ns), NS)
        return self.Time(sec=sec, nanosec=nanosec)

    def duration(self, ns: int):
        sec, nanosec = divmod(int(ns), NS)
        return self.Duration(sec=sec, nanosec=nanosec)

    def _floats(self, values) -> Any:
        values = np.asarray(values, dtype=np.float64)
        return values if self.numpy_sequences else values.tolist()

    def point(self, positions, t_ns: int):
        empty = self._floats([])
        return self.JointTrajectoryPoint(positions=self._floats(positions), velocities=empty, accelerations=empty,
                                         effort=empty, time_from_start=self.duration(t_ns))

    def string(self, text: str):
        return self.String(data=text)

    def model_image(self, header, rgb: np.ndarray):
        """camera_ingest's output: rgb8 at the model's size, the source header kept."""
        f = rgb8_fields(rgb)
        data = np.frombuffer(f.data, np.uint8) if self.numpy_sequences else f.data
        return self.Image(header=self.Header(stamp=self.stamp(stamp_ns(header.stamp)), frame_id=header.frame_id),
                          height=f.height, width=f.width, encoding=f.encoding, is_bigendian=f.is_bigendian,
                          step=f.step, data=data)

    def action_tokens(self, fields: TokenMessageFields):
        """/vla/action_tokens (layout in vla_ros.core.action_tokens)."""
        dims = [self.MultiArrayDimension(label=label, size=size, stride=stride) for label, size, stride in fields.dims]
        data = np.asarray(fields.data, np.int32)
        return self.Int32MultiArray(layout=self.MultiArrayLayout(dim=dims, data_offset=fields.data_offset),
                                    data=data if self.numpy_sequences else data.tolist())

    def action_chunk(self, actions: np.ndarray, stamp: int, step_dt: float, task_hash: int, tokenizer: str,
                     action_space: str = EE_DELTA):
        """/vla/action_chunk (layout in vla_ros.core.action_chunks); the joint names say the action space."""
        points = [self.point(positions, t_ns) for positions, t_ns in chunk_points(actions, step_dt)]
        header = self.Header(stamp=self.stamp(stamp), frame_id=chunk_frame_id(task_hash, tokenizer))
        return self.JointTrajectory(header=header, joint_names=list(NAMES_BY_SPACE[action_space]), points=points)

    def executed_action(self, action, stamp: int, period_s: float, source: str):
        """/vla/executed_action: the 7-D action a control tick carried out, stamped with the tick's time; the
        frame_id names the chunk source (policy or teleop)."""
        header = self.Header(stamp=self.stamp(stamp), frame_id=source)
        return self.JointTrajectory(header=header, joint_names=list(NAMES_BY_SPACE[EE_DELTA]),
                                    points=[self.point(action, round(period_s * 1e9))])

    def joint_command(self, names, positions, reach_s: float, stamp: int = 0):
        """A one-point command reaching `positions` after `reach_s`; stamp 0 means "start now" to a controller."""
        header = self.Header(stamp=self.stamp(stamp), frame_id="")
        return self.JointTrajectory(header=header, joint_names=list(names),
                                    points=[self.point(positions, round(reach_s * 1e9))])


# ---------------------------------------------------------------------------------------- readers
def stamp_ns(stamp) -> int:
    """builtin_interfaces/Time → integer nanoseconds."""
    return int(stamp.sec) * NS + int(stamp.nanosec)


def duration_s(duration) -> float:
    return duration.sec + duration.nanosec * 1e-9


def read_chunk(msg) -> ActionChunk:
    """An /vla/action_chunk message as an ActionChunk; raises ChunkError naming what is wrong."""
    return parse_chunk(msg.joint_names, [(p.positions, p.time_from_start.sec * NS + p.time_from_start.nanosec)
                                         for p in msg.points], stamp_ns(msg.header.stamp), msg.header.frame_id)


def read_token_layout(msg) -> tuple[list[tuple[str, int, int]], int, Any]:
    """(dims as (label, size, stride), data_offset, data) of an Int32MultiArray."""
    return [(d.label, d.size, d.stride) for d in msg.layout.dim], msg.layout.data_offset, msg.data


def single_point(msg, names) -> tuple[np.ndarray, float] | str:
    """(positions in `names` order, reach time s) of a one-point JointTrajectory command, or why it is malformed."""
    index = {n: i for i, n in enumerate(msg.joint_names)}
    if any(n not in index for n in names):
        return f"joint_names {list(msg.joint_names)} do not cover {list(names)}"
    if len(msg.points) != 1:
        return f"expected one trajectory point, got {len(msg.points)}"
    point = msg.points[0]
    if len(point.positions) != len(msg.joint_names):
        return f"{len(point.positions)} positions for {len(msg.joint_names)} joints"
    positions = np.array([point.positions[index[n]] for n in names], dtype=np.float64)
    return positions, duration_s(point.time_from_start)
