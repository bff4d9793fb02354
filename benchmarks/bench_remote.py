"""Remote inference figures: added latency, throughput with batching and replicas, and the hold after a server dies.

latency     the robot's client (`vla_ros.serving.client`) against `vla-ros serve` on this machine (both fronts,
            with and without batching), one request at a time, against the same policy in-process (`builtin-torch`,
            one thread): per chunk, p50/p95 of the round trip, of the server's own inference time, and of the
            difference (what the remote path adds).
throughput  C simulated robots (asyncio websocket clients in one process, each sending its next observation when
            its reply arrives) for S seconds, for C in 1, 4, 16, against 1 and 2 replicas, without batching
            (--max-batch 1) and with it (--max-batch 16, no batch wait); chunks/s and p95 round trip.
kill        the widowx graph in simulation with `policy_backend:=remote` against `vla-ros serve`; an instruction, then
            SIGKILL to the server and every Ray process it started: when the last command reached the arm, and when
            the safety monitor held it.

Writes runs/bench_remote/<part>.json and throughput.png. Usage:
    MUJOCO_GL=egl python benchmarks/bench_remote.py latency [--requests 300]
    MUJOCO_GL=egl python benchmarks/bench_remote.py throughput [--seconds 8]
    MUJOCO_GL=egl python benchmarks/bench_remote.py kill [--trials 3]
The closed loop through the graph: benchmarks/bench_closed_loop.py with --graph-arg policy_backend:=remote
(docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from vla_ros.core.ports import free_port  # noqa: E402
POLICY = REPO / "models" / "policy" / "vla"
TASK = "pick up the red block"
OUT = REPO / "runs" / "bench_remote"


def observation_image(size: int = 128) -> np.ndarray:
    from vla_ros.sim.workcell import Workcell

    with Workcell(image_size=size) as workcell:
        return workcell.reset(1_000_000, family="pick").image


class Server:
    """`vla-ros serve` in its own session (so that it and the Ray processes it starts can be killed together)."""

    def __init__(self, *arguments: str, home: Path):
        self.port = free_port()
        self.ray_dir = tempfile.mkdtemp(prefix="vr", dir="/tmp")
        env = {**os.environ, "HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vla_ros.cli", "serve", "--policy", str(POLICY), "--port", str(self.port),
             "--no-auth", "--temp-dir", self.ray_dir, *arguments],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(iter(self.process.stdout.readline, "")), daemon=True).start()
        deadline = time.monotonic() + 180
        while not any(line.startswith("ready") for line in self.lines):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("vla-ros serve did not start:\n" + "".join(self.lines))
            time.sleep(0.2)
        self.url = f"ws://127.0.0.1:{self.port}"

    def ray_pids(self) -> list[int]:
        """The processes of this server's session (it started them; Ray's workers rename themselves, so their command
        line does not say whose they are, but they keep the session) and any that name its Ray folder."""
        found = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit() and int(proc.name) != self.process.pid:
                try:
                    session = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[3])
                    if session == self.process.pid or self.ray_dir.encode() in (proc / "cmdline").read_bytes():
                        found.append(int(proc.name))
                except (OSError, ValueError, IndexError):
                    pass
        return found

    def kill(self) -> None:
        """SIGKILL to the server and to the processes of its Ray session, by their ids."""
        pids = [self.process.pid, *self.ray_pids()]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # handled by `vla-ros serve` even where SIGINT is ignored
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()
        for pid in self.ray_pids():  # anything the shutdown left behind
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.ray_dir, ignore_errors=True)


def percentiles(values, scale: float = 1e3) -> dict:
    values = np.asarray(values, dtype=np.float64) * scale
    return {"p50": round(float(np.percentile(values, 50)), 2), "p95": round(float(np.percentile(values, 95)), 2),
            "n": int(values.size)}


# ------------------------------------------------------------------------------------------- latency
def latency(args, home: Path) -> dict:
    import torch

    from vla_ros.policy.runners import PolicyRunner
    from vla_ros.policy.sources import RunnerTokenSource
    from vla_ros.serving.client import RemotePolicySource

    torch.set_num_threads(1)
    image = observation_image()
    joints = np.zeros(6, np.float32)
    rng = np.random.default_rng(0)
    source = RunnerTokenSource(PolicyRunner(POLICY, "builtin-torch", threads=1))
    local = []
    for _ in range(args.requests + 20):
        started = time.perf_counter()
        out = source.generate(image, TASK, joints, frame_time_s=0.0, temperature=0.1, plan=False, rng=rng)
        source.tokenizer.decode(np.asarray(out.tokens)[None])  # the server decodes too
        local.append(time.perf_counter() - started)
    del source
    results = {"in_process_ms": percentiles(local[20:])}
    configurations = [(f"{front}_front_{label}", ["--front", front, *extra]) for front in args.fronts
                      for label, extra in (("no_batching", ["--max-batch", "1"]), ("batching_8", []))]
    for label, extra in configurations:
        server = Server(*extra, home=home)
        try:
            client = RemotePolicySource(server.url, request_timeout=5.0)
            rtt, server_ms, added = [], [], []
            for k in range(args.requests + 20):
                started = time.perf_counter()
                client.generate(image, TASK, joints, frame_time_s=0.0, temperature=0.1, plan=False, rng=None,
                                stamp_ns=k + 1)
                took = time.perf_counter() - started
                if k >= 20:
                    inferred = client.server.values[-1]  # the server's own time for this request, s
                    rtt.append(took)
                    server_ms.append(inferred)
                    added.append(took - inferred)
            client.close()
        finally:
            server.stop()
        results[label] = {"round_trip_ms": percentiles(rtt), "server_inference_ms": percentiles(server_ms),
                          "added_ms": percentiles(added),
                          "round_trip_minus_in_process_p50_ms": round(float(np.percentile(rtt, 50) * 1e3
                                                                             - results["in_process_ms"]["p50"]), 2)}
        print(label, json.dumps(results[label]), flush=True)
    return results


# ------------------------------------------------------------------------------------------- throughput
async def robots(url: str, count: int, seconds: float, image: np.ndarray) -> dict:
    from websockets.asyncio.client import connect

    from vla_ros.serving import protocol

    payload = protocol.pack(protocol.observation_request(image, TASK, np.zeros(6, np.float32), temperature=0.1))
    latencies: list[float] = []
    batch_sizes: list[int] = []
    deadline = time.monotonic() + seconds

    async def robot() -> None:
        async with connect(url, compression=None, max_size=None, proxy=None) as websocket:
            await websocket.recv()
            while time.monotonic() < deadline:
                started = time.perf_counter()
                await websocket.send(payload)
                reply = protocol.unpack(await websocket.recv())
                latencies.append(time.perf_counter() - started)
                batch_sizes.append(reply["server_timing"]["batch_size"])

    await asyncio.gather(*(robot() for _ in range(count)))
    return {"robots": count, "chunks_per_s": round(len(latencies) / seconds, 1),
            "round_trip_ms": percentiles(latencies), "mean_batch": round(float(np.mean(batch_sizes)), 2)}


def throughput(args, home: Path) -> dict:
    image = observation_image()
    rows = []
    for replicas in (1, 2):
        for batching in (False, True):
            extra = ["--front", args.fronts[0], "--replicas", str(replicas), "--cpus-per-replica", "1"]
            extra += ["--max-batch", "16"] if batching else ["--max-batch", "1"]
            server = Server(*extra, home=home)
            try:
                asyncio.run(robots(server.url, 2, 3.0, image))  # warm-up: both replicas have answered
                for count in (1, 4, 16):
                    row = {"replicas": replicas, "batching": batching,
                           **asyncio.run(robots(server.url, count, args.seconds, image))}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
            finally:
                server.stop()
    return {"rows": rows, "seconds_per_point": args.seconds}


def plot_throughput(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for replicas in (1, 2):
        for batching in (False, True):
            rows = [r for r in results["rows"] if r["replicas"] == replicas and r["batching"] == batching]
            label = f"{replicas} replica{'s' if replicas > 1 else ''}, {'batching' if batching else 'no batching'}"
            style = "-" if batching else "--"
            axes[0].plot([r["robots"] for r in rows], [r["chunks_per_s"] for r in rows], style, marker="o", label=label)
            axes[1].plot([r["robots"] for r in rows], [r["round_trip_ms"]["p95"] for r in rows], style, marker="o",
                         label=label)
    for ax, title in zip(axes, ("chunks per second", "round trip p95, ms")):
        ax.set_xscale("log", base=2)
        ax.set_xticks([1, 4, 16], ["1", "4", "16"])
        ax.set_xlabel("simulated robots")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------------------------------- kill
def kill(args, home: Path) -> dict:
    from std_msgs.msg import String
    from trajectory_msgs.msg import JointTrajectory

    from vla_ros.core import topics
    from vla_ros.graphs.probe import ProbeNode
    from vla_ros.graphs.processes import LaunchedGraph
    from vla_ros.nodes.qos import COMMANDS

    os.environ.setdefault("ROS_DOMAIN_ID", str(150 + os.getpid() % 50))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    trials = []
    for trial in range(args.trials):
        server = Server("--front", args.fronts[0], home=home)
        graph = LaunchedGraph("widowx", "policy_backend:=remote", f"policy_url:={server.url}", f"seed:={trial}")
        probe = ProbeNode(f"bench_remote_kill_{trial}")
        outputs, vetoes = [], []
        probe.node.create_subscription(JointTrajectory, topics.ARM_CONTROLLER,
                                       lambda m: outputs.append(time.monotonic()), COMMANDS)
        probe.node.create_subscription(String, topics.SAFETY_VETO,
                                       lambda m: vetoes.append((time.monotonic(), m.data)), COMMANDS)
        say = probe.node.create_publisher(String, topics.INSTRUCTION, COMMANDS)
        try:
            probe.spin_until(lambda: say.get_subscription_count() > 0
                             and probe.node.count_publishers(topics.ARM_CONTROLLER) > 0, 120, "the graph")
            probe.wait_for_reports(["widowx_sim", "vla_policy", "chunk_executor", "safety_monitor"], 120)
            say.publish(String(data=TASK))
            probe.spin_until(lambda: len(outputs) >= 8, 60, "motion")
            server.kill()
            killed = time.monotonic()
            probe.spin_until(lambda: any(t > killed and "vla_policy" in r for t, r in vetoes), 10, "the hold")
            held = next(t for t, r in vetoes if t > killed and "vla_policy" in r)
            probe.spin_for(1.0)
            forwarded = [t for t in outputs if not any(abs(t - v) < 0.1 for v, _ in vetoes)]
            trial_result = {"last_command_after_kill_s": round(max(forwarded) - killed, 3),
                            "monitor_hold_after_kill_s": round(held - killed, 3),
                            "commands_after_hold": sum(t > held + 0.05 for t in forwarded)}
            trials.append(trial_result)
            print(json.dumps(trial_result), flush=True)
        finally:
            probe.close()
            graph.stop()
            server.stop()
    return {"trials": trials,
            "last_command_after_kill_s_max": max(t["last_command_after_kill_s"] for t in trials),
            "monitor_hold_after_kill_s_max": max(t["monitor_hold_after_kill_s"] for t in trials)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=("latency", "throughput", "kill"))
    parser.add_argument("--requests", type=int, default=300, help="latency: requests per path")
    parser.add_argument("--seconds", type=float, default=8.0, help="throughput: seconds per point")
    parser.add_argument("--trials", type=int, default=3, help="kill: trials")
    parser.add_argument("--fronts", nargs="+", choices=("serve", "replica"), default=["replica", "serve"],
                        help="latency: the fronts to measure; throughput and kill: the first one")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="bench_remote_home_"))  # Ray writes ~/.ray/auth_token on first start
    try:
        results = {"latency": latency, "throughput": throughput, "kill": kill}[args.part](args, home)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    (OUT / f"{args.part}.json").write_text(json.dumps(results, indent=2) + "\n")
    if args.part == "throughput":
        plot_throughput(results, OUT / "throughput.png")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
