"""False vetoes on normal tasks: recorded expert episodes replayed through the whole `widowx` graph.

For each episode k of a data set (seed k, family FAMILIES[k % 4], as `vla-ros data generate` recorded it) the
graph is started with the `episode` policy backend on that episode: the recorded actions go through the
tokenizer, the VQ-VAE decoder, the sliding-window executor and the safety monitor to the simulated arm,
every node a process. The simulator is reset to the episode's layout and told its instruction. Every
motion is a normal one, so every veto is a false one. Reported per episode: the monitor's allowed, scaled
and vetoed arm commands (by rule) and whether the task succeeded.

Writes runs/bench_false_vetoes/results.json and results.md. Usage:
    MUJOCO_GL=egl python benchmarks/bench_false_vetoes.py --data data/sim_v2 [--episodes 8]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

FAMILIES = ("pick", "place", "stack", "push")


def run_episode(data: str, episode: int, tokenizer: str, timeout: float) -> dict:
    from bench_closed_loop import DiagnosticsSampler

    from vla_ros.graphs.probe import ProbeNode
    from vla_ros.graphs.processes import LaunchedGraph
    from vla_ros.graphs.sim_session import SimGraphSession

    graph = LaunchedGraph("widowx", "policy_backend:=episode", f"episode_data:={data}", f"episode_index:={episode}",
                         f"tokenizer_path:={tokenizer}")
    probe = ProbeNode(f"bench_false_vetoes_{episode}")
    try:
        sampler = DiagnosticsSampler(probe)
        run = SimGraphSession(probe, Path("runs/bench_false_vetoes"))
        probe.spin_until(lambda: graph.process.poll() is None and run.ready(), 180, "every node of the graph")
        outcome = run.run_task(FAMILIES[episode % len(FAMILIES)], episode, timeout)
        probe.spin_for(2.5)  # the monitor's next diagnostics report
        counts = sampler.node("safety_monitor")
    finally:
        probe.close()
        graph.stop()
    number = lambda key: int(counts.get(key, 0))  # noqa: E731
    return {"episode": episode, "family": outcome["family"], "instruction": outcome["instruction"],
            "success": outcome["success"], "seconds": outcome["seconds"], "allowed": number("allowed"),
            "scaled": number("scaled"), "vetoed": number("vetoed"),
            "vetoed_by_rule": {k[len("vetoed_"):]: int(v) for k, v in counts.items() if k.startswith("vetoed_")},
            "scaled_by_rule": {k[len("scaled_"):]: int(v) for k, v in counts.items() if k.startswith("scaled_")},
            "veto_reasons": outcome["vetoes"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="data set directory (from 'vla-ros data generate', seed 0)")
    parser.add_argument("--episodes", type=int, default=8, help="episodes 0 … N-1 (default 8: two per family)")
    parser.add_argument("--tokenizer", default="models/policy/vla/tokenizer")
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds per episode (default 15)")
    parser.add_argument("--out", default="runs/bench_false_vetoes")
    args = parser.parse_args()
    os.environ.setdefault("ROS_DOMAIN_ID", str(60 + os.getpid() % 30))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("MUJOCO_GL", "egl")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results, started = [], time.monotonic()
    for episode in range(args.episodes):
        results.append(run_episode(args.data, episode, args.tokenizer, args.timeout))
        print(json.dumps({k: v for k, v in results[-1].items() if k != "veto_reasons"}), flush=True)
    commands = sum(r["allowed"] + r["scaled"] + r["vetoed"] for r in results)
    vetoed = sum(r["vetoed"] for r in results)
    summary = {"episodes": len(results), "successes": sum(r["success"] for r in results),
               "arm_commands_judged": commands, "vetoed": vetoed, "scaled": sum(r["scaled"] for r in results),
               "false_veto_rate": vetoed / max(1, commands), "seconds": round(time.monotonic() - started, 1),
               "results": results}
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = ["| episode | family | success | allowed | scaled | vetoed (rules) |", "|---|---|---|---|---|---|"]
    for r in results:
        rules = ", ".join(f"{k} {v}" for k, v in r["vetoed_by_rule"].items()) or "-"
        lines.append(f"| {r['episode']} | {r['family']} | {'yes' if r['success'] else 'no'} | {r['allowed']} | "
                     f"{r['scaled']} | {r['vetoed']} ({rules}) |")
    lines.append(f"\nFalse-veto rate: {vetoed} of {commands} arm commands = {summary['false_veto_rate']:.2%}")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
