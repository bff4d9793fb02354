"""A second camera view: the wrist camera beside the shoulder camera, on the same data, recipe and budget.

Two runs train with `vla-ros train` on one data set recorded with both cameras (`vla-ros data generate
--extra-camera wrist`); only the model's `extra_cameras` differs:

    shoulder          the shoulder camera alone (the shipped model's input; the wrist frames are ignored)
    shoulder_wrist    the shoulder and the wrist camera side by side, each its own grid of tokens

With `--from POLICY` both runs start from a trained policy instead (`vla-ros finetune --full`, its recipe: batch
32, learning rate 3e-4): `shoulder` keeps its one view, `shoulder_wrist` gains the wrist view (`--add-camera
wrist`). That asks whether the view adds precision to a policy that already stacks, at a budget a CPU affords;
the model's shape (word pieces included) is the base policy's.

Then, for each run:

- where its chunks lead, offline: on the data set's validation episodes, the greedy chunk of every step is decoded
  and its end point (the sum of its position deltas) compared with the expert's, in mm, by the expert's phase.
  Placing and releasing in stacking episodes are where the precision the wrist camera could give matters;
- the closed loop: `vla-ros eval` on unseen layouts (in-process, the graph's control loop and gate).

Writes OUT/results.json, OUT/results.md and OUT/views.png; every run's policy and evaluation stay in OUT/<run>/
and a re-run skips what is already there (training resumes from OUT/<run>/policy/checkpoint.pt).

    vla-ros data generate --episodes 500 --out data/sim_500w --seed 0 --workers 2 --noise 0.015 \\
        --interpolate-commands --extra-camera wrist
    python benchmarks/bench_views.py --data data/sim_500w --from models/policy/vla --steps 1000 --episodes 200 \\
        --out runs/views_finetune                  # docs/benchmarks.md, "A second view"
    python benchmarks/bench_views.py --data data/sim_500w --steps 2000 --episodes 200     # from scratch

At the shipped model's budget (4000 episodes, 10 000 steps; a two-view step costs about 1.6× a one-view step):

    vla-ros data generate --episodes 4000 --out data/sim_v6w --seed 0 --workers 2 --noise 0.015 \\
        --interpolate-commands --extra-camera wrist
    python benchmarks/bench_views.py --data data/sim_v6w --steps 10000 --episodes 400 --out runs/views_full
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_fusion import vla_ros  # noqa: E402  (the benchmarks folder is not a package)

RUNS = {"shoulder": [], "shoulder_wrist": ["wrist"]}
STACK = "stack"


def train(run: str, args: argparse.Namespace) -> Path:
    out = args.out / run / "policy"
    every = str(min(500, max(1, args.steps // 4)))
    if args.base is not None and not (out / "config.json").is_file():
        added = [flag for camera in RUNS[run] for flag in ("--add-camera", camera)]
        vla_ros("finetune", "--full", "--policy", str(args.base), "--data", str(args.data), "--out", str(out),
                "--steps", str(args.steps), "--eval-every", every, *added,
                "--generated-phrasings", str(args.generated), "--workers", "1", "--threads", str(args.threads))
    elif not (out / "config.json").is_file():
        model = {"text_tokens": args.text_tokens, "extra_cameras": RUNS[run]}
        vla_ros("train", "--data", str(args.data), "--tokenizer", str(args.tokenizer), "--out", str(out),
                "--steps", str(args.steps), "--eval-every", every, "--checkpoint-every", every,
                "--model", json.dumps(model), "--generated-phrasings", str(args.generated), "--workers", "1",
                "--threads", str(args.threads))
    return out


def chunk_end_errors(policy: Path, episodes: list, batch: int = 64) -> list[dict]:
    """Per validation step: the family, the expert's phase and the distance (mm) between where the policy's greedy
    chunk and the expert's chunk end up (sums of their position deltas)."""
    from tqdm import tqdm

    from vla_ros.core.preprocess import compose_views
    from vla_ros.policy.runners import PolicyRunner
    from vla_ros.tokenizers.chunking import chunks_from_episode

    runner = PolicyRunner(policy, "builtin-onnx")
    config = runner.config
    rows = []
    for episode in tqdm(episodes, desc=f"chunks {policy.parent.name}", unit="ep"):
        steps = len(episode.actions)
        frames = np.stack([compose_views(episode.images[t], {n: episode.cameras[n][t] for n in episode.cameras},
                                         config.extra_cameras, config.image_size) for t in range(steps)])
        expert = chunks_from_episode(episode.actions, config.chunk_size)[:, :, :3].sum(1)
        joints = np.asarray(episode.joint_pos[:steps], np.float32)
        for start in range(0, steps, batch):
            part = slice(start, min(steps, start + batch))
            tokens = runner.infer(frames[part], [episode.instruction] * len(frames[part]), joints[part],
                                  temperature=0).tokens
            ends = runner.tokenizer.decode(tokens)[:, :, :3].sum(1)
            for t, error in zip(range(part.start, part.stop), np.linalg.norm(ends - expert[part], axis=1)):
                rows.append({"family": episode.family, "phase": episode.phase_names[int(episode.phases[t])],
                             "error_mm": 1000.0 * float(error)})
    return rows


