"""Closed loop through ROS (every node a process) against the in-process evaluation of the same policy.

For each task family, N layouts (seeds never used for training data, training phrasings) are run
1. in-process: `vla_ros.policy.evaluation.run_policy_episode` (the graph's control loop and safety gate on
   simulated time, with the graph's settings; no ROS);
2. through the `widowx` graph: widowx_sim is reset to the same seed and family, the same instruction is
   said, and the episode ends at success or after `--timeout` seconds (80 control steps + margin).
During the ROS run the executor's, safety monitor's and simulator's diagnostics are sampled: period jitter,
observation-to-command latency, chunk arrival margin, vetoes, real-time factor. A second, shorter ROS run
at 20 Hz measures the executor's jitter there.

Writes runs/bench_closed_loop/results.json, results.md, success.png and graph_<run>.log (every node's output).
Usage:
    MUJOCO_GL=egl python benchmarks/bench_closed_loop.py [--episodes-per-family 20] [--policy models/policy/vla]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

FAMILIES = ("pick", "place", "stack", "push")
SEED_BASE = 1_000_000  # evaluation's "unseen" split


def in_process(policy: str, seeds: list[tuple[str, int]], graph_args: list[str]) -> list[dict]:
    from vla_ros.graphs.pipeline import pipeline_settings
    from vla_ros.policy.evaluation import run_policy_episode
    from vla_ros.policy.runners import PolicyRunner
    from vla_ros.sim.rollout import PolicyChunks, policy_workcell

    settings = pipeline_settings("widowx", graph_args)
    runner = PolicyRunner(policy, "builtin-torch")
    source = PolicyChunks(runner, temperature=settings.policy.temperature)
    results = []
    with policy_workcell(runner.config) as workcell:
        for family, seed in tqdm(seeds, desc="in-process"):
            result = run_policy_episode(workcell, source, seed, family, executor=settings.executor,
                                        safety=settings.safety)
            results.append({"family": family, "seed": seed, "success": bool(result.success), "steps": result.steps})
    return results


class DiagnosticsSampler:
    """Keeps the newest status per node from /diagnostics."""

    def __init__(self, probe):
        from diagnostic_msgs.msg import DiagnosticArray

        from vla_ros.nodes.qos import DEFAULT

        self.latest: dict[str, dict[str, str]] = {}
        self.margin_min = float("inf")
        self.rtf: list[float] = []
        probe.node.create_subscription(DiagnosticArray, "/diagnostics", self.on_array, DEFAULT)

    def on_array(self, msg) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            self.latest[status.name] = values
            if status.name.endswith("chunk_executor") and values.get("chunk_arrival_margin_ms_min", "nan") != "nan":
                self.margin_min = min(self.margin_min, float(values["chunk_arrival_margin_ms_min"]))
            if status.name.endswith("widowx_sim") and values.get("real_time_factor", "nan") != "nan":
                self.rtf.append(float(values["real_time_factor"]))

    def node(self, name: str) -> dict[str, str]:
        return next((v for k, v in self.latest.items() if k.endswith(name)), {})


def through_ros(seeds: list[tuple[str, int]], timeout: float, graph_args: list[str], label: str,
                out: Path) -> tuple[list, dict]:
    from vla_ros.graphs.probe import ProbeNode
    from vla_ros.graphs.processes import LaunchedGraph
    from vla_ros.graphs.sim_session import SimGraphSession

    graph = LaunchedGraph("widowx", *graph_args)
    probe = ProbeNode(f"bench_closed_loop_{label}")
    results, started = [], time.monotonic()
    try:
        run = SimGraphSession(probe, out)
        sampler = DiagnosticsSampler(probe)
        from vla_ros.graphs.spec import load_graph, parse_overrides, resolve_graph

        # The nodes this graph starts (with policy_backend:=remote there is no action_decoder).
        nodes = [node.name for node in resolve_graph(load_graph("widowx"), parse_overrides(graph_args))]
        probe.spin_until(lambda: run.ready(nodes), 180, "every node of the graph")
        for family, seed in tqdm(seeds, desc=f"ROS {label}"):
            outcome = run.run_task(family, seed, timeout)
            results.append({**outcome, "vetoes": len(outcome["vetoes"])})
        probe.spin_for(1.5)  # one more diagnostics round
        executor, monitor, sim = sampler.node("chunk_executor"), sampler.node("safety_monitor"), sampler.node("widowx_sim")
        stats = {
            "run_seconds": round(time.monotonic() - started, 1),
            "executor": {k: executor.get(k) for k in executor if k.startswith(("period_jitter", "obs_to_command",
                                                                                  "chunk_arrival", "first_chunk_wait", "hold_ticks",
                                                                                  "commands"))},
            "chunk_arrival_margin_ms_min_over_run": sampler.margin_min,
            "safety_monitor": {k: monitor.get(k) for k in monitor if k.startswith(("allowed", "scaled", "vetoed",
                                                                                   "holds", "dropped"))},
            "real_time_factor_min": min(sampler.rtf) if sampler.rtf else None,
            "real_time_factor_mean": float(np.mean(sampler.rtf)) if sampler.rtf else None,
            # Every node's last status: the peaks (oldest frame, slowest inference, the worst margin's time)
            # say where a late chunk lost its time.
            "diagnostics_final": dict(sampler.latest),
        }
    finally:
        probe.close()
        stats_exit = graph.stop()
        (out / f"graph_{label}.log").write_text(graph.output + "\n")  # every node's output, for post-mortems
    stats["graph_exit_code"] = stats_exit
    return results, stats


def rate(results: list[dict], family: str | None = None) -> float:
    chosen = [r for r in results if family is None or r["family"] == family]
    return float(np.mean([r["success"] for r in chosen])) if chosen else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes-per-family", type=int, default=20)
    parser.add_argument("--policy", default="models/policy/vla")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per ROS episode (80 steps = 16 s)")
    parser.add_argument("--jitter-seconds", type=float, default=60.0, help="length of the 20 Hz run (0 = skip)")
    parser.add_argument("--seed-base", type=int, default=SEED_BASE,
                        help="first layout seed (default 1 000 000, never used for data; 0 = the training layouts)")
    parser.add_argument("--graph-arg", action="append", default=[], metavar="NAME:=VALUE",
                        help="extra argument for the widowx graph in both ROS runs (repeatable), e.g. "
                             "observe_after_window:=true")
    parser.add_argument("--out", default="runs/bench_closed_loop")
    args = parser.parse_args()
    os.environ.setdefault("ROS_DOMAIN_ID", str(120 + os.getpid() % 30))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # Seed s with family FAMILIES[s % 4]: with --seed-base 0 these are exactly the recorded training episodes.
    seeds = [(family, args.seed_base + i * len(FAMILIES) + k) for i in range(args.episodes_per_family)
             for k, family in enumerate(FAMILIES)]
    graph_args = [f"policy_path:={args.policy}", f"tokenizer_path:={args.policy}/tokenizer", *args.graph_arg]
    # A policy that reads more cameras gets them composed into /vla/image (docs/policy.md, "A second view").
    cameras = json.loads((Path(args.policy) / "config.json").read_text()).get("extra_cameras", [])
    if cameras and not any(arg.startswith("extra_cameras:=") for arg in args.graph_arg):
        graph_args.append(f"extra_cameras:={','.join(cameras)}")
    local = in_process(args.policy, seeds, graph_args)
    (out / "in_process.json").write_text(json.dumps(local, indent=2))  # kept even if the ROS run fails
    ros, stats = through_ros(seeds, args.timeout, graph_args, "5hz", out)
    fast = None
    if args.jitter_seconds > 0:
        count = max(1, int(args.jitter_seconds // 12))
        _, fast = through_ros(seeds[:count], args.timeout, [*graph_args, "control_rate:=20.0"], "20hz", out)
    successful = [r for r in ros if r["success"]]
    vetoed = sum(r["vetoes"] for r in successful)
    # Control ticks of the successful episodes (5 Hz): the commands those vetoes are counted against.
    ticks = sum(round(r["seconds"] * 5.0) for r in successful)
    results = {
        "episodes_per_family": args.episodes_per_family,
        "seed_base": args.seed_base,
        "graph_args": args.graph_arg,
        "in_process": {f: rate(local, f) for f in FAMILIES} | {"mean": rate(local)},
        "ros": {f: rate(ros, f) for f in FAMILIES} | {"mean": rate(ros)},
        "ros_stats_5hz": stats,
        "ros_stats_20hz": fast,
        "vetoes_in_successful_episodes": vetoed,
        "control_ticks_in_successful_episodes": ticks,
        "false_veto_rate": vetoed / ticks if ticks else None,
        "episodes": {"in_process": local, "ros": ros},
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    lines = ["| family | in-process | through ROS |", "|---|---|---|"]
    for family in (*FAMILIES, "mean"):
        lines.append(f"| {family} | {results['in_process'][family]:.0%} | {results['ros'][family]:.0%} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(FAMILIES) + 1)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    labels = [*FAMILIES, "mean"]
    ax.bar(x - 0.2, [results["in_process"][f] for f in labels], 0.4, label="in-process")
    ax.bar(x + 0.2, [results["ros"][f] for f in labels], 0.4, label="through ROS")
    ax.set_xticks(x, labels)
    ax.set_ylim(0, 1)
    ax.set_ylabel("success")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "success.png", dpi=100)
    print("\n".join(lines))
    print(json.dumps({k: v for k, v in results.items() if k != "episodes"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
