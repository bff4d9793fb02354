"""Closed-loop fidelity: the scripted expert's success when its chunks pass through a tokenizer.

At every replanning point the expert's next `horizon` actions are simulated from a snapshot
(`lookahead_actions`), optionally encoded and decoded, and the first `execute` steps are run
in the workcell — the sliding window the stack uses. The baseline is the same loop on the raw
actions, so any difference is the tokenizer's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

EXECUTE_STEPS = 3
MAX_EPISODE_STEPS = 80

ChunkTransform = Callable[[np.ndarray], np.ndarray]  # [H, 7] → [H, 7]


def round_trip(tokenizer) -> ChunkTransform:
    """encode → decode of one chunk through `tokenizer`."""
    return lambda chunk: tokenizer.decode(tokenizer.encode(chunk[None]))[0]


def run_closed_loop(workcell, expert, seed: int, family: str, transform: ChunkTransform | None, *,
                    horizon: int = 8, execute: int = EXECUTE_STEPS, max_steps: int = MAX_EPISODE_STEPS) -> bool:
    """One episode with replanning every `execute` steps; True when the task succeeded within `max_steps`."""
    from vla_ros.sim.expert import lookahead_actions

    workcell.reset(seed, family=family)
    steps = 0
    while steps < max_steps:
        chunk, _ = lookahead_actions(workcell, expert, horizon)
        if transform is not None:
            chunk = transform(chunk)
        for action in chunk[:execute]:
            workcell.step(action, render=False)
            steps += 1
            if workcell.success():
                return True
            if steps >= max_steps:
                break
    return False


def closed_loop_fidelity(episodes: Sequence, transforms: dict[str, ChunkTransform | None], *, split: str = "train",
                         horizon: int = 8, progress: bool = True) -> dict:
    """Success rate per transform (None = raw actions) and task family over the episodes' (seed, family).

    Returns {name: {"overall": rate, "per_family": {family: rate}, "successes": [...]}}.
    """
    from tqdm import tqdm

    from vla_ros.sim.expert import ScriptedExpert
    from vla_ros.sim.workcell import Workcell

    expert = ScriptedExpert()
    results: dict[str, dict] = {}
    with Workcell(render=False, split=split) as workcell:
        bar = tqdm(total=len(episodes) * len(transforms), desc="closed loop", unit="ep", disable=not progress)
        for name, transform in transforms.items():
            outcomes = []
            for episode in episodes:
                outcomes.append(run_closed_loop(workcell, expert, episode.seed, episode.family, transform,
                                                horizon=horizon))
                bar.update(1)
            families = sorted({e.family for e in episodes})
            per_family = {
                f: float(np.mean([o for o, e in zip(outcomes, episodes) if e.family == f])) for f in families
            }
            results[name] = {"overall": float(np.mean(outcomes)), "per_family": per_family,
                             "episodes": len(outcomes), "successes": [bool(o) for o in outcomes]}
        bar.close()
    return results
