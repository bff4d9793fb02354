"""What watching costs the robot: the widowx graph with no viewer, with `vla-ros view` serving, and with the view
open in headless Chromium.

Each condition starts the whole simulated graph afresh, waits until every node reports and the policy drives the
arm, lets it settle, starts the viewer (and the browser) and then runs tasks (reset to an unseen layout, say the
instruction, up to 20 s each) for `--seconds`. Read from /diagnostics at the end: the executor's control-period
jitter and observation-to-command latency (over the executor's whole run, start-up included, the same protocol in
every condition), the policy's inference latency (its last 200 inferences), the simulator's real-time factor; and,
for the measured window only, the spacing of /vla/arm_command as a subscriber receives it, and the CPU the viewer
and the browser took. With --screenshot, the browser condition saves the page (the README's picture).

Writes runs/bench_viewer/results.json and results.md. Usage:
    MUJOCO_GL=egl python benchmarks/bench_viewer.py [--seconds 60] [--screenshot docs/images/viewer.png]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "test"))  # the DevTools driver the browser test uses
sys.path.insert(0, str(REPO / "benchmarks"))
from vla_ros.core.ports import free_port  # noqa: E402
FAMILIES = ("pick", "place", "stack", "push")
CONDITIONS = ("no viewer", "viewer", "viewer + browser")
TASK_SECONDS = 20.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (psutil comes with rerun-sdk)."""
    import psutil

    try:
        process = psutil.Process(pid)
        total = sum(process.cpu_times()[:2])
        for child in process.children(recursive=True):
            try:
                total += sum(child.cpu_times()[:2])
            except psutil.NoSuchProcess:
                pass
        return total
    except psutil.NoSuchProcess:
        return float("nan")


