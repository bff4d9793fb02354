"""The safety gate as the safety_monitor's parameters configure it (shared by the node and the offline replay)."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from vla_ros.core.safety.gate import JointSnapshot, SafetyGate
from vla_ros.core.safety.limits import SafetyLimits

POLICY_LEASE = "vla_policy"
EXECUTOR_LEASE = "chunk_executor"


def limits_from_parameters(p: Mapping[str, Any], joint_limits: np.ndarray) -> SafetyLimits:
    """SafetyLimits from the safety_monitor's parameter values; `joint_limits` is [6, 2] (lower, upper) rad."""
    joint_limits = np.asarray(joint_limits, dtype=np.float64)
    return SafetyLimits(
        joint_lower=joint_limits[:, 0], joint_upper=joint_limits[:, 1],
        position_margin=p["position_margin"], max_joint_velocity=np.array(p["max_joint_velocity"], float),
        max_joint_acceleration=p["max_joint_acceleration"], jump_factor=p["jump_factor"],
        workspace_min=np.array(p["workspace_min"], float), workspace_max=np.array(p["workspace_max"], float),
        slowdown_band=p["slowdown_band"], max_ee_speed=p["max_ee_speed"], max_obs_age=p["max_obs_age"],
        max_joint_state_age=p["max_joint_state_age"], clock_jump=p["clock_jump"],
        max_gripper_effort=p["max_gripper_effort"],
    )


def gate_from_parameters(p: Mapping[str, Any], kinematics) -> SafetyGate:
    """An inactive gate with the policy's token lease and the executor's liveliness lease; check `.problems`."""
    gate = SafetyGate(limits_from_parameters(p, kinematics.joint_limits), kinematics.fk,
                      max_command_rate=p["max_command_rate"])
    gate.add_lease(POLICY_LEASE, p["policy_lease"])
    gate.add_lease(EXECUTOR_LEASE, 0.0)
    return gate


def joint_snapshot(msg, received_mono: float) -> JointSnapshot | None:
    """What the gate keeps of a sensor_msgs/JointState (duck-typed), or None when the arm joints are incomplete."""
    from vla_ros.sim.kinematics import JOINT_NAMES
    from vla_ros.sim.workcell import FINGER_CLOSED, FINGER_OPEN

    index = {n: i for i, n in enumerate(msg.name)}
    if not all(n in index for n in JOINT_NAMES) or len(msg.position) < len(msg.name):
        return None
    positions = np.array([msg.position[index[n]] for n in JOINT_NAMES])
    velocities = (np.array([msg.velocity[index[n]] for n in JOINT_NAMES])
                  if len(msg.velocity) == len(msg.name) else None)
    opening = effort = None
    if "left_finger" in index:
        finger = msg.position[index["left_finger"]]
        opening = float(np.clip((finger - FINGER_CLOSED) / (FINGER_OPEN - FINGER_CLOSED), 0.0, 1.0))
        if len(msg.effort) == len(msg.name):
            effort = float(msg.effort[index["left_finger"]])
    return JointSnapshot(positions, velocities, opening, effort, received_mono)
