"""End-effector target integration: 7-D delta actions → joint targets, as the simulated workcell does it.

The target pose is integrated from the last *commanded* pose (not the measured one), exactly like
`Workcell.step`, so a policy behaves the same through ROS as in-process. It is re-anchored to the
measured joints whenever execution (re)starts after a hold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vla_ros.sim.kinematics import ArmKinematics, IKResult, Pose


@dataclass(frozen=True)
class JointTargets:
    arm: np.ndarray  # [6] rad, within the joint limits
    gripper: float  # [0, 1], 1 = open
    ik: IKResult


class EndEffectorIntegrator:
    def __init__(self, kinematics: ArmKinematics | None = None):
        self.kinematics = kinematics or ArmKinematics()
        self.q_target: np.ndarray | None = None
        self.pose: Pose | None = None

    @property
    def anchored(self) -> bool:
        return self.q_target is not None

    def anchor(self, q_measured: np.ndarray) -> None:
        """Start integrating from the measured joint positions."""
        self.q_target = self.kinematics.clamp(np.asarray(q_measured, dtype=np.float64))
        self.pose = Pose(*self.kinematics.fk(self.q_target))

    def release(self) -> None:
        """Forget the target: the next action re-anchors to the measured joints."""
        self.q_target, self.pose = None, None

    def apply(self, action7: np.ndarray) -> JointTargets:
        if self.q_target is None:
            raise RuntimeError("anchor() the integrator to the measured joints first")
        self.pose, result = self.kinematics.apply_delta(self.q_target, self.pose, action7)
        self.q_target = self.kinematics.clamp(result.q)
        return JointTargets(self.q_target.copy(), float(np.clip(action7[6], 0.0, 1.0)), result)
