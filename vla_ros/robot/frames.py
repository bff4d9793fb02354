"""The transforms a robot state publisher sends, from joint positions and the URDF: plain data, no rclpy.

`moving_frames` are the movable joints' transforms for /tf (one per joint, parent → child, as
robot_state_publisher sends them); `fixed_frames` the fixed joints' for /tf_static. widowx_sim and the
robot_state node both send these, so a TF tree from either is the URDF's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from vla_ros.core.settings import Settings, setting
from vla_ros.robot.urdf import RobotModel, Transform

ROBOT_DESCRIPTION = "/robot_description"
TF, TF_STATIC = "/tf", "/tf_static"
# A camera image's frame: x right, y down, z along the view (REP 103's optical frame), as CameraInfo assumes.
OPTICAL_FROM_MUJOCO_CAMERA = np.diag([1.0, -1.0, -1.0])  # MuJoCo cameras look along -z with y up


@dataclass(frozen=True)
class FrameTransform:
    parent: str
    child: str
    translation: np.ndarray  # [3] m
    quaternion_xyzw: np.ndarray  # [4]

    @staticmethod
    def of(parent: str, child: str, transform: Transform) -> "FrameTransform":
        return FrameTransform(parent, child, np.asarray(transform.translation, float), transform.quaternion_xyzw)


@dataclass(frozen=True)
class RobotStateSettings(Settings):
    """robot_state's settings: which URDF, and whether to publish it on /robot_description."""

    urdf_path: str = setting("", "URDF file to publish and take the frames from ('' = the package's wx250s.urdf).")
    publish_description: bool = setting(True, "Publish the URDF on /robot_description (latched).")
    frame_prefix: str = setting("", "Prefix of every frame name (e.g. 'wx250s/'), as robot_state_publisher's.")


def joint_map(names: Sequence[str], positions: Sequence[float]) -> dict[str, float]:
    """A JointState's name/position pairs as a dict (finite values only; none when the lengths differ)."""
    if len(names) != len(positions):
        return {}
    return {str(n): float(p) for n, p in zip(names, positions) if np.isfinite(p)}


def moving_frames(robot: RobotModel, positions: Mapping[str, float], prefix: str = "") -> list[FrameTransform]:
    """Parent → child of every movable joint at these positions (missing joints at 0, mimics from their leader)."""
    return [FrameTransform.of(prefix + j.parent, prefix + j.child, t) for j, t in robot.joint_transforms(positions)]


def fixed_frames(robot: RobotModel, prefix: str = "") -> list[FrameTransform]:
    return [FrameTransform.of(prefix + j.parent, prefix + j.child, t) for j, t in robot.joint_transforms({}, False)]
