"""Does the policy go to the block the instruction names? The first descent, measured in the workcell.

For pick, place and stack episodes on unseen layouts (the evaluation's `unseen` seeds), the policy runs
closed loop (3 of 8 steps per chunk, greedy) until the end-effector target first goes below 5 cm, at most
`--max-chunks` chunks. At that moment the block nearest to it (table x/y) is the block the policy chose.
Reports how often that is the named block, the distance to the named block, and the same with the
instruction blanked (which should fall to about 1 / the number of blocks). Push is left out: its approach
ends beside the block, not above it.

    MUJOCO_GL=egl python benchmarks/bench_grounding.py --policy models/policy/vla [--episodes 48]

Writes runs/bench_grounding/<policy>/results.json, results.md and distances.png.
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

from vla_ros.core.executor import ExecutorSettings  # noqa: E402
from vla_ros.policy.evaluation import SEED_BASE  # noqa: E402
from vla_ros.sim.rollout import policy_frame, policy_workcell  # noqa: E402
from vla_ros.sim.tasks import COLOURS  # noqa: E402

FAMILIES = ("pick", "place", "stack")
DESCENT_Z = 0.05  # metres: the EE target below this is a committed grasp attempt


def first_choice(workcell, runner, seed: int, family: str, blank: bool, max_chunks: int) -> dict:
    """Run until the first descent; which block is nearest then, and how far the named one is."""
    observation = workcell.reset(seed, family=family)
    task = workcell.task
    text = "" if blank else task.instruction
    for _ in range(max_chunks):
        generated = runner.infer(policy_frame(observation, runner.config)[None], [text], observation.joint_pos[None], temperature=0.0)
        actions = runner.tokenizer.decode(generated.tokens)[0][:ExecutorSettings().execute_steps]
        for index, action in enumerate(actions):
            observation = workcell.step(action, render=index == len(actions) - 1)
            if workcell.ee_target.pos[2] < DESCENT_Z:
                point = workcell.ee_target.pos[:2].copy()
                blocks = {c: o.pos[:2] for c, o in workcell.world_state().objects.items() if c in COLOURS}
                distance = {c: float(np.linalg.norm(p - point)) for c, p in blocks.items()}
                nearest = min(distance, key=distance.get)
                return {"seed": seed, "family": family, "target": task.target, "blocks": len(blocks),
                        "descended": True, "nearest": nearest, "chose_target": nearest == task.target,
                        "target_distance_m": distance[task.target], "nearest_distance_m": distance[nearest]}
        if observation.image is None:
            observation = workcell.observe()
    return {"seed": seed, "family": family, "target": task.target, "descended": False, "chose_target": False}


def summarize(rows: list[dict]) -> dict:
    descended = [r for r in rows if r["descended"]]
    return {
        "episodes": len(rows), "descended": len(descended),
        "chose_named_block": sum(r["chose_target"] for r in rows) / max(1, len(rows)),
        "chance": float(np.mean([1.0 / r["blocks"] for r in descended])) if descended else float("nan"),
        "median_distance_to_named_block_mm":
            float(np.median([r["target_distance_m"] for r in descended]) * 1e3) if descended else float("nan"),
        "median_distance_to_nearest_block_mm":
            float(np.median([r["nearest_distance_m"] for r in descended]) * 1e3) if descended else float("nan"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", type=Path, required=True, help="policy directory")
    parser.add_argument("--episodes", type=int, default=48, help="episodes per condition (pick/place/stack rotate)")
    parser.add_argument("--max-chunks", type=int, default=10, help="chunks to wait for the first descent")
    parser.add_argument("--out", type=Path, default=None, help="default runs/bench_grounding/<policy name>")
    args = parser.parse_args()

    from vla_ros.policy.runners import PolicyRunner

    out = args.out or REPO / "runs" / "bench_grounding" / args.policy.name
    out.mkdir(parents=True, exist_ok=True)
    runner = PolicyRunner(args.policy, "builtin-torch", threads=1)
    results = {}
    with policy_workcell(runner.config) as workcell:
        for blank in (False, True):
            label = "instruction blanked" if blank else "instruction"
            rows = [first_choice(workcell, runner, SEED_BASE["unseen"] + i, FAMILIES[i % 3], blank, args.max_chunks)
                    for i in tqdm(range(args.episodes), desc=f"grounding, {label}")]
            results[label] = {"summary": summarize(rows), "episodes": rows}
    (out / "results.json").write_text(json.dumps({"policy": str(args.policy), **results}, indent=2) + "\n")
    lines = ["| condition | first descent nearest the named block | chance | median distance to named block (mm) "
             "| median distance to nearest block (mm) | descended |", "|---|---|---|---|---|---|"]
    for label, result in results.items():
        s = result["summary"]
        lines.append(f"| {label} | {s['chose_named_block']:.0%} | {s['chance']:.0%} | "
                     f"{s['median_distance_to_named_block_mm']:.0f} | {s['median_distance_to_nearest_block_mm']:.0f} "
                     f"| {s['descended']}/{s['episodes']} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    write_plot(out / "distances.png", results)
    print("\n".join(lines))
    print(f"wrote {out}/results.json, results.md and distances.png")
    return 0


def write_plot(path: Path, results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for label, result in results.items():
        distances = [r["target_distance_m"] * 100 for r in result["episodes"] if r["descended"]]
        ax.hist(distances, bins=np.arange(0, 40, 1.5), alpha=0.6, label=label)
    ax.set_xlabel("distance from the first descent to the named block (cm)")
    ax.set_ylabel("episodes")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
