"""Output token ids of the policy: the tokenizer's action ids, then plan words and three special tokens.

    [0, A)              action ids of the tokenizer (A = its vocab_size)
    [A, A + W)          plan words (the expert's phase names)
    A + W               END_PLAN   closes a plan; the action tokens follow it
    A + W + 1           START_ACTIONS   first generated input when no plan is asked for
    A + W + 2           START_PLAN      first generated input when a plan is asked for
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Vocabulary:
    action_size: int
    plan_words: tuple[str, ...]
    max_plan_tokens: int

    @property
    def end_plan(self) -> int:
        return self.action_size + len(self.plan_words)

    @property
    def start_actions(self) -> int:
        return self.end_plan + 1

    @property
    def start_plan(self) -> int:
        return self.end_plan + 2

    @property
    def size(self) -> int:
        return self.end_plan + 3

    def plan_ids(self, phases: Sequence[int]) -> list[int]:
        """The plan for the rest of an episode: its phase sequence with repeats merged, then END_PLAN.

        `phases` are indices into `plan_words` from the current step to the episode's end.
        """
        merged: list[int] = []
        for phase in phases:
            if 0 <= phase < len(self.plan_words) and (not merged or merged[-1] != phase):
                merged.append(int(phase))
        return [self.action_size + p for p in merged[: self.max_plan_tokens]] + [self.end_plan]

    def plan_text(self, ids: Sequence[int]) -> str:
        """Plan ids → 'reach; grasp; lift' (END_PLAN and anything else ignored)."""
        words = [self.plan_words[i - self.action_size] for i in ids
                 if self.action_size <= i < self.action_size + len(self.plan_words)]
        return "; ".join(words)

    def action_mask(self) -> np.ndarray:
        """Boolean [size]: ids allowed where an action token is due."""
        mask = np.zeros(self.size, bool)
        mask[: self.action_size] = True
        return mask

    def plan_mask(self) -> np.ndarray:
        """Boolean [size]: ids allowed inside a plan (plan words and END_PLAN)."""
        mask = np.zeros(self.size, bool)
        mask[self.action_size: self.end_plan + 1] = True
        return mask
