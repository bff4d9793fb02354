"""Per-dimension q01/q99 normalization of 7-D actions to [-1, 1], with the gripper kept binary."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ACTION_DIM = 7
GRIPPER = 6
CONTINUOUS = slice(0, 6)
# Floor on the half-range (metres or radians). A dimension that barely varies in the data (the
# sim expert's roll/pitch corrections are 0 in 99 % of steps) would otherwise be scaled by ~1e-15
# and turn float noise into full-scale normalized values; 1 mm / 1 mrad is below what matters.
MIN_HALF_RANGE = 1e-3


@dataclass(frozen=True)
class ActionNormalizer:
    """Maps dims 0–5 from [q01, q99] to [-1, 1] (clipped) and thresholds the gripper at 0.5 to {0, 1}.

    x_n = clip((x - (q99 + q01)/2) / max((q99 - q01)/2, 1e-3), -1, 1) for dims 0–5.

    This is the OpenVLA convention: the 1 % tails are clipped, so an action beyond the data
    set's q01/q99 comes back at the percentile (the max error reported by `compare` shows it).
    """

    q01: np.ndarray  # [6] float32
    q99: np.ndarray  # [6] float32

    @classmethod
    def from_actions(cls, actions: np.ndarray) -> "ActionNormalizer":
        """Statistics from every step of a data set, `actions` [N, 7]."""
        actions = np.asarray(actions, dtype=np.float64).reshape(-1, ACTION_DIM)
        if actions.shape[0] == 0:
            raise ValueError("cannot compute normalization statistics from zero actions")
        q01 = np.quantile(actions[:, CONTINUOUS], 0.01, axis=0)
        q99 = np.quantile(actions[:, CONTINUOUS], 0.99, axis=0)
        return cls(q01=q01.astype(np.float32), q99=q99.astype(np.float32))

    @classmethod
    def from_dict(cls, stats: dict) -> "ActionNormalizer":
        return cls(q01=np.asarray(stats["q01"], dtype=np.float32), q99=np.asarray(stats["q99"], dtype=np.float32))

    def to_dict(self) -> dict:
        return {"q01": [float(v) for v in self.q01], "q99": [float(v) for v in self.q99], "gripper": "binary@0.5"}

    @property
    def half_range(self) -> np.ndarray:
        return np.maximum((self.q99 - self.q01) / 2, MIN_HALF_RANGE).astype(np.float32)

    @property
    def centre(self) -> np.ndarray:
        return ((self.q99 + self.q01) / 2).astype(np.float32)

    def normalize(self, actions: np.ndarray) -> np.ndarray:
        """[..., 7] physical → [..., 7]: dims 0–5 in [-1, 1], gripper in {0, 1}."""
        actions = np.asarray(actions, dtype=np.float32)
        out = np.empty_like(actions)
        out[..., CONTINUOUS] = np.clip((actions[..., CONTINUOUS] - self.centre) / self.half_range, -1.0, 1.0)
        out[..., GRIPPER] = binarize_gripper(actions[..., GRIPPER])
        return out

    def unnormalize(self, normalized: np.ndarray) -> np.ndarray:
        """Inverse of `normalize` on its image."""
        normalized = np.asarray(normalized, dtype=np.float32)
        out = np.empty_like(normalized)
        out[..., CONTINUOUS] = normalized[..., CONTINUOUS] * self.half_range + self.centre
        out[..., GRIPPER] = binarize_gripper(normalized[..., GRIPPER])
        return out


def binarize_gripper(values: np.ndarray) -> np.ndarray:
    """Gripper targets to {0, 1} (1 = open): ≥ 0.5 is open."""
    return (np.asarray(values) >= 0.5).astype(np.float32)
