"""Safety limits of the wx250s: what no command may exceed. Read-only parameters of the safety monitor."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Interbotix wx250s.urdf.xacro gives velocity="3.14" rad/s for the arm joints; the default here is lower
# (the BridgeData data never exceeds about 2.1 rad/s at the wrist).
DEFAULT_MAX_JOINT_VELOCITY = 3.14
# BridgeData WidowX workspace bounds as OpenVLA's Bridge evaluation sets them (base frame: x forward,
# y left, z up; metres): [[0.1, -0.25, -0.05], [0.45, 0.25, 0.25]].
BRIDGE_WORKSPACE_MIN = (0.1, -0.25, -0.05)
BRIDGE_WORKSPACE_MAX = (0.45, 0.25, 0.25)


@dataclass(frozen=True)
class SafetyLimits:
    joint_lower: np.ndarray  # [6] rad, the arm's limits
    joint_upper: np.ndarray
    position_margin: float = 0.05  # rad kept clear of each joint limit
    max_joint_velocity: np.ndarray = field(default_factory=lambda: np.full(6, DEFAULT_MAX_JOINT_VELOCITY))
    max_joint_acceleration: float = 30.0  # rad/s², per joint
    jump_factor: float = 2.0  # a velocity or acceleration this many times over its limit halts instead of scaling
    workspace_min: np.ndarray = field(default_factory=lambda: np.array(BRIDGE_WORKSPACE_MIN))
    workspace_max: np.ndarray = field(default_factory=lambda: np.array(BRIDGE_WORKSPACE_MAX))
    slowdown_band: float = 0.02  # m inside the box where motion towards the wall is slowed
    max_ee_speed: float = 0.25  # m/s (reduced-speed mode)
    max_obs_age: float = 1.0  # s between the observation a command was computed from and now
    max_joint_state_age: float = 0.25  # s
    clock_jump: float = 0.5  # s of disagreement between ROS time and the monotonic clock
    max_gripper_effort: float = 20.0  # N on a finger, where effort is reported
    min_reach_time: float = 0.02  # s: a command must take at least this long (no instantaneous jumps)

    @property
    def safe_lower(self) -> np.ndarray:
        return self.joint_lower + self.position_margin

    @property
    def safe_upper(self) -> np.ndarray:
        return self.joint_upper - self.position_margin

    def problems(self) -> list[str]:
        """Inconsistent limits (a misconfigured monitor forwards nothing)."""
        found = []
        if np.any(self.safe_lower >= self.safe_upper):
            found.append("position_margin leaves no room between the joint limits")
        if np.any(np.asarray(self.max_joint_velocity) <= 0) or self.max_joint_acceleration <= 0:
            found.append("velocity and acceleration limits must be positive")
        if np.any(self.workspace_min + self.slowdown_band >= self.workspace_max - self.slowdown_band):
            found.append("the workspace box is empty once the slow-down band is taken off")
        if min(self.max_ee_speed, self.max_obs_age, self.max_joint_state_age, self.clock_jump) <= 0:
            found.append("speed, age and clock limits must be positive")
        if len(self.max_joint_velocity) != 6 or len(self.workspace_min) != 3 or len(self.workspace_max) != 3:
            found.append("max_joint_velocity needs 6 values, workspace_min/max 3 each")
        return found
