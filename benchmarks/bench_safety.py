"""Safety monitor timing, with the simulated arm, executor and monitor as separate processes.

- e-stop → last forwarded motion command, over N trials (p50/p99);
- an upstream node's death (the executor, SIGKILL) → the hold, over N trials (p50/p99);
- the gate's overhead: /vla/arm_command → controller topic, per forwarded command (p50/p95/p99).

Writes runs/bench_safety/results.json and a histogram PNG. Usage:
    MUJOCO_GL=egl python benchmarks/bench_safety.py [--trials 50]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from std_msgs.msg import Bool, String
from std_srvs.srv import Trigger
from tqdm import tqdm
from trajectory_msgs.msg import JointTrajectory

from vla_ros.core import topics
from vla_ros.core.action_tokens import task_hash
from vla_ros.graphs.probe import ProbeNode
from vla_ros.graphs.processes import LaunchedGraph
from vla_ros.nodes.qos import COMMANDS, LATCHED
from vla_ros.nodes.messages import RCLPY

TASK = "pick up the red block"
HOLD_REACH_S = 0.1  # the monitor's hold commands reach in 0.1 s; forwarded 5 Hz commands in 0.2 s
GRAPH = """
description: safety benchmark graph
arguments: {}
nodes:
  - {name: widowx_sim, executable: widowx_sim, required: true, parameters: {camera_rate: 2.0}}
  - {name: instruction_listener, executable: instruction_listener, required: true}
  - {name: safety_monitor, executable: safety_monitor, required: true, parameters: {policy_lease: 0.0}}
