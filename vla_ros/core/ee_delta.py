"""The Bridge-convention delta between two end-effector poses, and its inverse (pure numpy).

An action's rotation part turns the target as `R_new = Rz(dyaw)·Ry(dpitch)·Rx(droll)·R_old` about base-frame
axes (`vla_ros.robot.kinematics.delta_rotation`, `Workcell.step`), so the delta between two poses is the ZYX
decomposition of `R_new·R_oldᵀ`. Used for the executed-action stream of a joint-target chunk and for actions
derived from recorded joint states when a bag has no commanded actions (`vla-ros data import`).
"""

from __future__ import annotations

import numpy as np


def rpy_of(rot: np.ndarray) -> np.ndarray:
    """(roll, pitch, yaw) with rot = Rz(yaw)·Ry(pitch)·Rx(roll)."""
    pitch = np.arcsin(np.clip(-rot[2, 0], -1.0, 1.0))
    return np.array([np.arctan2(rot[2, 1], rot[2, 2]), pitch, np.arctan2(rot[1, 0], rot[0, 0])])


def rotation_of(rpy: np.ndarray) -> np.ndarray:
    """Rz(yaw)·Ry(pitch)·Rx(roll)."""
    roll, pitch, yaw = (float(v) for v in rpy)
    cr, sr, cp, sp, cy, sy = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    return rz @ ry @ rx


def pose_delta(pos0, rot0, pos1, rot1) -> np.ndarray:
    """[dx, dy, dz, droll, dpitch, dyaw] that moves pose 0 to pose 1 in the Bridge convention."""
    rot0, rot1 = np.asarray(rot0, np.float64), np.asarray(rot1, np.float64)
    return np.concatenate([np.asarray(pos1, np.float64) - np.asarray(pos0, np.float64), rpy_of(rot1 @ rot0.T)])
