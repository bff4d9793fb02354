"""End-effector target integration: 7-D delta actions → joint targets, as the simulated workcell does it.

The target pose is integrated from the last *commanded* pose (not the measured one), exactly like
`Workcell.step`, so a policy behaves the same through ROS as in-process. It is re-anchored to the
measured joints whenever execution (re)starts after a hold. The arm's kinematics are given (an
`ArmKinematics` from `vla_ros.robot.kinematics`, or anything with `fk`, `clamp` and `apply_delta`).

Absolute joint targets (a `joint_position` chunk) pass through here too (`move_towards`): clamped to the
joint limits and approached from the last commanded target, which keeps one commanded state, so a delta chunk
after a joint-target chunk integrates from where the arm was sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class JointTargets:
    arm: np.ndarray  # [6] rad, within the joint limits
    gripper: float  # [0, 1], 1 = open
    ik: Any  # the kinematics' IK result (`reached`, `pos_err_m`, `rot_err_rad`)


@dataclass(frozen=True)
class DirectTarget:
    """The `ik` of a joint target that needed no IK: reached by construction."""

    reached: bool = True
    pos_err_m: float = 0.0
    rot_err_rad: float = 0.0


DIRECT = DirectTarget()


class EndEffectorIntegrator:
    def __init__(self, kinematics):
        self.kinematics = kinematics
        self.q_target: np.ndarray | None = None
        self.pose: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def anchored(self) -> bool:
        return self.q_target is not None

    def anchor(self, q_measured: np.ndarray) -> None:
        """Start integrating from the measured joint positions."""
        self.q_target = self.kinematics.clamp(np.asarray(q_measured, dtype=np.float64))
        self.pose = tuple(self.kinematics.fk(self.q_target))

    def release(self) -> None:
        """Forget the target: the next action re-anchors to the measured joints."""
        self.q_target, self.pose = None, None

    def move_towards(self, target7: np.ndarray, share: float) -> JointTargets:
        """Go `share` (0..1] of the way from the last commanded joints to absolute targets [6 rad + gripper]."""
        if self.q_target is None:
            raise RuntimeError("anchor() the integrator to the measured joints first")
        goal = self.kinematics.clamp(np.asarray(target7[:6], dtype=np.float64))
        self.q_target = self.kinematics.clamp(self.q_target + (goal - self.q_target) * float(np.clip(share, 0.0, 1.0)))
        self.pose = tuple(self.kinematics.fk(self.q_target))
        return JointTargets(self.q_target.copy(), float(np.clip(target7[6], 0.0, 1.0)), DIRECT)

    def apply(self, action7: np.ndarray) -> JointTargets:
        if self.q_target is None:
            raise RuntimeError("anchor() the integrator to the measured joints first")
        self.pose, result = self.kinematics.apply_delta(self.q_target, self.pose, action7)
        self.q_target = self.kinematics.clamp(result.q)
        return JointTargets(self.q_target.copy(), float(np.clip(action7[6], 0.0, 1.0)), result)
