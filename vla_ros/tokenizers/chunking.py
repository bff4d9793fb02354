"""Cutting episodes into fixed-horizon training chunks."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from vla_ros.tokenizers.normalization import ACTION_DIM, GRIPPER


def chunks_from_episode(actions: np.ndarray, horizon: int = 8) -> np.ndarray:
    """All chunks `actions[t:t+horizon]` of one episode, one per start index t: [T, horizon, 7].

    Past the episode's end a chunk is padded with zero motion (dims 0–5 = 0) and the episode's
    last gripper value, i.e. the arm holds still with the gripper where it ended — what a
    robot should do when the demonstration has nothing more to say.
    """
    actions = np.asarray(actions, dtype=np.float32)
    if actions.ndim != 2 or actions.shape[1] != ACTION_DIM:
        raise ValueError(f"episode actions must have shape [T, {ACTION_DIM}], got {actions.shape}")
    if horizon < 1:
        raise ValueError(f"horizon must be at least 1, got {horizon}")
    steps = actions.shape[0]
    if steps == 0:
        return np.zeros((0, horizon, ACTION_DIM), np.float32)
    pad = np.zeros((horizon - 1, ACTION_DIM), np.float32)
    pad[:, GRIPPER] = actions[-1, GRIPPER]
    padded = np.concatenate([actions, pad], axis=0)
    index = np.arange(steps)[:, None] + np.arange(horizon)[None, :]
    return padded[index]


def chunks_from_episodes(episodes: Iterable[np.ndarray], horizon: int = 8) -> np.ndarray:
    """`chunks_from_episode` over many episodes, concatenated: [N, horizon, 7]."""
    parts = [chunks_from_episode(a, horizon) for a in episodes]
    if not parts:
        return np.zeros((0, horizon, ACTION_DIM), np.float32)
    return np.concatenate(parts, axis=0)
