"""Does the policy read the words? Its grounding head on the first frame, per phrasing and request form.

For layouts of every family (the evaluation's `requests` seeds, which are the `paraphrase` split's layouts)
the first camera frame goes through the policy with several phrasings of the same task: a training template,
a held-out template, a request of the training lexicon, one held-out request of every form
(`sim.requests.HELDOUT_LEXICON`) and the blank instruction. The grounding head (`PolicyRunner.grounded_places`)
says where the policy puts the block to act on and the reference; the nearest block (and, for place, the
nearest receptacle) is what it read. No physics is stepped (~0.03 s a phrasing), so the probe separates reading
the request from executing it: a policy trained briefly reads before it can stack.

    MUJOCO_GL=egl python benchmarks/bench_reading.py --policy models/policy/vla [--scenes 100]

Writes runs/bench_reading/<policy>/results.json, results.md and reading.png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GROUPS = ("training template", "held-out template", "training request", "held-out request", "blank")


def phrasings(task, rng: np.random.Generator) -> list[tuple[str, str, str]]:
    """(group, form, text) of every phrasing a scene is probed with."""
    from vla_ros.sim.requests import FORMS, HELDOUT_LEXICON, TRAIN_LEXICON, generate_request
    from vla_ros.sim.tasks import phrase_task

    out = [("training template", "template", phrase_task(task, rng, "train").instruction),
           ("held-out template", "template", phrase_task(task, rng, "heldout").instruction)]
    request = generate_request(task, rng, TRAIN_LEXICON)
    out.append(("training request", request.form, request.text))
    out += [("held-out request", form, generate_request(task, rng, HELDOUT_LEXICON, form).text) for form in FORMS]
    return out + [("blank", "blank", "")]


def nearest(point: np.ndarray, places: dict[str, np.ndarray]) -> str:
    return min(places, key=lambda key: float(np.linalg.norm(places[key] - point)))


def probe(runner, workcell, scenes: int, progress: bool = True) -> list[dict]:
    """One row per (scene, phrasing): the object the policy reads as the target and as the reference."""
    from vla_ros.policy.evaluation import SEED_BASE
    from vla_ros.sim.rollout import policy_frame
    from vla_ros.sim.tasks import FAMILIES, RECEPTACLES

    rows = []
    for index in tqdm(range(scenes), desc="scenes", disable=not progress):
        seed, family = SEED_BASE["requests"] + index, FAMILIES[index % len(FAMILIES)]
        observation = workcell.reset(seed, family=family)
        task, layout = workcell.task, workcell.layout
        blocks = {c: np.asarray(layout.position(c), float) for c in layout.block_colours()}
        receptacles = {r: np.asarray(layout.position(r), float) for r in RECEPTACLES if layout.has(r)}
        probes = phrasings(task, np.random.default_rng(seed))
        count = len(probes)
        frame = policy_frame(observation, runner.config)
        places = runner.grounded_places(np.repeat(frame[None], count, 0), [p[2] for p in probes],
                                        np.repeat(observation.joint_pos[None], count, 0))
        references = receptacles if family == "place" else blocks if family == "stack" else {}
        for (group, form, text), place in zip(probes, places):
            target_right = nearest(place[:2], blocks) == task.target
            reference_right = nearest(place[2:], references) == task.reference if references else None
            rows.append({"seed": seed, "family": family, "group": group, "form": form, "instruction": text,
                         "target_right": bool(target_right), "reference_right": reference_right,
                         "both_right": bool(target_right and reference_right is not False),
                         "chance_both": 1.0 / len(blocks) / (len(references) - (family == "stack")
                                                             if references else 1.0)})
    return rows


def rates(rows: list[dict]) -> dict:
    references = [r["reference_right"] for r in rows if r["reference_right"] is not None]
    return {"probes": len(rows), "target_right": float(np.mean([r["target_right"] for r in rows])),
            "reference_right": float(np.mean(references)) if references else None,
            "both_right": float(np.mean([r["both_right"] for r in rows])),
            "chance_both": float(np.mean([r["chance_both"] for r in rows]))}


def summarize(rows: list[dict]) -> dict:
    from vla_ros.sim.requests import FORMS

    heldout = [r for r in rows if r["group"] == "held-out request"]
    return {"by_group": {g: rates([r for r in rows if r["group"] == g]) for g in GROUPS},
            "by_form": {f: rates([r for r in heldout if r["form"] == f]) for f in FORMS},
            "held_out_request_by_family": {f: rates([r for r in heldout if r["family"] == f])
                                           for f in sorted({r["family"] for r in heldout})}}


def read_policy(policy: Path, scenes: int, progress: bool = True) -> dict:
    """The probe's summary for one policy directory (torch backend, one thread)."""
    import torch

    from vla_ros.policy.runners import PolicyRunner
    from vla_ros.sim.rollout import policy_workcell

    torch.set_num_threads(1)
    runner = PolicyRunner(policy, "builtin-torch", threads=1)
    workcell = policy_workcell(runner.config)
    try:
        rows = probe(runner, workcell, scenes, progress)
    finally:
        workcell.close()
    return {"policy": str(policy), "scenes": scenes, **summarize(rows), "rows": rows}


def cell(row: dict, key: str) -> str:
    return "–" if row[key] is None else f"{row[key]:.0%}"


def group_table(results: dict[str, dict]) -> str:
    """Markdown: per policy and phrasing group, target / reference / both read right."""
    lines = ["| policy | " + " | ".join(GROUPS) + " |", "|---|" + "---|" * len(GROUPS)]
    for name, result in results.items():
        cells = [f"{cell(result['by_group'][g], 'both_right')} ({cell(result['by_group'][g], 'target_right')} / "
                 f"{cell(result['by_group'][g], 'reference_right')})" for g in GROUPS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def form_table(results: dict[str, dict]) -> str:
    """Markdown: per policy, held-out requests read right (target and reference) by form."""
    forms = list(next(iter(results.values()))["by_form"])
    lines = ["| policy | " + " | ".join(forms) + " |", "|---|" + "---|" * len(forms)]
    for name, result in results.items():
        lines.append(f"| {name} | " + " | ".join(cell(result["by_form"][f], "both_right") for f in forms) + " |")
    return "\n".join(lines) + "\n"


def write_plot(path: Path, results: dict[str, dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.8 / len(GROUPS)
    for column, group in enumerate(GROUPS):
        ax.bar(np.arange(len(names)) + (column - len(GROUPS) / 2 + 0.5) * width,
               [results[n]["by_group"][group]["both_right"] for n in names], width, label=group)
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_ylim(0, 1)
    ax.set_ylabel("first frame: target (and reference) read right")
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", type=Path, nargs="+", required=True,
                        help="policy directories (trained with the grounding head)")
    parser.add_argument("--scenes", type=int, default=100, help="layouts, families in turn (default 100)")
    parser.add_argument("--out", type=Path, default=None,
                        help="default runs/bench_reading/<policy name> (one policy) or runs/bench_reading/compare")
    args = parser.parse_args()
    out = args.out or REPO / "runs" / "bench_reading" / (args.policy[0].name if len(args.policy) == 1 else "compare")
    out.mkdir(parents=True, exist_ok=True)
    results = {str(p): read_policy(p, args.scenes) for p in args.policy}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    table = ("Both roles read right (target / reference), first frame:\n\n" + group_table(results)
             + "\nHeld-out requests, both read right, by form:\n\n" + form_table(results))
    (out / "results.md").write_text(table)
    write_plot(out / "reading.png", results)
    print(table)
    print(f"wrote {out / 'results.json'}, results.md and reading.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
