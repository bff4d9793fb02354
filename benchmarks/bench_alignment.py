"""Safety alignment of the shipped policy from preferences: unsafe episodes and success, base against aligned.

1. The shipped policy on --episodes unseen layouts and --episodes held-out paraphrase episodes, in-process through
   the `widowx` graph's control loop and safety gate, with the unsafe events of every episode counted
   (`vla_ros.sim.safety_events`): the baseline.
2. `vla-ros prefs generate` on --pref-episodes episodes (layouts from seed 3 000 000; candidates judged by
   look-ahead), `vla-ros prefs reward` (the reward model's held-out pair accuracy).
3. `vla-ros align` with each of --methods, each adapter evaluated like the base.
4. The look-ahead oracle (`alignment.preferences.ShieldedChunks`) on --oracle-episodes unseen layouts: at every
   chunk the candidates are rolled forward and the safest is executed, what perfectly learned preferences over
   the policy's candidates would do (one oracle per entry of --oracles).

Evaluations run two at a time (one process each). A finished step is kept and a re-run only does what is
missing. Writes OUT/results.json, OUT/results.md and OUT/alignment.png. Usage:

    MUJOCO_GL=egl python benchmarks/bench_alignment.py [--episodes 400] [--pref-episodes 300]
        [--methods dpo constrained] [--oracles 6:0.8 12:1] [--out runs/align]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASE = REPO / "models" / "policy" / "vla"
SPLITS = ("unseen", "paraphrase")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=400, help="evaluation episodes per split and policy")
    parser.add_argument("--pref-episodes", type=int, default=300, help="episodes preference data is drawn from")
    parser.add_argument("--methods", nargs="+", default=["dpo", "constrained"], choices=["dpo", "constrained"])
    parser.add_argument("--steps", type=int, default=300, help="alignment steps")
    parser.add_argument("--oracle-episodes", type=int, default=100,
                        help="unseen episodes with the look-ahead oracle choosing each chunk (0: none)")
    parser.add_argument("--oracles", nargs="+", default=["6:0.8"], metavar="CANDIDATES:TEMPERATURE",
                        help="look-ahead oracles to run: candidates per chunk and the sampling temperature of those "
                             "after the policy's own choice (default 6:0.8, the preference data's)")
    parser.add_argument("--workers", type=int, default=2, help="parallel processes (generation, evaluation)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "align", help="output directory")
    return parser.parse_args(argv)


def evaluation(folder: Path, split: str, episodes: int, label: str, adapter: str | None) -> dict:
    """`vla-ros eval` of the shipped policy (+ adapter) on a split, kept in `folder`."""
    import torch

    from vla_ros.graphs.pipeline import pipeline_settings
    from vla_ros.policy.evaluation import evaluate
    from vla_ros.policy.runners import PolicyRunner

    if (folder / "results.json").is_file():
        summary = json.loads((folder / "results.json").read_text())
        if summary.get("episodes") == episodes and "safety" in summary:
            return summary
    torch.set_num_threads(1)
    settings = pipeline_settings("widowx", [])
    runner = PolicyRunner(BASE, "builtin-torch", threads=1, adapter=adapter)
    return evaluate(runner, split, episodes, out_dir=folder, videos=2, label=label, executor=settings.executor,
                    safety=settings.safety, progress=False)


def shielded_part(split: str, indices: list[int], candidates: int = 6, temperature: float = 0.8) -> list:
    """Episodes `indices` of `split` with the look-ahead oracle choosing among the candidates at every chunk."""
    import torch

    from vla_ros.alignment.preferences import PreferenceWorker, PrefsSpec, ShieldedChunks
    from vla_ros.graphs.pipeline import pipeline_settings
    from vla_ros.policy.evaluation import SEED_BASE, WORKCELL_SPLIT, run_policy_episode
    from vla_ros.sim.safety_events import SafetyWatch
    from vla_ros.sim.tasks import FAMILIES

    torch.set_num_threads(1)
    settings = pipeline_settings("widowx", [])
    worker = PreferenceWorker(PrefsSpec(policy=str(BASE), split=WORKCELL_SPLIT[split], candidates=candidates,
                                        temperature=temperature))
    watch = SafetyWatch(worker.workcell)
    results = []
    for index in indices:
        seed = SEED_BASE[split] + index
        source = ShieldedChunks(worker, seed)
        result = run_policy_episode(worker.workcell, source, seed, FAMILIES[index % len(FAMILIES)],
                                    executor=settings.executor, safety=settings.safety, watch=watch)
        results.append((result, source.deviations, source.requests))
    worker.close()
    return results


def shielded(out: Path, split: str, episodes: int, workers: int, candidates: int = 6,
             temperature: float = 0.8) -> dict:
    """The look-ahead oracle's unsafe episodes and success (what perfectly learned preferences would give)."""
    from vla_ros.policy.evaluation import summarize

    name = "oracle" if (candidates, temperature) == (6, 0.8) else f"oracle_{candidates}_{temperature:g}"
    path = out / "eval" / f"{name}_{split}.json"
    if path.is_file():
        summary = json.loads(path.read_text())
        if summary.get("episodes") == episodes:
            return summary
    started = time.perf_counter()
    parts = [list(range(episodes))[w::workers] for w in range(workers)]
    with ProcessPoolExecutor(workers) as pool:
        done = [item for part in pool.map(shielded_part, [split] * workers, parts, [candidates] * workers,
                                          [temperature] * workers) for item in part]
    label = "look-ahead oracle" if name == "oracle" else f"look-ahead oracle, {candidates} at T {temperature:g}"
    summary = summarize([r for r, _, _ in done], split, label, time.perf_counter() - started, False, False)
    summary["deviations"] = int(sum(d for _, d, _ in done))
    summary["chunks"] = int(sum(n for _, _, n in done))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def evaluate_all(out: Path, runs: dict[str, str | None], episodes: int, workers: int) -> dict[str, dict]:
    """Every (run, split) evaluation, `workers` at a time; {f"{run}/{split}": summary}."""
    jobs = {f"{name}/{split}": (out / "eval" / f"{name}_{split}", split, episodes, f"{name}", adapter)
            for name, adapter in runs.items() for split in SPLITS}
    with ProcessPoolExecutor(workers) as pool:
        futures = {key: pool.submit(evaluation, *job) for key, job in jobs.items()}
        results = {}
        for key, future in futures.items():
            results[key] = future.result()
            safety = results[key]["safety"]
            print(f"{key}: success {results[key]['mean_over_families']:.1%}, unsafe episodes "
                  f"{safety['unsafe_rate']:.1%} ({safety['unsafe_episodes']}/{results[key]['episodes']})", flush=True)
    return results


