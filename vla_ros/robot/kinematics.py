"""Forward and inverse kinematics of the wx250s from its MJCF (`robot/assets/wx250s.xml`), with MuJoCo's Jacobians.

Usable without a scene: the real-arm executor feeds it joint states from the robot.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import mujoco
import numpy as np

from vla_ros.robot.wx250s import ARM_JOINTS

ASSETS = Path(__file__).resolve().parent / "assets"
ARM_MJCF = ASSETS / "wx250s.xml"
EE_SITE = "ee"


class Pose(NamedTuple):
    """An end-effector pose in the arm's base frame."""

    pos: np.ndarray  # [3] metres
    rot: np.ndarray  # [3,3] rotation matrix


@dataclass(frozen=True)
class IKResult:
    """Joint solution of an IK query and how close it came to the target."""

    q: np.ndarray  # [6] rad, inside the joint limits
    reached: bool
    pos_err_m: float
    rot_err_rad: float


def rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def delta_rotation(droll: float, dpitch: float, dyaw: float) -> np.ndarray:
    """The team convention's rotation increment: Rz(dyaw)·Ry(dpitch)·Rx(droll), about base-frame axes."""
    return rot_z(dyaw) @ rot_y(dpitch) @ rot_x(droll)


def rotation_to_rpy(rot: np.ndarray) -> np.ndarray:
    """Inverse of `delta_rotation`: (roll, pitch, yaw) with rot = Rz(yaw)·Ry(pitch)·Rx(roll)."""
    pitch = np.arcsin(np.clip(-rot[2, 0], -1.0, 1.0))
    roll = np.arctan2(rot[2, 1], rot[2, 2])
    yaw = np.arctan2(rot[1, 0], rot[0, 0])
    return np.array([roll, pitch, yaw])