def summarize_errors(rows: list[dict]) -> dict:
    """Median and mean chunk-end error by phase, for stacking episodes and for all."""
    def stats(selected: list[float]) -> dict:
        return {"median_mm": float(np.median(selected)), "mean_mm": float(np.mean(selected)), "steps": len(selected)}

    out = {"all": stats([r["error_mm"] for r in rows])}
    for phase in sorted({r["phase"] for r in rows}):
        out[phase] = stats([r["error_mm"] for r in rows if r["phase"] == phase])
        stacking = [r["error_mm"] for r in rows if r["phase"] == phase and r["family"] == STACK]
        if stacking:
            out[f"stack/{phase}"] = stats(stacking)
    return out


def closed_loop(run: str, policy: Path, args: argparse.Namespace) -> dict:
    out = args.out / run / "eval_unseen"
    if not (out / "results.json").is_file():
        vla_ros("eval", "--policy", str(policy), "--split", "unseen", "--episodes", str(args.episodes), "--out",
                str(out), "--backend", "builtin-onnx", "--videos", str(args.videos))
    summary = json.loads((out / "results.json").read_text())
    return {"success": summary["mean_over_families"], "ci95": summary["mean_over_families_ci95"],
            "episodes": summary["episodes"],
            "per_family": {k: v["success_rate"] for k, v in summary["per_family"].items()}}


def write_plot(path: Path, results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = list(results["runs"])
    keys = ["all", "stack/move", "stack/place", "stack/release"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(runs)
    for k, run in enumerate(runs):
        errors = results["runs"][run]["chunk_end_error"]
        left.bar(np.arange(len(keys)) + k * width, [errors.get(key, {}).get("median_mm", np.nan) for key in keys],
                 width, label=run)
        loop = results["runs"][run].get("closed_loop")
        if loop:
            families = sorted(loop["per_family"])
            right.bar(np.arange(len(families)) + k * width, [100 * loop["per_family"][f] for f in families], width,
                      label=f"{run}: {100 * loop['success']:.1f} %")
            right.set_xticks(np.arange(len(families)) + 0.4 - width / 2, families)
    left.set_xticks(np.arange(len(keys)) + 0.4 - width / 2, keys)
    left.set_ylabel("median chunk-end error vs the expert (mm)")
    left.set_title("offline, validation episodes")
    right.set_ylabel("success (%)")
    right.set_title(f"closed loop, unseen layouts ({results['episodes']} episodes)")
    left.legend()
    right.legend()
    start = f"fine-tuned from {results['from']}" if results.get("from") else "from scratch"
    fig.suptitle(f"{results['data']}, {results['steps']} steps, {start}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(results: dict) -> str:
    lines = ["| run | chunk-end error, all steps (median mm) | stacking: move | stacking: place | stacking: release "
             "| closed loop unseen | pick / place / push / stack |", "|---|---|---|---|---|---|---|"]
    for run, row in results["runs"].items():
        errors = row["chunk_end_error"]
        cells = [f"{errors[key]['median_mm']:.1f}" if key in errors else "—"
                 for key in ("all", "stack/move", "stack/place", "stack/release")]
        loop = row.get("closed_loop")
        success = f"{100 * loop['success']:.1f} % ± {100 * loop['ci95']:.1f}" if loop else "—"
        families = " / ".join(f"{100 * loop['per_family'][f]:.0f}" for f in sorted(loop["per_family"])) if loop \
            else "—"
        lines.append(f"| {run} | " + " | ".join(cells) + f" | {success} | {families} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True,
                        help="a data set recorded with --extra-camera wrist (both runs train on it)")
    parser.add_argument("--tokenizer", type=Path, default=HERE.parent / "models" / "tokenizers" / "vqvae")
    parser.add_argument("--out", type=Path, default=Path("runs/views"))
    parser.add_argument("--steps", type=int, default=2000, help="training steps of each run (default 2000)")
    parser.add_argument("--runs", nargs="+", choices=list(RUNS), default=list(RUNS))
    parser.add_argument("--episodes", type=int, default=200,
                        help="closed-loop episodes on unseen layouts per run (default 200; 0: offline only)")
    parser.add_argument("--videos", type=int, default=0, help="videos per closed-loop evaluation (default 0)")
    parser.add_argument("--valid-episodes", type=int, default=40,
                        help="validation episodes of the offline chunk-end measure (default 40)")
    parser.add_argument("--from", dest="base", type=Path, default=None, metavar="POLICY",
                        help="fine-tune this trained policy (every weight) instead of training from scratch")
    parser.add_argument("--text-tokens", type=int, default=24, help="word pieces (from scratch only)")
    parser.add_argument("--generated", type=int, default=32, help="generated requests per task in training")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from vla_ros.policy.training import load_split

    _, valid = load_split(args.data)
    missing = [e.name for e in valid if "wrist" not in e.cameras]
    if missing:
        raise SystemExit(f"{args.data}: {missing[0]} has no wrist view; record the data set with "
                         f"'vla-ros data generate --extra-camera wrist'")
    valid = valid[:args.valid_episodes]
    results = {"data": str(args.data), "steps": args.steps, "episodes": args.episodes,
               "from": str(args.base) if args.base else None, "runs": {}}
    for run in args.runs:
        policy = train(run, args)
        report = json.loads((policy / "training_report.json").read_text())
        row = {"extra_cameras": RUNS[run], "training_minutes": round(report["train_seconds"] / 60.0, 1),
               "selected_step": report["selected_step"], "selected_eval": report["selected_eval"],
               "parameters": report.get("parameters", report.get("trainable_parameters")),
               "chunk_end_error": summarize_errors(chunk_end_errors(policy, valid))}
        if args.episodes:
            row["closed_loop"] = closed_loop(run, policy, args)
        results["runs"][run] = row
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "results.md").write_text(markdown(results))
    write_plot(args.out / "views.png", results)
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
