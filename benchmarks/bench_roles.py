"""Which block does the policy take for the one to move, per stacking phrasing? A probe of role binding.

"Stack the red block on the green block" names two blocks; the policy has to move the first and leave the
second. For unseen stacking layouts (the evaluation's `unseen` seeds, family stack) the first camera frame
goes through the policy with every stacking phrasing: the recorded training templates, the extra training
phrasings (`EXTRA_TRAIN_TEMPLATES`) and the held-out paraphrases. The grounding head then says where the
policy puts the block to move and the lower block (`PolicyRunner.grounded_places`); the block nearest each
point is the one it took. A policy that binds the roles by word order ("the first colour moves") gets
phrasings that name the lower block first backwards. No physics is stepped: ~0.03 s per phrasing and scene.
For a policy with role-aware FiLM (config `film_queries` > 0) it also lists, per phrasing, the word pieces
each learned instruction pool weighs most ("pools.md").

    MUJOCO_GL=egl python benchmarks/bench_roles.py --policy models/policy/vla [--scenes 60]

Writes runs/bench_roles/<policy>/results.json, results.md and roles.png (and pools.md).
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

from vla_ros.policy.evaluation import SEED_BASE  # noqa: E402
from vla_ros.sim.rollout import policy_frame  # noqa: E402
from vla_ros.sim.tasks import EXTRA_TRAIN_TEMPLATES, HELDOUT_TEMPLATES, TRAIN_TEMPLATES  # noqa: E402

GROUPS = (("training", TRAIN_TEMPLATES), ("extra training", EXTRA_TRAIN_TEMPLATES), ("held-out", HELDOUT_TEMPLATES))


def nearest(point: np.ndarray, blocks: dict[str, np.ndarray]) -> str:
    return min(blocks, key=lambda colour: float(np.linalg.norm(blocks[colour] - point)))


def probe(runner, workcell, scenes: int) -> list[dict]:
    """One row per (scene, phrasing): the block the policy would move and the one it would stack on."""
    phrasings = [(group, template) for group, templates in GROUPS for template in templates["stack"]]
    rows = []
    for index in tqdm(range(scenes), desc="scenes"):
        seed = SEED_BASE["unseen"] + index
        observation = workcell.reset(seed, family="stack")
        task, layout = workcell.task, workcell.layout
        blocks = {c: np.asarray(layout.position(c), float) for c in layout.block_colours()}
        texts = [template.format(**task.slots()) for _, template in phrasings]
        count = len(texts)
        frame = policy_frame(observation, runner.config)
        places = runner.grounded_places(np.repeat(frame[None], count, 0), texts,
                                        np.repeat(observation.joint_pos[None], count, 0))
        for (group, template), text, place in zip(phrasings, texts, places):
            moved, below = nearest(place[:2], blocks), nearest(place[2:], blocks)
            rows.append({"seed": seed, "group": group, "template": template, "instruction": text,
                         "blocks": len(blocks), "target": task.target, "reference": task.reference,
                         "moves": moved, "stacks_on": below,
                         "roles_right": moved == task.target and below == task.reference,
                         "roles_swapped": moved == task.reference and below == task.target})
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    out = []
    for group, templates in GROUPS:
        for template in templates["stack"]:
            mine = [r for r in rows if r["template"] == template]
            out.append({"group": group, "template": template, "scenes": len(mine),
                        "moves_named_block": float(np.mean([r["moves"] == r["target"] for r in mine])),
                        "roles_right": float(np.mean([r["roles_right"] for r in mine])),
                        "roles_swapped": float(np.mean([r["roles_swapped"] for r in mine])),
                        "chance_roles_right": float(np.mean([1 / (r["blocks"] * (r["blocks"] - 1)) for r in mine]))})
    return out


def pool_readings(runner, slots: dict) -> list[dict]:
    """Per stacking phrasing (rendered with `slots`): each instruction pool's three heaviest word pieces."""
    import torch

    queries = runner.policy.instruction_queries
    out = []
    for group, templates in GROUPS:
        for template in templates["stack"]:
            text = template.format(**slots)
            states, mask = runner.encode_instructions([text])
            with torch.no_grad():
                weights = queries.weights(torch.from_numpy(states), torch.from_numpy(mask).float())[0].numpy()
            pieces = runner.text.tokenizer.convert_ids_to_tokens(
                runner.text.tokenizer(text, max_length=runner.config.text_tokens, truncation=True)["input_ids"])
            heaviest = [[(pieces[i], round(float(w[i]), 2)) for i in np.argsort(-w)[:3] if i < len(pieces)]
                        for w in weights]
            out.append({"group": group, "instruction": text, "pools": heaviest})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", type=Path, required=True, help="policy directory (trained with the grounding head)")
    parser.add_argument("--scenes", type=int, default=60, help="unseen stacking layouts (default 60)")
    parser.add_argument("--out", type=Path, default=None, help="default runs/bench_roles/<policy name>")
    args = parser.parse_args()

    from vla_ros.policy.runners import PolicyRunner
    from vla_ros.sim.rollout import policy_workcell

    runner = PolicyRunner(args.policy, "builtin-torch", threads=1)
    if runner.policy.grounding_head is None:
        raise SystemExit(f"bench_roles: {args.policy} was trained without the grounding head; nothing to probe")
    with policy_workcell(runner.config) as workcell:
        summary = summarize(rows := probe(runner, workcell, args.scenes))
    out = args.out or REPO / "runs" / "bench_roles" / args.policy.name
    out.mkdir(parents=True, exist_ok=True)
    pools = pool_readings(runner, {"target": "red", "reference": "green"}) \
        if runner.policy.instruction_queries is not None else []
    (out / "results.json").write_text(json.dumps({"policy": str(args.policy), "summary": summary, "rows": rows,
                                                  "pools": pools}, indent=2) + "\n")
    if pools:
        table = ["| instruction | group | " + " | ".join(f"pool {i + 1}" for i in range(len(pools[0]["pools"])))
                 + " |", "|---|---|" + "---|" * len(pools[0]["pools"])]
        for p in pools:
            cells = [", ".join(f"{piece} {weight:.2f}" for piece, weight in pool) for pool in p["pools"]]
            table.append(f"| {p['instruction']} | {p['group']} | " + " | ".join(cells) + " |")
        (out / "pools.md").write_text("\n".join(table) + "\n")
        print("\n".join(table))
    lines = ["| phrasing | group | moves the named block | both roles right | roles swapped | chance (both) |",
             "|---|---|---|---|---|---|"]
    for s in summary:
        lines.append(f"| {s['template']} | {s['group']} | {s['moves_named_block']:.0%} | {s['roles_right']:.0%} | "
                     f"{s['roles_swapped']:.0%} | {s['chance_roles_right']:.0%} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    write_plot(out / "roles.png", summary, args.policy.name)
    print("\n".join(lines))
    print(f"wrote {out}/results.json, results.md and roles.png")
    return 0


def write_plot(path: Path, summary: list[dict], name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"training": "tab:blue", "extra training": "tab:green", "held-out": "tab:orange"}
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(summary) + 1.2))
    labels = [s["template"].replace("{target}", "X").replace("{reference}", "Y") for s in summary]
    y = np.arange(len(summary))[::-1]
    ax.barh(y, [s["roles_right"] * 100 for s in summary], color=[colours[s["group"]] for s in summary])
    ax.barh(y, [-s["roles_swapped"] * 100 for s in summary], color="tab:red", alpha=0.6)
    ax.set_yticks(y, labels, fontsize=8)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("% of scenes: both roles right (bar to the right), roles swapped (red, to the left)")
    ax.set_title(f"{name}: stacking roles read from each phrasing (X moves onto Y)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
    ax.legend(handles, colours.keys(), loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