def plot(path: Path, results: dict[str, dict], names: list[str], oracle: dict | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        xs = np.arange(len(SPLITS)) + i * width
        unsafe = [results[f"{name}/{s}"]["safety"]["unsafe_rate"] for s in SPLITS]
        low = [u - results[f"{name}/{s}"]["safety"]["unsafe_wilson95"][0] for u, s in zip(unsafe, SPLITS)]
        high = [results[f"{name}/{s}"]["safety"]["unsafe_wilson95"][1] - u for u, s in zip(unsafe, SPLITS)]
        axes[0].bar(xs, unsafe, width, yerr=[low, high], capsize=3, label=name)
        success = [results[f"{name}/{s}"]["mean_over_families"] for s in SPLITS]
        half = [results[f"{name}/{s}"]["mean_over_families_ci95"] for s in SPLITS]
        axes[1].bar(xs, success, width, yerr=half, capsize=3, label=name)
    if oracle is not None:  # unseen only: the best the preferences could teach
        centre = width * (len(names) - 1) / 2
        rate, (low, high) = oracle["safety"]["unsafe_rate"], oracle["safety"]["unsafe_wilson95"]
        axes[0].errorbar([centre], [rate], yerr=[[rate - low], [high - rate]], fmt="kD", capsize=4,
                         label=f"look-ahead oracle ({oracle['episodes']} episodes)")
        axes[1].errorbar([centre], [oracle["mean_over_families"]], yerr=[oracle["mean_over_families_ci95"]],
                         fmt="kD", capsize=4, label="look-ahead oracle")
    for ax, title in zip(axes, ("unsafe episodes (Wilson 95 %)", "task success (mean over families, 95 %)")):
        ax.set_xticks(np.arange(len(SPLITS)) + width * (len(names) - 1) / 2)
        ax.set_xticklabels(SPLITS)
        ax.set_title(title)
        ax.legend(fontsize=8)
    axes[1].set_ylim(0, 1.05)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("MUJOCO_GL", "egl")
    from vla_ros.alignment.dpo import AlignRecipe, align_policy
    from vla_ros.alignment.preferences import PrefsSpec, describe_prefs, generate_preferences, load_prefs
    from vla_ros.alignment.reward_model import train_reward_model
    from vla_ros.policy.evaluation import events_table, markdown_table, safety_table

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    prefs_path = out / "prefs.h5"
    if not prefs_path.is_file():
        generate_preferences(PrefsSpec(policy=str(BASE), episodes=args.pref_episodes), prefs_path,
                             workers=args.workers)
        timings["prefs_minutes"] = round((time.perf_counter() - started) / 60, 1)
    prefs = describe_prefs(load_prefs(prefs_path))
    reward_dir = out / "reward"
    if not (reward_dir / "reward_model.json").is_file():
        train_reward_model(BASE, prefs_path, reward_dir)
    reward = json.loads((reward_dir / "reward_model.json").read_text())
    runs: dict[str, str | None] = {"base": None}
    reports = {}
    for method in args.methods:
        folder = out / f"adapter_{method}"
        if not (folder / "align_report.json").is_file():
            align_policy(BASE, prefs_path, folder, recipe=AlignRecipe(method=method, steps=args.steps))
        reports[method] = json.loads((folder / "align_report.json").read_text())
        reports[method].pop("history", None)
        runs[f"aligned ({method})"] = str(folder)
    results = evaluate_all(out, runs, args.episodes, args.workers)
    summaries = [results[f"{name}/{split}"] for name in runs for split in SPLITS]
    oracle = None
    for text in args.oracles if args.oracle_episodes else []:
        candidates, temperature = int(text.split(":")[0]), float(text.split(":")[1])
        summary = shielded(out, "unseen", args.oracle_episodes, args.workers, candidates, temperature)
        oracle = oracle or summary
        summaries.append(summary)
        print(f"{summary['label']}: success {summary['mean_over_families']:.1%}, unsafe episodes "
              f"{summary['safety']['unsafe_rate']:.1%}, {summary['deviations']} of {summary['chunks']} chunks "
              f"changed")
    for summary in summaries:
        summary.pop("episodes_detail", None)
    plot(out / "alignment.png", results, list(runs), oracle)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.system()}"
    (out / "results.json").write_text(json.dumps({"machine": machine, "prefs": prefs, "reward_model": reward,
                                                  "alignment": reports, "evaluations": results}, indent=2) + "\n")
    (out / "results.md").write_text(
        "Unsafe episodes and success:\n\n" + safety_table(summaries) + "\nEpisodes with each kind of event:\n\n"
        + events_table(summaries) + "\nSuccess per family:\n\n" + markdown_table(summaries))
    print((out / "results.md").read_text())
    print(f"reward model: held-out pair accuracy {reward['valid_accuracy']:.3f} "
          f"({reward['valid_accuracy_by_kind']}); wrote {out}/results.json, results.md, alignment.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
