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


def run_episode(workcell: Workcell, policy: Policy, seed: int, task: Task | None = None,
                family: str | None = None, max_steps: int = MAX_EPISODE_STEPS,
                on_step: Callable[[Observation, np.ndarray], None] | None = None) -> EpisodeRecord:
    """Reset with `seed` (and `task` or a task `family`), act until success or `max_steps`.

    `policy(observation, instruction) -> action7`; a `last_phase` attribute, when present, is recorded.
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
        observation = workcell.step(action)
        if workcell.success():
            record.success = True
            break
    record.observations.append(observation)  # the final observation, after the last action
    return record
