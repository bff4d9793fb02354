"""trajectory_msgs/JointTrajectory builders for the two uses in the graph: action chunks and joint commands."""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Duration as DurationMsg
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from vla_ros.core.action_chunks import ACTION_NAMES, chunk_frame_id, chunk_points


def _duration(ns: int) -> DurationMsg:
    sec, nanosec = divmod(int(ns), 1_000_000_000)
    return DurationMsg(sec=sec, nanosec=nanosec)


def action_chunk_message(actions: np.ndarray, stamp_ns: int, step_dt: float, task_hash: int,
                         tokenizer: str) -> JointTrajectory:
    """An /vla/action_chunk message (layout in vla_ros.core.action_chunks)."""
    msg = JointTrajectory(joint_names=list(ACTION_NAMES))
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    msg.header.frame_id = chunk_frame_id(task_hash, tokenizer)
    for positions, t_ns in chunk_points(actions, step_dt):
        msg.points.append(JointTrajectoryPoint(positions=positions, time_from_start=_duration(t_ns)))
    return msg


def joint_command(names: list[str], positions, reach_s: float, stamp_ns: int = 0) -> JointTrajectory:
    """A one-point command reaching `positions` after `reach_s`; stamp 0 means "start now" to a controller."""
    msg = JointTrajectory(joint_names=list(names))
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    msg.points.append(JointTrajectoryPoint(positions=[float(v) for v in positions],
                                           time_from_start=_duration(round(reach_s * 1e9))))
    return msg