def start_viewer() -> tuple[subprocess.Popen, str]:
    web_port, grpc_port = free_port(), free_port()
    viewer = subprocess.Popen([sys.executable, "-m", "vla_ros.cli", "view", "--viewer", "web", "--web-port",
                               str(web_port), "--grpc-port", str(grpc_port)], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while True:
        line = viewer.stdout.readline()
        match = re.search(r"open (http://\S+)", line or "")
        if match:
            return viewer, match.group(1)
        if not line or time.monotonic() > deadline:
            raise RuntimeError(f"the viewer did not start: {line!r}")


def run(condition: str, seconds: float, settle: float, screenshot: Path | None) -> dict:
    from bench_closed_loop import DiagnosticsSampler
    from trajectory_msgs.msg import JointTrajectory

    from vla_ros.core import topics
    from vla_ros.graphs.probe import ProbeNode
    from vla_ros.graphs.processes import LaunchedGraph
    from vla_ros.graphs.sim_session import SimGraphSession
    from vla_ros.nodes.qos import COMMANDS

    graph = LaunchedGraph("widowx")
    probe = ProbeNode("bench_viewer")
    viewer = browser = None
    arrivals: list[float] = []
    try:
        session = SimGraphSession(probe, REPO / "runs/bench_viewer")
        sampler = DiagnosticsSampler(probe)
        probe.node.create_subscription(JointTrajectory, topics.ARM_COMMAND,
                                       lambda _m: arrivals.append(time.monotonic()), COMMANDS)
        probe.spin_until(session.ready, 180, "every node of the graph")
        session.run_task("pick", 1_000_000, settle)
        if condition != "no viewer":
            viewer, url = start_viewer()
            if condition == "viewer + browser":
                from browser import HeadlessChromium, save_png
                from test_viewer_browser import looks_ready

                browser = HeadlessChromium()
                browser.open(url)
                image, waited = browser.wait_for(lambda image: (probe.spin_for(0.2), looks_ready(image))[1], 90)
                print(f"  page ready after {waited:.1f} s", flush=True)
                if screenshot is not None:
                    save_png(image, screenshot)
        viewer_cpu0 = cpu_seconds(viewer.pid) if viewer else 0.0
        browser_cpu0 = cpu_seconds(browser.process.pid) if browser else 0.0
        arrivals.clear()
        started, index, outcomes, load = time.monotonic(), 1, [], []
        while time.monotonic() - started < seconds:
            family = FAMILIES[index % len(FAMILIES)]
            left = seconds - (time.monotonic() - started)
            outcome = session.run_task(family, 1_000_000 + index, min(TASK_SECONDS, max(2.0, left)))
            outcomes.append(bool(outcome.get("success")))
            load.append(os.getloadavg()[0])
            index += 1
        window = time.monotonic() - started
        viewer_cpu = (cpu_seconds(viewer.pid) - viewer_cpu0) / window if viewer else None
        browser_cpu = (cpu_seconds(browser.process.pid) - browser_cpu0) / window if browser else None
        probe.spin_for(2.5)  # one more round of diagnostics with the final figures
        executor, policy = sampler.node("chunk_executor"), sampler.node("vla_policy")
        if browser is not None and screenshot is not None:
            picture(session, browser, graph, probe, screenshot)
    finally:
        if browser is not None:
            browser.close()
        if viewer is not None and viewer.poll() is None:
            os.killpg(viewer.pid, signal.SIGINT)
            try:
                viewer.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(viewer.pid, signal.SIGKILL)
        probe.close()
        graph.stop()
    gaps = np.diff(arrivals) * 1e3 if len(arrivals) > 2 else np.array([np.nan])
    period_ms = 200.0

    def number(values: dict, key: str):
        value = values.get(key)
        return float(value) if value not in (None, "", "nan") else None

    return {
        "condition": condition, "seconds": round(window, 1), "tasks": len(outcomes), "successes": sum(outcomes),
        "period_jitter_ms_p50": number(executor, "period_jitter_ms_p50"),
        "period_jitter_ms_p95": number(executor, "period_jitter_ms_p95"),
        "period_jitter_ms_p99": number(executor, "period_jitter_ms_p99"),
        "obs_to_command_ms_p50": number(executor, "obs_to_command_latency_ms_p50"),
        "obs_to_command_ms_p95": number(executor, "obs_to_command_latency_ms_p95"),
        "policy_latency_ms_p50": number(policy, "latency_p50_ms"),
        "policy_latency_ms_p95": number(policy, "latency_p95_ms"),
        "policy_latency_ms_max": number(policy, "latency_ms_max"),
        "real_time_factor_mean": round(float(np.mean(sampler.rtf[-20:])), 3) if sampler.rtf else None,
        "command_gap_jitter_ms_p95": round(float(np.percentile(np.abs(gaps[gaps < 1.5 * period_ms] - period_ms), 95)),
                                           2) if np.isfinite(gaps).all() else None,
        "commands": len(arrivals),
        "viewer_cpu_share": round(viewer_cpu, 3) if viewer_cpu is not None else None,
        "browser_cpu_share": round(browser_cpu, 3) if browser_cpu is not None else None,
        "load_average_mean": round(float(np.mean(load)), 2) if load else None,
    }


def picture(session, browser, graph, probe, path: Path) -> None:
    """The README's picture: a task under way, then the graph stops and the page (software-rendered, behind the
    live data on these two cores) is saved once two screenshots 5 s apart are the same."""
    from rclpy.parameter import Parameter
    from std_srvs.srv import Trigger

    from browser import save_png

    future = session.sim_parameters.set_parameters([Parameter("family", value="place"),
                                                    Parameter("seed", value=1_000_021)])
    probe.spin_until(future.done, 10, "the simulator's parameters")
    future = session.reset.call_async(Trigger.Request())
    probe.spin_until(future.done, 10, "the simulator's reset")
    instruction = future.result().message.split("suggested task '", 1)[1].rstrip("'")
    session.instruction_pub.publish(session.String(data=instruction))
    probe.spin_for(7.0)
    graph.stop()
    previous, deadline = None, time.monotonic() + 180
    while time.monotonic() < deadline:
        time.sleep(5.0)
        image = browser.wait_for(lambda image: True, 30)[0]
        if previous is not None and np.array_equal(image, previous):
            break
        previous = image
    save_png(image, path)


def table(results: list[dict]) -> str:
    lines = ["| condition | jitter p50 / p95 / p99 | obs→command p50 / p95 | policy p50 / p95 / max | command spacing "
             "jitter p95 | RTF | viewer CPU | browser CPU | load |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        def ms(*keys):
            return " / ".join("–" if r[k] is None else f"{r[k]:.1f}" for k in keys) + " ms"

        def share(key):
            return "–" if r[key] is None else f"{100 * r[key]:.0f} %"

        lines.append(f"| {r['condition']} | {ms('period_jitter_ms_p50', 'period_jitter_ms_p95', 'period_jitter_ms_p99')}"
                     f" | {ms('obs_to_command_ms_p50', 'obs_to_command_ms_p95')} | "
                     f"{ms('policy_latency_ms_p50', 'policy_latency_ms_p95', 'policy_latency_ms_max')} | "
                     f"{ms('command_gap_jitter_ms_p95')} | {r['real_time_factor_mean']} | {share('viewer_cpu_share')} | "
                     f"{share('browser_cpu_share')} | {r['load_average_mean']} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="measured time per condition (default 60)")
    parser.add_argument("--settle", type=float, default=15.0, help="seconds of a first task before measuring")
    parser.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=list(CONDITIONS))
    parser.add_argument("--screenshot", type=Path, default=None, help="save the browser's page here (PNG)")
    parser.add_argument("--out", type=Path, default=REPO / "runs/bench_viewer")
    args = parser.parse_args()
    os.environ.setdefault("ROS_DOMAIN_ID", str(150 + os.getpid() % 30))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("MUJOCO_GL", "egl")
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for condition in args.conditions:
        print(f"{condition}: {args.seconds:g} s", flush=True)
        results.append(run(condition, args.seconds, args.settle, args.screenshot))
        print(json.dumps(results[-1]), flush=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "results.md").write_text(table(results))
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
