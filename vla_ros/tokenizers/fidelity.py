"""Closed-loop fidelity: the scripted expert's success when its chunks pass through a tokenizer.

Each chunk is the expert's next `horizon` actions, simulated from a snapshot (`lookahead_actions`), optionally
encoded and decoded; the episode runs in `vla_ros.sim.rollout` (the graph's control loop and gate, the
executor's `execute_steps` of each chunk). The baseline is the same loop on the raw actions, so any
difference is the tokenizer's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

ChunkTransform = Callable[[np.ndarray], np.ndarray]  # [H, 7] → [H, 7]


def round_trip(tokenizer) -> ChunkTransform:
    """encode → decode of one chunk through `tokenizer`."""
    return lambda chunk: tokenizer.decode(tokenizer.encode(chunk[None]))[0]


class LookaheadChunks:
    """The expert's look-ahead chunk through `transform` (None = raw actions), as a rollout chunk source."""

    def __init__(self, workcell, transform: ChunkTransform | None, horizon: int = 8):
        from vla_ros.sim.expert import ScriptedExpert

        self.workcell, self.transform, self.horizon = workcell, transform, horizon
        self.expert = ScriptedExpert()

    def chunk(self, observation, instruction: str) -> tuple[np.ndarray, str]:
        from vla_ros.sim.expert import lookahead_actions

        chunk, _ = lookahead_actions(self.workcell, self.expert, self.horizon)
        return (chunk if self.transform is None else self.transform(chunk)), ""


def run_closed_loop(workcell, seed: int, family: str, transform: ChunkTransform | None, *, horizon: int = 8,
                    executor=None) -> bool:
    """One episode replanning every `executor.execute_steps` ticks; True when the task succeeded."""
    from vla_ros.sim.rollout import rollout

    return rollout(workcell, LookaheadChunks(workcell, transform, horizon), seed, family=family,
                   executor=executor).success


def closed_loop_fidelity(episodes: Sequence, transforms: dict[str, ChunkTransform | None], *, split: str = "train",
                         horizon: int = 8, progress: bool = True) -> dict:
    """Success rate per transform (None = raw actions) and task family over the episodes' (seed, family).

    Returns {name: {"overall": rate, "per_family": {family: rate}, "successes": [...]}}.
    """
    from tqdm import tqdm

    from vla_ros.sim.workcell import Workcell

    results: dict[str, dict] = {}
    with Workcell(render=False, split=split) as workcell:
        bar = tqdm(total=len(episodes) * len(transforms), desc="closed loop", unit="ep", disable=not progress)
        for name, transform in transforms.items():
            outcomes = []
            for episode in episodes:
                outcomes.append(run_closed_loop(workcell, episode.seed, episode.family, transform, horizon=horizon))
                bar.update(1)
            families = sorted({e.family for e in episodes})
            per_family = {
                f: float(np.mean([o for o, e in zip(outcomes, episodes) if e.family == f])) for f in families
            }
            results[name] = {"overall": float(np.mean(outcomes)), "per_family": per_family,
                             "episodes": len(outcomes), "successes": [bool(o) for o in outcomes]}
        bar.close()
    return results
