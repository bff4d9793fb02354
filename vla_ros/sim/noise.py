"""DART-style action noise for data generation: the expert's label is recorded, a perturbed copy executed."""

from __future__ import annotations

import numpy as np


class ActionNoise:
    """DART-style perturbation of executed actions (Laskey et al., 2017): the demonstrator's own
    action is recorded as the label, a perturbed copy is executed, so the data set holds the
    states a slightly-off learner reaches and the expert's correction from each of them.

    The noise comes in bursts: each step starts one with probability `burst_probability`; a burst
    adds one random offset (standard deviation `sigma_m` per axis, `sigma_rad` in yaw) to the
    position and yaw deltas for `burst_steps` steps, pushing the arm a few centimetres off the
    expert's path; between bursts the expert acts unperturbed, so it recovers and the episode ends
    (constant noise of the same size keeps the expert from meeting its grasp tolerances). The
    gripper command is never perturbed. Deterministic given `seed`.
    """

    def __init__(self, sigma_m: float, seed: int, sigma_rad: float | None = None, burst_probability: float = 0.2,
                 burst_steps: int = 2, max_step_m: float = 0.03, max_step_rad: float = 0.3):
        if not np.isfinite(sigma_m) or sigma_m < 0:
            raise ValueError(f"noise sigma must be a finite non-negative number of metres, got {sigma_m!r}")
        self.sigma_m = float(sigma_m)
        self.sigma_rad = float(sigma_m * 8.0 if sigma_rad is None else sigma_rad)
        self.burst_probability, self.burst_steps = float(burst_probability), int(burst_steps)
        self.max_step_m, self.max_step_rad = max_step_m, max_step_rad
        self.rng = np.random.default_rng(seed)
        self.offset = np.zeros(4)
        self.left = 0

    def __call__(self, action: np.ndarray) -> np.ndarray:
        if self.left == 0 and self.rng.random() < self.burst_probability:
            self.offset = np.concatenate([self.rng.normal(0.0, self.sigma_m, 3),
                                          self.rng.normal(0.0, self.sigma_rad, 1)])
            self.left = self.burst_steps
        executed = np.array(action, dtype=np.float32, copy=True)
        if self.left > 0:
            self.left -= 1
            executed[:3] = np.clip(executed[:3] + self.offset[:3], -self.max_step_m, self.max_step_m)
            executed[5] = np.clip(executed[5] + self.offset[3], -self.max_step_rad, self.max_step_rad)
        return executed
