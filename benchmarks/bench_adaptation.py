"""Adapting the shipped policy to a changed set-up: LoRA against full fine-tuning and training from scratch.

For each set-up shift of the simulated workcell (`vla_ros.sim.scenes`: the camera moved and turned, another
appearance):

1. demonstrations in the shifted cell: `data generate --scene SHIFT --noise 0.015` (the shipped data's recipe),
   seeds from 500 000 (never used for the shipped data or for evaluation);
2. the shipped policy's success on unseen layouts, unshifted and shifted (the gap to close);
3. `vla-ros finetune` (LoRA on the decoder's attention, the base frozen) on the first N demonstrations for each N
   of --demos, full fine-tuning of every weight and training from scratch on --compare-demos, each evaluated on
   the shifted cell's unseen layouts; the LoRA adapter of --forgetting-demos also on the unshifted cell.

Every run is evaluated in-process through the `widowx` graph's control loop and safety gate (`vla-ros eval`'s
episodes: seeds from 1 000 000, families in turn). A finished run is kept (its report and results files) and a
re-run only does what is missing. Writes OUT/results.json, OUT/results.md and OUT/<shift>.png. Usage:

    MUJOCO_GL=egl python benchmarks/bench_adaptation.py [--shifts camera_shift appearance]
        [--demos 25 50 100 200 500] [--compare-demos 200] [--episodes 100] [--steps 1500] [--out runs/adapt]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASE = REPO / "models" / "policy" / "vla"
DATA_SEED = 500_000
NOISE = 0.015
SCRATCH_MODEL: dict = {}  # the shipped architecture


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shifts", nargs="+", default=["camera_shift", "appearance"],
                        choices=["camera_shift", "appearance"], help="set-up shifts to adapt to")
    parser.add_argument("--demos", nargs="+", type=int, default=[25, 50, 100, 200, 500],
                        help="demonstration counts for LoRA")
    parser.add_argument("--compare-demos", nargs="+", type=int, default=[200],
                        help="demonstration counts for full fine-tuning and training from scratch")
    parser.add_argument("--compare-methods", nargs="*", default=["full", "scratch"], choices=["full", "scratch"],
                        help="the comparisons to run")
    parser.add_argument("--forgetting-demos", type=int, default=200,
                        help="the LoRA adapter also evaluated on the unshifted cell")
    parser.add_argument("--episodes", type=int, default=100, help="evaluation episodes per run (families in turn)")
    parser.add_argument("--steps", type=int, default=1500, help="optimizer steps of every fine-tuning run")
    parser.add_argument("--scratch-steps", type=int, default=3000, help="optimizer steps of training from scratch")
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank")
    parser.add_argument("--targets", default="attention", help="LoRA targets (attention, attention+mlp, all)")
    parser.add_argument("--generate", type=int, default=600, help="demonstrations generated per shift")
    parser.add_argument("--workers", type=int, default=2, help="data generation workers")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "adapt", help="output directory")
    parser.add_argument("--cached-only", action="store_true",
                        help="train and evaluate nothing: tabulate and plot every run of the shifts already in OUT "
                             "(OUT/runs/SHIFT_METHOD_DEMOS with OUT/eval/SHIFT_METHOD_DEMOS[_on_default])")
    return parser.parse_args(argv)


def dataset(out: Path, shift: str, count: int, workers: int) -> Path:
    from vla_ros.data.generate import generate_dataset

    folder = out / f"data_{shift}"
    if not (folder / "generation.json").is_file():
        generate_dataset(folder, count, seed=DATA_SEED, workers=workers, noise=NOISE, scene=shift)
    return folder


def evaluation(out: Path, name: str, episodes: int, scene: str, policy: Path, adapter: Path | None = None) -> dict:
    """`vla-ros eval --split unseen --scene SCENE` of policy (+ adapter), kept in OUT/eval/NAME."""
    from vla_ros.graphs.pipeline import pipeline_settings
    from vla_ros.policy.evaluation import evaluate
    from vla_ros.policy.runners import PolicyRunner

    folder = out / "eval" / name
    if (folder / "results.json").is_file():
        summary = json.loads((folder / "results.json").read_text())
        if summary.get("episodes") == episodes:
            return summary
    settings = pipeline_settings("widowx", [])
    runner = PolicyRunner(policy, "builtin-torch", threads=1, adapter=adapter)
    return evaluate(runner, "unseen", episodes, out_dir=folder, videos=2, label=name, executor=settings.executor,
                    safety=settings.safety, scene=scene)


def adapt(out: Path, data: Path, method: str, demos: int, args) -> tuple[Path, dict]:
    """A LoRA, full fine-tuning or from-scratch run on the first `demos` demonstrations (kept when done)."""
    from vla_ros.policy.adapters import AdapterSpec
    from vla_ros.policy.finetuning import FinetuneRecipe, finetune_policy
    from vla_ros.policy.recipe import TrainRecipe
    from vla_ros.policy.training import REPORT_FILE, train_policy

    folder = out / "runs" / f"{data.name.removeprefix('data_')}_{method_name(method, args)}_{demos}"
    if (folder / REPORT_FILE).is_file():
        return folder, json.loads((folder / REPORT_FILE).read_text())
    started = time.process_time()
    if method == "scratch":
        recipe = TrainRecipe(steps=args.scratch_steps, batch_size=32, warmup_steps=100, eval_every=500,
                             checkpoint_every=500)
        report = train_policy(data, BASE / "tokenizer", folder, recipe, SCRATCH_MODEL, episodes=demos,
                              export_onnx=False)
        report["trainable_parameters"] = report["parameters"]
        report["trainable_percent"] = 100.0
    else:
        recipe = FinetuneRecipe(steps=args.steps)
        spec = None
        if method == "lora":
            spec = AdapterSpec(rank=args.rank, alpha=2.0 * args.rank, targets=args.targets)
        else:
            recipe = FinetuneRecipe(steps=args.steps, learning_rate=3e-4, weight_decay=0.05)
        report = finetune_policy(BASE, data, folder, spec, recipe, episodes=demos, export_onnx=False)
    report["cpu_seconds"] = round(time.process_time() - started, 1)
    (folder / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return folder, report


def method_name(method: str, args) -> str:
    """lora (the default targets and rank), lora-all-r4, …, full, scratch: run folders and table rows."""
    if method != "lora" or (args.targets, args.rank) == ("attention", 8):
        return method
    return f"lora-{args.targets.replace('+', '-')}-r{args.rank}"


def row(shift: str, method: str, demos: int | None, summary: dict, report: dict | None) -> dict:
    entry = {"shift": shift, "method": method, "demos": demos, "scene": summary.get("scene"),
             "success": summary["mean_over_families"], "ci95": summary["mean_over_families_ci95"],
             "per_family": {k: v["successes"] for k, v in summary["per_family"].items()},
             "episodes": summary["episodes"]}
    if report:
        entry.update({"trainable_parameters": report.get("trainable_parameters"),
                      "trainable_percent": report.get("trainable_percent"),
                      "train_minutes": round(report["train_seconds"] / 60.0, 2),
                      "cpu_minutes": round(report.get("cpu_seconds", 0.0) / 60.0, 2),
                      "adapter_kb": round(report["adapter_bytes"] / 1024.0, 1) if "adapter_bytes" in report else None,
                      "peak_memory_mb": report.get("peak_memory_mb")})
    return entry


def plot(out: Path, shift: str, rows: list[dict], base_unshifted: float) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    curves = sorted({r["method"] for r in rows if r["demos"] and "unshifted" not in r["method"]})
    for method in curves:
        points = sorted((r["demos"], r["success"], r["ci95"]) for r in rows if r["method"] == method)
        style = "s--" if method == "full" else "^:" if method == "scratch" else "o-"
        label = {"lora": "LoRA, attention r8 (base frozen)", "full": "full fine-tuning",
                 "scratch": "from scratch"}.get(method, method.replace("lora-", "LoRA, ").replace("-r", " r"))
        x, y, e = zip(*points)
        ax.errorbar(x, [100 * v for v in y], yerr=[100 * v for v in e], fmt=style, capsize=3, label=label)
    shifted = next((r for r in rows if r["method"] == "base"), None)
    if shifted:
        ax.axhline(100 * shifted["success"], color="grey", ls="--", label="shipped policy, shifted")
    ax.axhline(100 * base_unshifted, color="black", ls="-", lw=0.8, label="shipped policy, unshifted")
    ax.axhline(90 * base_unshifted, color="black", ls=":", lw=0.8, label="90 % of unshifted")
    ax.set_xscale("log")
    ticks = sorted({r["demos"] for r in rows if r["demos"]})
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("demonstrations in the shifted cell")
    ax.set_ylabel("success, mean over families (%)")
    ax.set_ylim(0, 105)
    ax.set_title(f"adapting to {shift.replace('_', ' ')}")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    path = out / f"{shift}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown(rows: list[dict]) -> str:
    lines = ["| shift | method | demos | success (± 95 %) | pick / place / stack / push | trainable | train min | "
             "CPU min | adapter |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        families = " / ".join(str(r["per_family"].get(f, "-")) for f in ("pick", "place", "stack", "push"))
        trainable = f"{r['trainable_percent']:.2f} %" if r.get("trainable_percent") is not None else "-"
        minutes = f"{r['cpu_minutes']:.1f}" if r.get("cpu_minutes") else "-"
        wall = f"{r['train_minutes']:.1f}" if r.get("train_minutes") else "-"
        adapter = f"{r['adapter_kb']:.0f} KB" if r.get("adapter_kb") else "-"
        lines.append(f"| {r['shift']} ({r['scene']}) | {r['method']} | {r['demos'] or '-'} | "
                     f"{100 * r['success']:.1f} % ± {100 * r['ci95']:.1f} | {families} | {trainable} | {wall} | "
                     f"{minutes} | {adapter} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")
    args = parse_args(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    unshifted = evaluation(out, "base_default", args.episodes, "default", BASE)
    rows.append(row("none", "base", None, unshifted, None))
    for shift in args.shifts:
        if args.cached_only:
            shift_rows = cached_rows(out, shift)
            plot(out, shift, shift_rows, unshifted["mean_over_families"])
            rows += shift_rows
            continue
        data = dataset(out, shift, args.generate, args.workers)
        shift_rows = [row(shift, "base", None, evaluation(out, f"base_{shift}", args.episodes, shift, BASE), None)]
        # the LoRA run the targets name first (an early answer), then the curve, then the comparisons
        plan = sorted([("lora", n) for n in args.demos], key=lambda p: p[1] != args.forgetting_demos) + \
            [(m, n) for n in args.compare_demos for m in args.compare_methods]
        for method, demos in plan:
            done = out / "runs" / f"{shift}_{method_name(method, args)}_{demos}" / "training_report.json"
            if args.cached_only and not done.is_file():
                continue
            folder, report = adapt(out, data, method, demos, args)
            policy, adapter = (BASE, folder) if method == "lora" else (folder, None)
            summary = evaluation(out, folder.name, args.episodes, shift, policy, adapter)
            name = method_name(method, args)
            shift_rows.append(row(shift, name, demos, summary, report))
            if method == "lora" and demos == args.forgetting_demos:
                kept = evaluation(out, f"{folder.name}_on_default", args.episodes, "default", policy, adapter)
                shift_rows.append(row(shift, f"{name}, unshifted cell", demos, kept, report))
            save(out, rows + shift_rows, args)
        plot(out, shift, shift_rows, unshifted["mean_over_families"])
        rows += shift_rows
    save(out, rows, args)
    print(markdown(rows))
    return 0


def cached_rows(out: Path, shift: str) -> list[dict]:
    """Rows of every finished run of `shift` in OUT (whatever its method, targets or data), with its evaluations."""
    from vla_ros.policy.training import REPORT_FILE

    def summary(name: str) -> dict | None:
        path = out / "eval" / name / "results.json"
        return json.loads(path.read_text()) if path.is_file() else None

    rows = [row(shift, "base", None, summary(f"base_{shift}"), None)] if summary(f"base_{shift}") else []
    runs = sorted((out / "runs").glob(f"{shift}_*/{REPORT_FILE}"),
                  key=lambda p: (p.parent.name.rsplit("_", 1)[0], int(p.parent.name.rsplit("_", 1)[1])))
    for report_path in runs:
        name = report_path.parent.name
        method, demos = name.removeprefix(f"{shift}_").rsplit("_", 1)
        report = json.loads(report_path.read_text())
        for suffix, label in (("", method), ("_on_default", f"{method}, unshifted cell")):
            found = summary(name + suffix)
            if found:
                rows.append(row(shift, label, int(demos), found, report))
    return rows


def save(out: Path, rows: list[dict], args) -> None:
    results = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                           "python": platform.python_version()},
               "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "base": str(BASE), "rows": rows}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(markdown(rows))


if __name__ == "__main__":
    raise SystemExit(main())
