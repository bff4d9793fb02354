"""Synthetic demonstrations: smooth end-effector motions between random waypoints with a binary gripper.

Used by the tests (no simulator needed) and as a stand-in data set; the motions mimic a
scripted pick-and-place expert: speed-capped straight moves, a wrist yaw, and gripper
switches while the arm pauses.
"""

from __future__ import annotations

import numpy as np

MAX_STEP_M = 0.02
MAX_YAW_STEP = 0.1


def synthetic_episode(rng: np.random.Generator, waypoints: int = 4) -> np.ndarray:
    """One episode of actions [T, 7]."""
    position = rng.uniform([0.2, -0.2, 0.05], [0.4, 0.2, 0.3])
    yaw = 0.0
    gripper = 1.0
    steps = []
    for _ in range(waypoints):
        target = rng.uniform([0.2, -0.2, 0.03], [0.4, 0.2, 0.3])
        target_yaw = rng.uniform(-0.6, 0.6)
        speed = rng.uniform(0.4, 1.0) * MAX_STEP_M
        while True:
            delta = target - position
            distance = float(np.linalg.norm(delta))
            move = delta if distance <= speed else delta / distance * speed
            dyaw = float(np.clip(target_yaw - yaw, -MAX_YAW_STEP, MAX_YAW_STEP))
            noise = rng.normal(0.0, 0.0005, 3)
            steps.append([*(move + noise), 0.0, 0.0, dyaw, gripper])
            position = position + move
            yaw += dyaw
            if distance <= speed and abs(target_yaw - yaw) < 1e-6:
                break
        gripper = 1.0 - gripper
        for _ in range(int(rng.integers(2, 4))):  # pause while the fingers move
            steps.append([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, gripper])
    return np.asarray(steps, dtype=np.float32)


def synthetic_episodes(count: int, seed: int = 0) -> list[np.ndarray]:
    """`count` episodes from one seeded generator."""
    rng = np.random.default_rng(seed)
    return [synthetic_episode(rng) for _ in range(count)]
