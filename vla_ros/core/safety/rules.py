"""Safety rules: pure functions of a command, what the monitor knows, and the limits.

Each returns allow, scale(k) or halt(reason). "Scale" slows a command down: it keeps its target and
stretches its reach time by 1/k, so velocities and speeds shrink by k. A velocity, acceleration or speed
more than `jump_factor` times over its limit is a leap, not a fast move, and halts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vla_ros.core.safety.limits import SafetyLimits
from vla_ros.core.safety.verdict import Verdict, allow, halt, scale


@dataclass(frozen=True)
class ArmCommand:
    positions: np.ndarray  # [6] rad
    reach_s: float  # time_from_start of the (single) point
    obs_stamp_s: float  # the observation the command was computed from


@dataclass(frozen=True)
class Reference:
    """Where the arm is commanded to be now, and how fast it was last commanded to move."""

    positions: np.ndarray  # [6]: the last forwarded target, else the measured positions
    velocity: np.ndarray  # [6] rad/s of the last forwarded command (zeros after a hold)
    ee_pos: np.ndarray  # [3] end effector at `positions`


def _over(ratio: float, limits: SafetyLimits, rule: str, what: str) -> Verdict:
    if ratio > limits.jump_factor:
        return halt(rule, f"{what} is {ratio:.1f}× its limit (a jump)")
    if ratio > 1.0 + 1e-6:  # a command slowed to exactly the limit may recompute to 1.0000001×
        return scale(1.0 / ratio, rule, f"{what} is {ratio:.2f}× its limit: slowed down")
    return allow()


def finite(command: ArmCommand, measured: np.ndarray | None) -> Verdict:
    if not np.all(np.isfinite(command.positions)) or not np.isfinite(command.reach_s):
        return halt("finite", "command contains NaN or inf")
    if measured is not None and not np.all(np.isfinite(measured)):
        return halt("finite", "joint state contains NaN or inf")
    return allow()


def joint_positions(command: ArmCommand, limits: SafetyLimits) -> Verdict:
    low, high = limits.safe_lower, limits.safe_upper
    bad = np.flatnonzero((command.positions < low) | (command.positions > high))
    if bad.size:
        j = int(bad[0])
        return halt("joint_limit", f"joint {j} target {command.positions[j]:.3f} rad is outside "
                                   f"[{low[j]:.3f}, {high[j]:.3f}] (limits minus margin)")
    return allow()


def reach_time(command: ArmCommand, limits: SafetyLimits) -> Verdict:
    if command.reach_s < limits.min_reach_time:
        return halt("reach_time", f"time_from_start {command.reach_s:.3f} s is below {limits.min_reach_time} s")
    return allow()


def joint_velocity(command: ArmCommand, reference: Reference, limits: SafetyLimits) -> Verdict:
    velocity = np.abs(command.positions - reference.positions) / command.reach_s
    ratio = float(np.max(velocity / np.asarray(limits.max_joint_velocity)))
    return _over(ratio, limits, "joint_velocity", "joint velocity")


def joint_acceleration(command: ArmCommand, reference: Reference, limits: SafetyLimits) -> Verdict:
    velocity = (command.positions - reference.positions) / command.reach_s
    acceleration = np.abs(velocity - reference.velocity) / command.reach_s
    ratio = float(np.max(acceleration) / limits.max_joint_acceleration)
    return _over(ratio, limits, "joint_acceleration", "joint acceleration")


def workspace(ee_target: np.ndarray, ee_reference: np.ndarray, limits: SafetyLimits) -> Verdict:
    low, high = limits.workspace_min, limits.workspace_max
    if np.any(ee_target < low) or np.any(ee_target > high):
        return halt("workspace", f"end-effector target {np.round(ee_target, 3).tolist()} m is outside the "
                                 f"workspace box {low.tolist()}..{high.tolist()}")
    # Slow down near a wall, but only when moving towards it.
    distance = np.minimum(ee_target - low, high - ee_target)
    towards = np.where(ee_target - low < high - ee_target, ee_target < ee_reference, ee_target > ee_reference)
    near = (distance < limits.slowdown_band) & towards
    if np.any(near):
        factor = max(0.25, float(np.min(distance[near])) / limits.slowdown_band)
        return scale(factor, "workspace", "end effector is moving into the slow-down band near the workspace wall")
    return allow()


def ee_speed(ee_target: np.ndarray, reference: Reference, reach_s: float, limits: SafetyLimits) -> Verdict:
    speed = float(np.linalg.norm(ee_target - reference.ee_pos)) / reach_s
    return _over(speed / limits.max_ee_speed, limits, "ee_speed", f"end-effector speed {speed:.3f} m/s")


def staleness(obs_stamp_s: float, now_s: float, joint_state_age_s: float | None, limits: SafetyLimits) -> Verdict:
    age = now_s - obs_stamp_s
    if age > limits.max_obs_age:
        return halt("stale_input", f"command was computed from an observation {age:.3f} s old "
                                   f"(max_obs_age {limits.max_obs_age} s)")
    if age < -limits.clock_jump:
        return halt("stale_input", f"command's observation stamp lies {-age:.3f} s in the future")
    if joint_state_age_s is None:
        return halt("stale_input", "no joint state received")
    if joint_state_age_s > limits.max_joint_state_age:
        return halt("stale_input", f"joint state is {joint_state_age_s:.3f} s old "
                                   f"(max_joint_state_age {limits.max_joint_state_age} s)")
    return allow()


def clock_jump(ros_elapsed_s: float, monotonic_elapsed_s: float, limits: SafetyLimits) -> Verdict:
    jump = ros_elapsed_s - monotonic_elapsed_s
    if abs(jump) > limits.clock_jump:
        direction = "forwards" if jump > 0 else "backwards"
        return halt("clock_jump", f"ROS time jumped {direction} by {abs(jump):.3f} s")
    return allow()


def gripper_effort(target: float, measured: float | None, effort: float | None, limits: SafetyLimits) -> Verdict:
    """Refuse to squeeze harder once a finger's effort is over its limit (opening is always allowed)."""
    if not np.isfinite(target) or not 0.0 <= target <= 1.0:
        return halt("gripper", f"gripper target {target} is not in [0, 1]")
    closing = measured is not None and target < measured
    if effort is not None and abs(effort) > limits.max_gripper_effort and closing:
        return halt("gripper_effort", f"gripper effort {abs(effort):.1f} N is over {limits.max_gripper_effort} N")
    return allow()
