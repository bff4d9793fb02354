"""Reading one-point JointTrajectory commands (/vla/arm_command, /vla/gripper_command) as the safety monitor does.

Duck-typed over the message (rclpy's or rosbags' classes), so the node and the offline replay share it.
"""

from __future__ import annotations

import numpy as np


def single_point(msg, names: list[str]) -> tuple[np.ndarray, float] | str:
    """(positions in `names` order, reach time s) of a one-point trajectory, or why it is malformed."""
    index = {n: i for i, n in enumerate(msg.joint_names)}
    if any(n not in index for n in names):
        return f"joint_names {list(msg.joint_names)} do not cover {names}"
    if len(msg.points) != 1:
        return f"expected one trajectory point, got {len(msg.points)}"
    point = msg.points[0]
    if len(point.positions) != len(msg.joint_names):
        return f"{len(point.positions)} positions for {len(msg.joint_names)} joints"
    positions = np.array([point.positions[index[n]] for n in names], dtype=np.float64)
    return positions, point.time_from_start.sec + point.time_from_start.nanosec * 1e-9
