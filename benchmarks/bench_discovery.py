"""How long a process that joins a running ROS graph waits before its first message is delivered.

For each Fast DDS profile (middleware defaults, and vla_ros's config/fastdds_discovery.xml) and each trial:
`--others` idle participants and one subscriber start; then a publisher process starts and publishes every
10 ms from the moment its publisher exists. Measured: publisher created → first message received by the
subscriber. Discovery range LOCALHOST, a fresh ROS_DOMAIN_ID per trial.

Writes runs/bench_discovery/results.json, results.md and delay.png. Usage:
    python benchmarks/bench_discovery.py [--trials 10] [--others 6]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SUBSCRIBER = """
import sys, time, rclpy
from std_msgs.msg import String
rclpy.init()
node = rclpy.create_node("discovery_subscriber")
got = []
node.create_subscription(String, "/discovery_probe", lambda m: got.append(time.time()), 10)
print("READY", flush=True)
end = time.time() + float(sys.argv[1])
while time.time() < end and not got:
    rclpy.spin_once(node, timeout_sec=0.01)
print("FIRST", got[0] if got else "none", flush=True)
"""
IDLE = """
import sys, time, rclpy
rclpy.init()
node = rclpy.create_node("discovery_idle")
node.create_publisher(__import__("std_msgs.msg", fromlist=["String"]).String, "/discovery_other", 10)
time.sleep(float(sys.argv[1]))
"""
PUBLISHER = """
import sys, time, rclpy
from std_msgs.msg import String
rclpy.init()
node = rclpy.create_node("discovery_publisher")
publisher = node.create_publisher(String, "/discovery_probe", 10)
print("CREATED", time.time(), flush=True)
end = time.time() + float(sys.argv[1])
while time.time() < end:
    publisher.publish(String(data="x"))
    time.sleep(0.01)
"""


def trial(profile: str | None, others: int, domain: int, limit_s: float = 8.0) -> float | None:
    env = {k: v for k, v in os.environ.items() if k not in ("FASTDDS_DEFAULT_PROFILES_FILE",
                                                            "FASTRTPS_DEFAULT_PROFILES_FILE")}
    env.update(ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    if profile:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = profile
    idle = [subprocess.Popen([sys.executable, "-c", IDLE, str(limit_s + 6)], env=env) for _ in range(others)]
    subscriber = subprocess.Popen([sys.executable, "-c", SUBSCRIBER, str(limit_s + 6)], env=env,
                                  stdout=subprocess.PIPE, text=True)
    try:
        assert subscriber.stdout.readline().startswith("READY")
        time.sleep(3.0)  # the running graph has settled
        publisher = subprocess.run([sys.executable, "-c", PUBLISHER, str(limit_s)], env=env, capture_output=True,
                                   text=True, timeout=limit_s + 30)
        created = float(publisher.stdout.split("CREATED", 1)[1].split()[0])
        first = subscriber.stdout.read().split("FIRST", 1)[1].split()[0]
        return None if first == "none" else float(first) - created
    finally:
        for process in (*idle, subscriber):
            process.kill()
            process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--others", type=int, default=6, help="idle participants already running (default 6)")
    parser.add_argument("--out", default="runs/bench_discovery")
    args = parser.parse_args()
    from vla_ros.core.dds_profile import discovery_profile

    profiles = {"Fast DDS defaults": None, "vla_ros profile": str(discovery_profile())}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    base = 20 + os.getpid() % 40
    for index, (label, profile) in enumerate(profiles.items()):
        delays = []
        for k in range(args.trials):
            delays.append(trial(profile, args.others, base + (index * args.trials + k) % 60))
            print(f"{label}: trial {k + 1}/{args.trials}: "
                  f"{'not delivered' if delays[-1] is None else f'{delays[-1] * 1e3:.0f} ms'}", flush=True)
        got = np.array([d for d in delays if d is not None]) * 1e3
        results[label] = {"delays_ms": [None if d is None else round(d * 1e3, 1) for d in delays],
                          "undelivered": sum(d is None for d in delays),
                          "p50_ms": float(np.percentile(got, 50)) if len(got) else None,
                          "max_ms": float(got.max()) if len(got) else None}
    (out / "results.json").write_text(json.dumps({"others": args.others, "trials": args.trials,
                                                  "load_average": os.getloadavg(), "results": results}, indent=2))
    lines = ["| profile | trials | p50 | max | undelivered in 8 s |", "|---|---|---|---|---|"]
    for label, r in results.items():
        lines.append(f"| {label} | {args.trials} | {r['p50_ms']:.0f} ms | {r['max_ms']:.0f} ms | {r['undelivered']} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for index, (label, r) in enumerate(results.items()):
        values = [d for d in r["delays_ms"] if d is not None]
        ax.scatter(np.full(len(values), index), values, alpha=0.7)
    ax.set_xticks(range(len(results)), list(results))
    ax.set_ylabel("publisher created → first message (ms)")
    fig.tight_layout()
    fig.savefig(out / "delay.png", dpi=100)
    return 0


if __name__ == "__main__":
    sys.exit(main())