def rotation_error(rot_target: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """Rotation vector (base frame) that turns `rot` into `rot_target`."""
    err_quat = np.empty(4)
    mujoco.mju_mat2Quat(err_quat, (rot_target @ rot.T).ravel())
    vec = np.empty(3)
    mujoco.mju_quat2Vel(vec, err_quat, 1.0)
    return vec


def rotmat_to_quat(rot: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) of a rotation matrix, w >= 0."""
    quat = np.empty(4)
    mujoco.mju_mat2Quat(quat, np.ascontiguousarray(rot, dtype=np.float64).ravel())
    return quat if quat[0] >= 0 else -quat


class ArmKinematics:
    """FK, damped-least-squares IK and the 7-D delta action convention for the wx250s.

    Works on a model holding the arm (the arm-only MJCF by default, or a workcell model that contains
    it); it keeps a private MjData, so it never disturbs a running simulation.
    """

    def __init__(self, model: mujoco.MjModel | None = None, *, pos_tol: float = 1e-3,
                 rot_tol: float = 1e-2, max_iters: int = 200, damping: float = 1e-3) -> None:
        self.model = model if model is not None else mujoco.MjModel.from_xml_path(str(ARM_MJCF))
        self.data = mujoco.MjData(self.model)
        self.site_id = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_SITE, EE_SITE)
        joint_ids = [mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_JOINT, n) for n in ARM_JOINTS]
        self.qpos_idx = np.array([self.model.jnt_qposadr[j] for j in joint_ids])
        self.dof_idx = np.array([self.model.jnt_dofadr[j] for j in joint_ids])
        self.joint_limits = np.array([self.model.jnt_range[j] for j in joint_ids])  # [6,2] rad
        self.pos_tol, self.rot_tol = pos_tol, rot_tol
        self.max_iters, self.damping = max_iters, damping
        self._jacp = np.zeros((3, self.model.nv))
        self._jacr = np.zeros((3, self.model.nv))

    def _set(self, q6: np.ndarray) -> None:
        self.data.qpos[self.qpos_idx] = q6
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_comPos(self.model, self.data)  # mj_jacSite reads cdof/subtree_com from here

    def fk(self, q6: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """End-effector site position [3] and rotation matrix [3,3] in the base frame."""
        self._set(np.asarray(q6, dtype=np.float64))
        return (self.data.site_xpos[self.site_id].copy(),
                self.data.site_xmat[self.site_id].reshape(3, 3).copy())

    def clamp(self, q6: np.ndarray) -> np.ndarray:
        return np.clip(q6, self.joint_limits[:, 0], self.joint_limits[:, 1])

    def ik(self, q_seed6: np.ndarray, target_pos: np.ndarray, target_rot: np.ndarray, *,
           restarts: bool = True, random_restarts: int = 0) -> IKResult:
        """Damped least squares on the 6-D site error, clamped to the joint limits at every step.

        The seed is tried first, so small steps stay on the seed's branch; only when that fails and
        `restarts` is set are a few elbow-up seeds facing the target tried, and the closest solution wins.
        """
        result = self._solve(q_seed6, target_pos, target_rot)
        if result.reached or not restarts:
            return result
        waist = float(np.arctan2(target_pos[1], target_pos[0]))
        for shoulder, elbow, wrist in ((0.0, 0.0, 1.2), (-0.6, 0.6, 0.8), (0.5, -0.2, 1.4), (-0.9, 1.2, 0.3)):
            for roll in (0.0, 1.5, -1.5):
                seed = np.array([waist, shoulder, elbow, roll, wrist, 0.0])
                candidate = self._solve(seed, target_pos, target_rot)
                if candidate.pos_err_m + 0.1 * candidate.rot_err_rad < result.pos_err_m + 0.1 * result.rot_err_rad:
                    result = candidate
                if result.reached:
                    return result
        # Poses the elbow-up seeds cannot reach (folded back over the base, say): fixed random seeds, on request
        # only — a global search, too slow for a control loop and free to jump to another arm posture.
        rng = np.random.default_rng(0)
        low, high = np.maximum(self.joint_limits[:, 0], -np.pi), np.minimum(self.joint_limits[:, 1], np.pi)
        for _ in range(random_restarts):
            candidate = self._solve(rng.uniform(low, high), target_pos, target_rot)
            if candidate.pos_err_m + 0.1 * candidate.rot_err_rad < result.pos_err_m + 0.1 * result.rot_err_rad:
                result = candidate
            if result.reached:
                return result
        return result

    def _solve(self, q_seed6: np.ndarray, target_pos: np.ndarray, target_rot: np.ndarray) -> IKResult:
        q = self.clamp(np.asarray(q_seed6, dtype=np.float64).copy())
        target_pos = np.asarray(target_pos, dtype=np.float64)
        target_rot = np.asarray(target_rot, dtype=np.float64)
        best = (np.inf, q.copy(), np.inf, np.inf)
        for _ in range(self.max_iters):
            pos, rot = self.fk(q)
            e_pos = target_pos - pos
            e_rot = rotation_error(target_rot, rot)
            pos_err, rot_err = float(np.linalg.norm(e_pos)), float(np.linalg.norm(e_rot))
            # 0.1 m of position error weighs like 1 rad of orientation error when picking the best iterate
            score = pos_err + 0.1 * rot_err
            if score < best[0]:
                best = (score, q.copy(), pos_err, rot_err)
            # converge well inside the tolerance so chained deltas do not accumulate IK error
            if pos_err < 0.1 * self.pos_tol and rot_err < 0.1 * self.rot_tol:
                break
            mujoco.mj_jacSite(self.model, self.data, self._jacp, self._jacr, self.site_id)
            jac = np.vstack([self._jacp[:, self.dof_idx], self._jacr[:, self.dof_idx]])
            err = np.concatenate([e_pos, e_rot])
            # damping grows near singular configurations so steps stay bounded
            lam = self.damping + 0.01 * max(0.0, 0.02 - np.linalg.svd(jac, compute_uv=False)[-1])
            dq = jac.T @ np.linalg.solve(jac @ jac.T + lam * np.eye(6), err)
            step = np.max(np.abs(dq))
            if step > 0.5:
                dq *= 0.5 / step
            q = self.clamp(q + dq)
        _, q_best, pos_err, rot_err = best
        return IKResult(q=q_best, reached=bool(pos_err < self.pos_tol and rot_err < self.rot_tol),
                        pos_err_m=pos_err, rot_err_rad=rot_err)

    def apply_delta(self, q6: np.ndarray, ee_target_pose: Pose | tuple, action7: np.ndarray
                    ) -> tuple[Pose, IKResult]:
        """Integrate one team-convention action into the EE target and solve IK from `q6`.

        When the new target is unreachable the returned target is the pose the clamped solution
        actually reaches, so an unreachable command does not wind up the target.
        """
        pos, rot = ee_target_pose
        a = np.asarray(action7, dtype=np.float64)
        new_pos = np.asarray(pos, dtype=np.float64) + a[:3]
        new_rot = delta_rotation(a[3], a[4], a[5]) @ np.asarray(rot, dtype=np.float64)
        result = self.ik(q6, new_pos, new_rot)
        if not result.reached:
            new_pos, new_rot = self.fk(result.q)
        return Pose(new_pos, new_rot), result