"""


def percentiles(values: list[float]) -> dict[str, float]:
    array = np.asarray(values) * 1e3
    return {"n": len(values), "p50_ms": float(np.percentile(array, 50)), "p99_ms": float(np.percentile(array, 99)),
            "max_ms": float(array.max())} if values else {"n": 0}


class Bench:
    def __init__(self):
        self.probe = ProbeNode("bench_safety")
        node = self.probe.node
        self.controller: list[tuple[float, float]] = []  # (receive time, reach)
        self.commands: dict[tuple[int, int], float] = {}
        self.hops: list[float] = []
        self.vetoes: list[tuple[float, str]] = []
        node.create_subscription(JointTrajectory, topics.ARM_CONTROLLER, self.on_controller, COMMANDS)
        node.create_subscription(JointTrajectory, topics.ARM_COMMAND, self.on_command, COMMANDS)
        node.create_subscription(String, topics.SAFETY_VETO, lambda m: self.vetoes.append((time.monotonic(), m.data)),
                                 COMMANDS)
        self.tasks = self.probe.collect(String, topics.TASK, LATCHED)
        self.chunk_pub = node.create_publisher(JointTrajectory, topics.ACTION_CHUNK, COMMANDS)
        self.instruction_pub = node.create_publisher(String, topics.INSTRUCTION, COMMANDS)
        self.estop_pub = node.create_publisher(Bool, topics.ESTOP, LATCHED)
        self.reset = node.create_client(Trigger, topics.SAFETY_RESET_SERVICE)
        self.direction = 1.0
        self.last_command_receipt = 0.0

    def on_command(self, msg: JointTrajectory) -> None:
        self.last_command_receipt = time.monotonic()

    def on_controller(self, msg: JointTrajectory) -> None:
        now = time.monotonic()
        reach = msg.points[0].time_from_start.sec + msg.points[0].time_from_start.nanosec * 1e-9
        self.controller.append((now, reach))
        if abs(reach - HOLD_REACH_S) > 1e-6 and now - self.last_command_receipt < 0.1:
            self.hops.append(now - self.last_command_receipt)

    def stream(self, seconds: float) -> None:
        actions = np.tile([0.0, 0.01 * self.direction, 0.0, 0.0, 0.0, 0.0, 1.0], (8, 1))
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.chunk_pub.publish(RCLPY.action_chunk(actions, self.probe.node.get_clock().now().nanoseconds, 0.2,
                                                        task_hash(TASK), "00000000000000aa"))
            self.probe.spin_for(0.2)
        self.direction = -self.direction

    def reset_monitor(self) -> None:
        message = "no answer"
        for _ in range(50):
            future = self.reset.call_async(Trigger.Request())
            try:
                self.probe.spin_until(future.done, 10, "the reset service")
            except TimeoutError:
                continue  # an overloaded machine: ask again
            if future.result().success:
                return
            message = future.result().message
            self.probe.spin_for(0.2)
        raise RuntimeError(f"reset refused: {message}")

    def estop_trial(self) -> tuple[float, float, int]:
        """(e-stop → hold seen, e-stop → last forwarded motion or 0, motions forwarded after the e-stop)."""
        self.stream(0.6)
        start = len(self.controller)
        asserted = time.monotonic()
        self.estop_pub.publish(Bool(data=True))
        self.stream(0.6)  # the upstream keeps commanding
        holds = [t - asserted for t, reach in self.controller[start:] if abs(reach - HOLD_REACH_S) < 1e-6]
        moves = [t - asserted for t, reach in self.controller[start:] if abs(reach - HOLD_REACH_S) > 1e-6]
        self.estop_pub.publish(Bool(data=False))
        self.probe.spin_for(0.3)
        self.reset_monitor()
        return (holds[0] if holds else float("nan")), (max(moves) if moves else 0.0), len(moves)

    def executor_death_trial(self) -> float:
        env = dict(os.environ)
        executor = subprocess.Popen([sys.executable, "-m", "vla_ros.nodes.chunk_executor"], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            self.probe.spin_until(lambda: self.probe.node.count_publishers(topics.ARM_COMMAND) > 0, 30,
                                  "the executor")
            self.instruction_pub.publish(String(data="stop"))
            self.probe.spin_for(0.3)
            self.instruction_pub.publish(String(data=TASK))
            start = len(self.controller)
            deadline = time.monotonic() + 20
            while len(self.controller) - start < 3 and time.monotonic() < deadline:
                self.stream(0.2)
            killed = time.monotonic()
            executor.send_signal(signal.SIGKILL)
            self.probe.spin_until(lambda: any(t > killed and "chunk_executor" in r for t, r in self.vetoes), 10,
                                  "the hold")
            hold = next(t for t, r in self.vetoes if t > killed and "chunk_executor" in r)
            return hold - killed
        finally:
            if executor.poll() is None:
                executor.kill()
            executor.wait()
            self.probe.spin_for(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--out", default="runs/bench_safety")
    args = parser.parse_args()
    os.environ.setdefault("ROS_DOMAIN_ID", str(150 + os.getpid() % 50))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        graph_file = Path(tmp) / "bench_safety.yaml"
        graph_file.write_text(GRAPH)
        graph = LaunchedGraph(str(graph_file))
        bench = Bench()
        try:
            bench.probe.spin_until(lambda: bench.instruction_pub.get_subscription_count() > 0
                                   and bench.reset.service_is_ready() and bench.tasks, 60, "the graph")
            bench.instruction_pub.publish(String(data=TASK))
            estop, deaths = [], []
            for _ in tqdm(range(args.trials), desc="executor death → hold"):
                deaths.append(bench.executor_death_trial())
            executor = subprocess.Popen([sys.executable, "-m", "vla_ros.nodes.chunk_executor"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                bench.probe.spin_until(lambda: bench.chunk_pub.get_subscription_count() > 0, 30, "the executor")
                bench.instruction_pub.publish(String(data="stop"))
                bench.probe.spin_for(0.3)
                bench.instruction_pub.publish(String(data=TASK))
                bench.reset_monitor()
                forwarded = len(bench.controller)
                deadline = time.monotonic() + 30
                while len(bench.controller) - forwarded < 3:  # the new executor has the task and moves the arm
                    if time.monotonic() > deadline:
                        raise RuntimeError("the executor never moved the arm")
                    bench.stream(0.4)
                for _ in tqdm(range(args.trials), desc="e-stop → hold"):
                    estop.append(bench.estop_trial())
            finally:
                executor.send_signal(signal.SIGINT)
                executor.wait(timeout=10)
        finally:
            bench.probe.close()
            graph.stop()
    results = {
        "estop_to_hold_command": percentiles([e[0] for e in estop]),
        "estop_to_last_forwarded_motion": percentiles([e[1] for e in estop]),
        "motions_forwarded_after_estop": int(sum(e[2] for e in estop)),
        "executor_death_to_hold": percentiles(deaths),
        "gate_hop_arm_command_to_controller": {**percentiles(bench.hops),
                                               "p95_ms": float(np.percentile(np.asarray(bench.hops) * 1e3, 95))},
        "trials": args.trials,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    for ax, (title, values) in zip(axes, (("e-stop → hold command", [e[0] for e in estop]),
                                          ("executor killed → hold", deaths),
                                          ("gate hop (arm_command → controller)", bench.hops))):
        ax.hist(np.asarray(values) * 1e3, bins=20)
        ax.set_title(title)
        ax.set_xlabel("ms")
    fig.tight_layout()
    fig.savefig(out / "results.png", dpi=100)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
