"""Executor timing through ROS: control-period jitter, observation-to-command latency, chunk arrival margin.

The simulated arm, the instruction listener, the chunk executor and the safety monitor run as separate
processes; this script plays the policy: a chunk of small back-and-forth motions stamped now, every 0.2 s at 5 Hz
(every 2 control periods at higher rates, so that the 3 executed steps never run out).
For each control rate and each `thread_priority` (SCHED_FIFO 50 as shipped, 0 = normal scheduling) it runs
for `--seconds` and reads the executor's own figures from /diagnostics.

Writes runs/bench_executor/results.json, results.md and jitter.png. Usage:
    MUJOCO_GL=egl python benchmarks/bench_executor.py [--seconds 60] [--rates 5 20] [--priorities 50 0]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TASK = "pick up the red block"
GRAPH = """
description: executor timing benchmark
arguments: {{}}
nodes:
  - {{name: widowx_sim, executable: widowx_sim, required: true, parameters: {{camera_rate: 5.0}}}}
  - {{name: instruction_listener, executable: instruction_listener, required: true}}
  - {{name: chunk_executor, executable: chunk_executor, required: true,
     parameters: {{control_rate: {rate}, thread_priority: {priority}}}}}
  - {{name: safety_monitor, executable: safety_monitor, required: true, parameters: {{policy_lease: 0.0}}}}
"""
KEYS = ("period_jitter", "obs_to_command_latency", "chunk_arrival_margin")


def run(rate: float, priority: int, seconds: float) -> dict:
    from bench_closed_loop import DiagnosticsSampler
    from std_msgs.msg import String
    from trajectory_msgs.msg import JointTrajectory

    from vla_ros.core import topics
    from vla_ros.core.action_tokens import task_hash
    from vla_ros.graphs.probe import ProbeNode
    from vla_ros.graphs.processes import LaunchedGraph
    from vla_ros.nodes.qos import COMMANDS, LATCHED
    from vla_ros.nodes.messages import RCLPY

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench_executor.yaml"
        path.write_text(GRAPH.format(rate=rate, priority=priority))
        graph = LaunchedGraph(str(path))
        probe = ProbeNode("bench_executor")
        try:
            sampler = DiagnosticsSampler(probe)
            tasks = probe.collect(String, topics.TASK, LATCHED)
            commands = probe.collect(JointTrajectory, topics.ARM_COMMAND, COMMANDS)
            instruction = probe.node.create_publisher(String, topics.INSTRUCTION, COMMANDS)
            chunks = probe.node.create_publisher(JointTrajectory, topics.ACTION_CHUNK, COMMANDS)
            probe.spin_until(lambda: chunks.get_subscription_count() > 0 and instruction.get_subscription_count() > 0
                             and bool(tasks), 60, "the executor graph")
            probe.wait_for_reports(["widowx_sim", "instruction_listener", "chunk_executor", "safety_monitor"])
            instruction.publish(String(data=TASK))
            probe.spin_until(lambda: tasks[-1].data == TASK, 15, "the task")
            # A policy must deliver a chunk before the executed window (3 steps) runs out: every 0.2 s at 5 Hz,
            # every 0.1 s at 20 Hz (3 steps = 0.15 s).
            pace = min(0.2, 2.0 / rate)
            started, load = time.monotonic(), []
            while time.monotonic() - started < seconds:
                sign = 1.0 if int((time.monotonic() - started) / 2.0) % 2 == 0 else -1.0  # 2 s one way, 2 s back
                action = np.array([0.004 * sign, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0])
                chunks.publish(RCLPY.action_chunk(np.tile(action, (8, 1)), probe.node.get_clock().now().nanoseconds,
                                                    1.0 / rate, task_hash(TASK), "00000000000000aa"))
                probe.spin_for(pace)
                load.append(os.getloadavg()[0])
            probe.spin_for(2.5)  # one more diagnostics round with the final figures
            figures = sampler.node("chunk_executor")
        finally:
            probe.close()
            graph.stop()
    result = {"control_rate_hz": rate, "thread_priority": priority, "seconds": seconds,
              "commands": len(commands), "scheduling": figures.get("scheduling", "?"),
              "load_average_mean": round(float(np.mean(load)), 2) if load else None}
    for key in KEYS:
        for suffix in ("p50", "p95", "p99", "min"):
            value = figures.get(f"{key}_ms_{suffix}")
            result[f"{key}_ms_{suffix}"] = float(value) if value not in (None, "nan") else None
        result[f"{key}_count"] = int(figures.get(f"{key}_count", 0))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each run (default 60)")
    parser.add_argument("--rates", type=float, nargs="+", default=[5.0, 20.0], help="control rates in Hz")
    parser.add_argument("--priorities", type=int, nargs="+", default=[50, 0],
                        help="thread_priority values to compare (default 50 0)")
    parser.add_argument("--out", default="runs/bench_executor")
    args = parser.parse_args()
    os.environ.setdefault("ROS_DOMAIN_ID", str(200 + os.getpid() % 30))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("MUJOCO_GL", "egl")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for rate in args.rates:
        for priority in args.priorities:
            print(f"control rate {rate:g} Hz, thread_priority {priority}: {args.seconds:g} s", flush=True)
            results.append(run(rate, priority, args.seconds))
            print(json.dumps(results[-1]), flush=True)
    (out / "results.json").write_text(json.dumps({"runs": results, "cpus": os.cpu_count()}, indent=2) + "\n")
    lines = ["| rate | scheduling | periods | jitter p50 | p95 | p99 | obs→command p50 | p95 | margin min | load |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['control_rate_hz']:g} Hz | {r['scheduling']} | {r['period_jitter_count']} | "
                     f"{r['period_jitter_ms_p50']} ms | {r['period_jitter_ms_p95']} ms | {r['period_jitter_ms_p99']} ms | "
                     f"{r['obs_to_command_latency_ms_p50']} ms | {r['obs_to_command_latency_ms_p95']} ms | "
                     f"{r['chunk_arrival_margin_ms_min']} ms | {r['load_average_mean']} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.5))
    x = np.arange(len(results))
    for offset, q in ((-0.25, "p50"), (0.0, "p95"), (0.25, "p99")):
        ax.bar(x + offset, [r[f"period_jitter_ms_{q}"] or 0 for r in results], 0.25, label=q)
    ax.axhline(5.0, color="k", linestyle="--", linewidth=1, label="target p99 ≤ 5 ms")
    ax.set_xticks(x, [f"{r['control_rate_hz']:g} Hz\nprio {r['thread_priority']}" for r in results])
    ax.set_ylabel("period jitter (ms)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "jitter.png", dpi=100)
    return 0


if __name__ == "__main__":
    sys.exit(main())
