"""The design's three fusion architectures, and request-generator training, on the same data and budget.

Each run trains a policy with `vla-ros train` (same data set, steps, batch, seed and recipe; only the model's
`fusion` and the number of generated training requests differ), then evaluates it in-process through the graph's
control loop and gate (`--rows`: unseen layouts with training phrasings, the held-out paraphrases, the same layouts
as the paraphrase split phrased by the held-out request generator with success by form, and the instruction
blanked), probes how its first frame reads each kind of phrasing (`bench_reading.py`), and times one chunk with
onnxruntime on one thread.

Runs (`--runs`, default all):

    early             early fusion (the shipped architecture), generated requests in training
    early_templates   early fusion, templates only (the shipped recipe's phrasings): the generator's effect
    middle            middle fusion (frozen MiniLM layers with a trained bridge), generated requests
    late              late fusion (separate encoders fused before the action head), generated requests

Writes OUT/results.json, OUT/results.md and OUT/fusion.png; every run's policy and evaluations stay in
OUT/<run>/ and a re-run skips what is already there. Runs in OUT/results.json that an invocation does not name
are kept in its tables and plot (same data, rows and episodes), so runs of different steps can share OUT.

    vla-ros data generate --episodes 1000 --out data/sim_1k --seed 0 --workers 2 --noise 0.015
    python benchmarks/bench_fusion.py --data data/sim_1k --steps 2000 --episodes 100

At the shipped model's budget (4000 episodes recorded with the graph's command following, 10 000 steps, about
70-85 min of training per run on the 2-core CPU for early and late fusion):

    vla-ros data generate --episodes 4000 --out data/sim_v6 --seed 0 --workers 2 --noise 0.015 --interpolate-commands
    python benchmarks/bench_fusion.py --data data/sim_v6 --steps 10000 --episodes 400 --blank-episodes 100 \\
        --out runs/fusion_full --rows unseen paraphrase requests blank --runs early late

A middle-fusion step costs about twice an early one on the 2-core CPU, so within the same 90 minutes of training
it takes 4800 steps (10 000 would take about 2.5 h):

    python benchmarks/bench_fusion.py --data data/sim_v6 --steps 4800 --episodes 400 --blank-episodes 100 \\
        --out runs/fusion_full --rows unseen paraphrase requests blank --runs middle
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RUNS = {
    "early": {"fusion": "early", "generated": True},
    "early_templates": {"fusion": "early", "generated": False},
    "middle": {"fusion": "middle", "generated": True},
    "late": {"fusion": "late", "generated": True},
}
ROWS = {"unseen": ("unseen", False), "paraphrase": ("paraphrase", False), "requests": ("requests", False),
        "blank": ("unseen", True)}


def vla_ros(*arguments: str) -> None:
    """Run a `vla-ros` command of this checkout; its progress bars go to the terminal."""
    subprocess.run([sys.executable, "-m", "vla_ros.cli", *arguments], check=True, cwd=REPO,
                   env={**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")})


def train(run: str, spec: dict, args: argparse.Namespace) -> Path:
    out = args.out / run / "policy"
    if not (out / "config.json").is_file():
        model = {"fusion": spec["fusion"], "text_tokens": args.text_tokens}
        every = str(min(500, max(1, args.steps // 4)))  # the trainer's default at the shipped budget
        vla_ros("train", "--data", str(args.data), "--tokenizer", str(args.tokenizer), "--out", str(out),
                "--steps", str(args.steps), "--eval-every", every, "--checkpoint-every", every,
                "--model", json.dumps(model),
                "--generated-phrasings", str(args.generated if spec["generated"] else 0), "--workers", "1",
                "--threads", str(args.threads))
    return out


def evaluate(run: str, policy: Path, split: str, blank: bool, args: argparse.Namespace) -> dict:
    episodes = args.blank_episodes if blank else args.episodes
    out = args.out / run / f"eval_{split}{'_blank' if blank else ''}"
    if not (out / "results.json").is_file():
        vla_ros("eval", "--policy", str(policy), "--split", split, "--episodes", str(episodes), "--out", str(out),
                "--backend", "builtin-onnx", "--videos", "0", *(["--blank-instruction"] if blank else []))
    summary = json.loads((out / "results.json").read_text())
    summary.pop("episodes_detail", None)
    summary["label"] = f"{run}{' (blank)' if blank else ''}"
    return summary


def reading(run: str, policy: Path, args: argparse.Namespace) -> dict:
    """First-frame reading of every phrasing group and form (`bench_reading.py`), kept in OUT/<run>/reading.json."""
    from benchmarks.bench_reading import read_policy

    path = args.out / run / "reading.json"
    if not path.is_file():
        result = read_policy(policy, args.reading_scenes)
        result.pop("rows")
        path.write_text(json.dumps(result, indent=2) + "\n")
    return json.loads(path.read_text())


def chunk_latency(policy: Path, repeats: int) -> dict:
    """p50 / p95 ms of one 8-token chunk with onnxruntime on one thread (instruction states cached)."""
    from benchmarks.bench_policy import time_calls
    from vla_ros.policy.runners import PolicyRunner

    runner = PolicyRunner(policy, "builtin-onnx", threads=1)
    rng = np.random.default_rng(0)
    size = runner.config.image_size
    image = rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8)
    joints = rng.normal(0, 0.3, (1, 6)).astype(np.float32)
    times = time_calls(lambda: runner.infer(image, ["put the red block on the plate"], joints, temperature=0),
                       repeats)
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95))}


def write_plot(path: Path, results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = list(results["runs"])
    labels = [f"closed loop: {row}" for row in results["rows"]] + ["first frame reads held-out requests"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [3, 1]})
    width = 0.8 / len(labels)
    for column, label in enumerate(labels):
        if column < len(results["rows"]):
            rates = [results["runs"][r]["rows"][column]["mean_over_families"] for r in runs]
            errors = [results["runs"][r]["rows"][column]["mean_over_families_ci95"] for r in runs]
        else:
            rates = [results["runs"][r]["reading"]["by_group"]["held-out request"]["both_right"] for r in runs]
            errors = None
        offset = (column - (len(labels) - 1) / 2) * width
        axes[0].bar(np.arange(len(runs)) + offset, rates, width, yerr=errors, capsize=3, label=label)
    axes[0].set_xticks(np.arange(len(runs)), [f"{r}\n{results['runs'][r]['steps']} steps" for r in runs])
    axes[0].set_ylim(0, 1)
    axes[0].set_ylabel("success (± 95 %) / read right")
    axes[0].set_title(f"{Path(results['data']).name}; in-process closed loop")
    axes[0].legend(fontsize=8)
    axes[1].bar(runs, [results["runs"][r]["latency"]["p50_ms"] for r in runs], color="tab:gray")
    axes[1].set_ylabel("ms per 8-token chunk, p50 (onnxruntime, 1 thread)")
    axes[1].tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def markdown(results: dict) -> str:
    from vla_ros.policy.evaluation import form_table

    groups = ("training template", "held-out request", "blank")
    lines = ["| run | fusion | generated requests | " + " | ".join(f"closed loop: {r}" for r in results["rows"])
             + " | " + " | ".join(f"first frame reads: {g}" for g in groups)
             + " | chunk p50 / p95 ms | steps | training min |", "|---|---|---|" + "---|" * (len(results["rows"]) + 6)]
    for run, row in results["runs"].items():
        cells = [f"{s['mean_over_families']:.1%} ± {s['mean_over_families_ci95']:.1%}" for s in row["rows"]]
        cells += [f"{row['reading']['by_group'][g]['both_right']:.0%}" for g in groups]
        lines.append(f"| {run} | {row['fusion']} | {row['generated']} | " + " | ".join(cells)
                     + f" | {row['latency']['p50_ms']:.1f} / {row['latency']['p95_ms']:.1f} | "
                     f"{row['steps']} | {row['train_minutes']:.1f} |")
    text = "\n".join(lines) + "\n"
    if "requests" in results["rows"]:
        index = results["rows"].index("requests")
        text += "\nSuccess on held-out requests by form:\n\n" + form_table(
            [dict(row["rows"][index], label=run) for run, row in results["runs"].items()])
    return text


def kept_runs(path: Path, args: argparse.Namespace) -> dict:
    """The runs of an earlier results.json in OUT that this invocation does not redo, when they were trained on the
    same data and evaluated on the same rows and episodes (runs may differ in steps: middle fusion's budget)."""
    if not path.is_file():
        return {}
    earlier = json.loads(path.read_text())
    if (earlier.get("data"), earlier.get("rows"), earlier.get("episodes")) != (str(args.data), args.rows,
                                                                                 args.episodes):
        return {}
    return {run: dict(row, steps=row.get("steps", earlier.get("steps"))) for run, row in earlier["runs"].items()
            if run not in args.runs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO / "data" / "sim_1k", help="training data set")
    parser.add_argument("--tokenizer", type=Path, default=REPO / "models" / "tokenizers" / "vqvae")
    parser.add_argument("--runs", nargs="+", choices=list(RUNS), default=list(RUNS), help="which runs")
    parser.add_argument("--steps", type=int, default=2000, help="training steps of every run (default 2000)")
    parser.add_argument("--generated", type=int, default=32,
                        help="generated training requests per task in the runs that use them (default 32)")
    parser.add_argument("--text-tokens", type=int, default=24, help="word pieces every run reads (default 24)")
    parser.add_argument("--episodes", type=int, default=100, help="episodes per success row (default 100)")
    parser.add_argument("--blank-episodes", type=int, default=40, help="episodes of the blanked row (default 40)")
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS),
                        help="closed-loop rows (default all: unseen, paraphrase, requests, blank)")
    parser.add_argument("--reading-scenes", type=int, default=200,
                        help="layouts of the first-frame reading probe (default 200)")
    parser.add_argument("--repeats", type=int, default=200, help="timed chunks per run (default 200)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each training (default 2)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "fusion")
    args = parser.parse_args()
    if not (args.data / "dataset.hdf5").is_file():
        parser.error(f"--data {args.data} holds no dataset.hdf5; generate it with the command in --help")
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"data": str(args.data), "generated_per_task": args.generated,
               "text_tokens": args.text_tokens, "episodes": args.episodes, "machine": "2-core x86-64 CPU, no GPU",
               "rows": args.rows, "runs": kept_runs(args.out / "results.json", args)}
    for run in args.runs:
        spec = RUNS[run]
        policy = train(run, spec, args)
        report = json.loads((policy / "training_report.json").read_text())
        rows = [evaluate(run, policy, *ROWS[row], args) for row in args.rows]
        results["runs"][run] = {"fusion": spec["fusion"], "generated": args.generated if spec["generated"] else 0,
                                "steps": args.steps,
                                "parameters": report["parameters"], "train_minutes": report["train_seconds"] / 60,
                                "selected_step": report.get("selected_step"), "rows": rows,
                                "reading": reading(run, policy, args), "latency": chunk_latency(policy, args.repeats)}
        (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    (args.out / "results.md").write_text(table)
    write_plot(args.out / "fusion.png", results)
    print(table)
    print(f"wrote {args.out / 'results.json'}, results.md and fusion.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
