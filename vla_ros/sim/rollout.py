"""Run one episode in the workcell with any policy and keep what a data set or a video needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from vla_ros.sim.expert import PHASES, ScriptedExpert
from vla_ros.sim.tasks import Task
from vla_ros.sim.workcell import Observation, Workcell

MAX_EPISODE_STEPS = 80


class Policy(Protocol):
    """Anything that maps an observation and an instruction to a 7-D action (team convention)."""

    def __call__(self, observation: Observation, instruction: str) -> np.ndarray: ...


class ExpertPolicy:
    """The scripted expert behind the `Policy` interface; remembers the phase of its last action."""

    def __init__(self, workcell: Workcell) -> None:
        self.workcell = workcell
        self.expert = ScriptedExpert()
        self.last_phase: str | None = None

    def __call__(self, observation: Observation, instruction: str) -> np.ndarray:
        action, self.last_phase = self.expert.act(self.workcell)
        return action


@dataclass
class EpisodeRecord:
    """Observations before each action, the actions, and the outcome."""

    seed: int
    task: Task
    observations: list[Observation] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    phases: list[int] = field(default_factory=list)  # index into PHASES, -1 when the policy has none
    success: bool = False


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


def run_episode(workcell: Workcell, policy: Policy, seed: int, task: Task | None = None,
                family: str | None = None, max_steps: int = MAX_EPISODE_STEPS,
                on_step: Callable[[Observation, np.ndarray], None] | None = None,
                perturb: Callable[[np.ndarray], np.ndarray] | None = None) -> EpisodeRecord:
    """Reset with `seed` (and `task` or a task `family`), act until success or `max_steps`.

    `policy(observation, instruction) -> action7`; a `last_phase` attribute, when present, is recorded.
    With `perturb` (e.g. `ActionNoise`), `perturb(action)` is executed and `action` recorded.
    """
    observation = workcell.reset(seed, task, family=family)
    record = EpisodeRecord(seed=seed, task=workcell.task)
    for _ in range(max_steps):
        action = np.asarray(policy(observation, workcell.task.instruction), dtype=np.float32).reshape(7)
        phase = getattr(policy, "last_phase", None)
        record.observations.append(observation)
        record.actions.append(action)
        record.phases.append(PHASES.index(phase) if phase in PHASES else -1)
        if on_step is not None:
            on_step(observation, action)
        observation = workcell.step(action if perturb is None else perturb(action))
        if workcell.success():
            record.success = True
            break
    record.observations.append(observation)  # the final observation, after the last action
    return record
