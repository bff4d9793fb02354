"""The `/vla/action_chunk` message layout (a `trajectory_msgs/JointTrajectory`), as plain data.

`joint_names` are the seven action dimensions, `points[i].positions` is action step i,
`points[i].time_from_start = i·dt`, `header.stamp` is the observation stamp the chunk was computed
from, and `header.frame_id` carries the task and tokenizer identity as `task=<crc32 hex> tokenizer=<hex>`
(JointTrajectory has no other free field, and no consumer reads a coordinate frame from a chunk).

The joint names say the action space: the seven Bridge deltas `dx … gripper` (`ee_delta`, what the built-in
policy and OpenVLA emit), or the six arm joints and `gripper` (`joint_position`: absolute joint targets in
rad and the gripper opening, what many π0 set-ups emit) — a JointTrajectory in its ordinary meaning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from vla_ros.core.settings import CONTROL_PERIOD_S
from vla_ros.robot.wx250s import ARM_JOINTS, GRIPPER_COMMAND_JOINT

ACTION_NAMES = ("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper")
JOINT_TARGET_NAMES = (*ARM_JOINTS, GRIPPER_COMMAND_JOINT)
EE_DELTA, JOINT_POSITION = "ee_delta", "joint_position"
ACTION_SPACES = (EE_DELTA, JOINT_POSITION)
NAMES_BY_SPACE = {EE_DELTA: ACTION_NAMES, JOINT_POSITION: JOINT_TARGET_NAMES}
_FRAME_ID = re.compile(r"^task=([0-9a-f]{8}) tokenizer=([0-9a-f]{1,16})$")


class ChunkError(ValueError):
    """A chunk message that must be rejected; the message says why."""


@dataclass(frozen=True)
class ActionChunk:
    actions: np.ndarray  # float [H, 7]
    stamp_ns: int  # observation stamp
    dt_s: float  # time between steps
    task_hash: int
    tokenizer: str
    action_space: str = EE_DELTA  # joint_position: actions are absolute joint targets + gripper opening


def chunk_frame_id(task_hash: int, tokenizer: str) -> str:
    return f"task={task_hash & 0xFFFFFFFF:08x} tokenizer={tokenizer}"


def chunk_points(actions: np.ndarray, dt_s: float) -> list[tuple[list[float], int]]:
    """(positions, time_from_start in ns) per step."""
    actions = np.asarray(actions, dtype=np.float64)
    if actions.ndim != 2 or actions.shape[1] != len(ACTION_NAMES):
        raise ChunkError(f"a chunk is [H, 7] actions, got shape {actions.shape}")
    return [(row.tolist(), int(round(i * dt_s * 1e9))) for i, row in enumerate(actions)]


def parse_chunk(joint_names, points, stamp_ns: int, frame_id: str) -> ActionChunk:
    """Check a received chunk; `points` is a list of (positions, time_from_start ns)."""
    space = next((space for space, names in NAMES_BY_SPACE.items() if tuple(joint_names) == names), None)
    if space is None:
        raise ChunkError(f"joint_names are {list(joint_names)}, expected the action dimensions {list(ACTION_NAMES)} "
                         f"or the joint targets {list(JOINT_TARGET_NAMES)}")
    if len(points) < 1:
        raise ChunkError("the chunk has no points")
    match = _FRAME_ID.match(frame_id)
    if not match:
        raise ChunkError(f"header.frame_id {frame_id!r} does not carry 'task=<8 hex> tokenizer=<hex>'")
    actions = np.array([list(positions) for positions, _ in points], dtype=np.float64)
    if actions.shape != (len(points), len(ACTION_NAMES)):
        raise ChunkError(f"every point needs {len(ACTION_NAMES)} positions, got shape {actions.shape}")
    times = np.array([t for _, t in points], dtype=np.int64)
    steps = np.diff(times)
    if len(points) > 1 and (np.any(steps <= 0) or np.ptp(steps) > 1_000_000):  # 1 ms tolerance
        raise ChunkError("points' time_from_start must increase in equal steps")
    if times[0] != 0:
        raise ChunkError(f"the first point's time_from_start must be 0, got {times[0]} ns")
    dt_s = float(steps[0]) * 1e-9 if len(points) > 1 else CONTROL_PERIOD_S
    return ActionChunk(actions, int(stamp_ns), dt_s, int(match.group(1), 16), match.group(2), space)
