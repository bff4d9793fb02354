"""Preference pairs labelled by a person: two candidates rolled forward again and shown side by side.

Each shown pair comes from a preferences file: both candidates are rolled forward from the saved simulator
state exactly as the judge saw them (same look-ahead, same continuation), rendered from the
over-the-shoulder camera and written as one video, A on the left and B on the right (their order drawn at
random, so that the judge's choice cannot be read from the side). The person answers a, b, = (no preference)
or q (stop); the answers become pairs of source "human" in a file of the same format.
"""

from __future__ import annotations

import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import TextIO

import numpy as np

from vla_ros.alignment.preferences import (
    PreferenceWorker, PrefsSpec, check_base, load_prefs, records_of, restore_state, write_prefs)

ANSWERS = {"a": "a", "b": "b", "=": "=", "q": "q"}
FRAME_SIZE = (240, 240)


def side_by_side(left: list[np.ndarray], right: list[np.ndarray]) -> list[np.ndarray]:
    """Frames of two clips next to each other (the shorter one holds its last frame), a dark bar between."""
    length = max(len(left), len(right))
    out = []
    for i in range(length):
        a, b = left[min(i, len(left) - 1)], right[min(i, len(right) - 1)]
        bar = np.full((a.shape[0], 6, 3), 40, np.uint8)
        out.append(np.concatenate([a, bar, b], 1))
    return out


def _ask(prompt: str, answers: TextIO, out: TextIO) -> str:
    """The first valid answer read from `answers` ('q' at the end of the input)."""
    while True:
        out.write(prompt)
        out.flush()
        line = answers.readline()
        if not line:
            return "q"
        answer = line.strip().lower()
        if answer in ANSWERS:
            return ANSWERS[answer]
        out.write(f"'{answer}' is not an answer: type a, b, = (no preference) or q (stop)\n")


def label_pairs(policy_dir: str | Path, prefs_path: str | Path, out_path: str | Path, videos: str | Path, *,
                pairs: int = 20, seed: int = 0, answers: TextIO | None = None, out: TextIO | None = None) -> dict:
    """Show up to `pairs` judged pairs of `prefs_path` as videos, ask which is better, write `out_path`."""
    from vla_ros.sim.video import annotate, write_video

    answers, out = answers or sys.stdin, out or sys.stdout
    prefs = load_prefs(prefs_path)
    if len(prefs.pairs) == 0:
        raise ValueError(f"{prefs_path} holds no pairs to show")
    check_base(prefs, prefs_path, policy_dir)
    known = {f.name for f in fields(PrefsSpec)}
    spec = PrefsSpec(**{**{k: v for k, v in prefs.spec.items() if k in known}, "policy": str(policy_dir)})
    worker = PreferenceWorker(spec)
    videos = Path(videos)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(prefs.pairs))[:pairs]
    human: list[tuple[int, int, int, str, str]] = []
    agree = skipped = 0
    try:
        for shown, index in enumerate(order, 1):
            state_index, preferred, other = (int(v) for v in prefs.pairs[index])
            left, right = (preferred, other) if rng.random() < 0.5 else (other, preferred)
            clips = []
            for side, candidate in (("A", left), ("B", right)):
                state = restore_state(worker.workcell, int(prefs.seed[state_index]), prefs.family[state_index],
                                      prefs.physics[state_index], prefs.controller[state_index])
                frames = [annotate(worker.workcell.render(size=FRAME_SIZE), prefs.instruction[state_index],
                                   0, side)]
                actions = worker.runner.tokenizer.decode(prefs.tokens[state_index, candidate][None])[0]

                def on_step(observation, plan, frames=frames, side=side):
                    frames.append(annotate(worker.workcell.render(size=FRAME_SIZE), prefs.instruction[state_index],
                                           len(frames), side))

                worker.look_ahead(int(prefs.seed[state_index]), state, actions, on_step=on_step)
                clips.append(frames)
            path = videos / f"pair_{shown:03d}.mp4"
            write_video(path, side_by_side(*clips))
            answer = _ask(f"pair {shown}/{len(order)}: {path}\n  \"{prefs.instruction[state_index]}\": which is "
                          f"better, a (left) or b (right)? [a/b/=/q] ", answers, out)
            if answer == "q":
                break
            if answer == "=":
                skipped += 1
                continue
            chosen, rejected = (left, right) if answer == "a" else (right, left)
            agree += chosen == preferred
            kind = "safety" if prefs.events[state_index, chosen].sum() != prefs.events[state_index, rejected].sum() \
                else "progress"
            human.append((state_index, chosen, rejected, kind, "human"))
    finally:
        worker.close()
    if human:
        write_prefs(out_path, records_of(prefs), human, prefs.spec, json.loads(prefs.attrs["thresholds"]),
                    base_identity=prefs.attrs["base_identity"])
    return {"labelled": len(human), "agree_with_judge": int(agree), "skipped": skipped}
