"""What the rest of the stack knows about the WidowX 250 6DOF arm (Interbotix `wx250s`), without MuJoCo.

Joint names and limits as the Interbotix driver and our MJCF (`robot/assets/wx250s.xml`) name them, the
gripper's two units (the policy's opening, 1 = open as in BridgeData; the controllers' finger position in
metres) and how to read a `sensor_msgs/JointState` by name. `robot.kinematics` adds FK/IK from the MJCF;
a test checks that the limits here are the MJCF's.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

ARM_JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")
GRIPPER_COMMAND_JOINT = "gripper"  # the executor's gripper command: opening 0 (closed) .. 1 (open)
FINGER_JOINT = "left_finger"  # the gripper controller's joint: finger position in metres
FINGER_JOINTS = (FINGER_JOINT, "right_finger")  # both fingers, as the arm's JointState lists them
# Lower, upper limit per arm joint (rad), ARM_JOINTS order: the MJCF's ranges.
JOINT_LIMITS = np.array([
    [-3.14158, 3.14158],
    [-1.88496, 1.98968],
    [-2.14675, 1.60570],
    [-3.14158, 3.14158],
    [-1.74533, 2.14675],
    [-3.14158, 3.14158],
])
FINGER_CLOSED, FINGER_OPEN = 0.015, 0.037  # metres per finger, from the Interbotix URDF


def finger_position(opening: float) -> float:
    """Finger position (m) for a gripper opening in [0, 1] (clipped)."""
    return FINGER_CLOSED + float(np.clip(opening, 0.0, 1.0)) * (FINGER_OPEN - FINGER_CLOSED)


def gripper_opening(finger_m: float) -> float:
    """Gripper opening in [0, 1] for a finger position (m), clipped."""
    return float(np.clip((finger_m - FINGER_CLOSED) / (FINGER_OPEN - FINGER_CLOSED), 0.0, 1.0))


def joint_values(names: Sequence[str], values: Sequence[float], wanted: Sequence[str] = ARM_JOINTS
                 ) -> np.ndarray | None:
    """`values` (a JointState's position, velocity or effort) for the `wanted` joints, in that order.

    None when a wanted joint is missing or `values` does not have one entry per name (a JointState may leave
    velocity and effort empty).
    """
    if len(values) != len(names):
        return None
    index = {name: i for i, name in enumerate(names)}
    if not all(name in index for name in wanted):
        return None
    return np.array([values[index[name]] for name in wanted], dtype=np.float64)


def finger_value(names: Sequence[str], values: Sequence[float]) -> float | None:
    """The finger joint's entry of a JointState field, or None."""
    found = joint_values(names, values, (FINGER_JOINT,))
    return None if found is None else float(found[0])
