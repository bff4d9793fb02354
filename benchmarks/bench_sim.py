"""Measure the simulated workcell: expert success per family, IK accuracy, simulation speed, generation cost.

    MUJOCO_GL=egl LP_NUM_THREADS=1 python benchmarks/bench_sim.py [--episodes 200] [--gen-episodes 100]

Writes runs/bench_sim/results.json and runs/bench_sim/results.png; paste the table into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("LP_NUM_THREADS", "1")  # software GL on one core, like the physics

import mujoco  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from vla_ros.data.generate import generate_dataset  # noqa: E402
from vla_ros.sim.expert import ScriptedExpert  # noqa: E402
from vla_ros.robot.kinematics import ArmKinematics, rotation_error  # noqa: E402
from vla_ros.sim.rollout import expert_rollout  # noqa: E402
from vla_ros.sim.tasks import FAMILIES  # noqa: E402
from vla_ros.sim.workcell import Workcell  # noqa: E402


def expert_success(episodes: int) -> dict:
    results = {}
    with Workcell(render=False) as workcell:
        for f_index, family in enumerate(FAMILIES):
            successes, lengths, failures = 0, [], []
            for i in tqdm(range(episodes), desc=f"expert {family}", unit="ep"):
                seed = 200_000 + f_index * 10_000 + i
                record = expert_rollout(workcell, seed, family=family)
                successes += record.success
                lengths.append(len(record.actions))
                if not record.success:
                    failures.append(seed)
            results[family] = {"episodes": episodes, "success_rate": successes / episodes,
                               "mean_steps": float(np.mean(lengths)), "max_steps": int(np.max(lengths)),
                               "failed_seeds": failures}
    return results


def ik_accuracy(targets: int) -> dict:
    """Targets are FK of random joint vectors (so reachable); IK starts from the home configuration."""
    kin = ArmKinematics()
    rng = np.random.default_rng(0)
    low = np.maximum(kin.joint_limits[:, 0], -1.5)
    high = np.minimum(kin.joint_limits[:, 1], 1.5)
    home = np.array([0.0, -0.3, 0.3, 0.0, 1.5, 0.0])
    pos_errs, rot_errs, times = [], [], []
    for _ in tqdm(range(targets), desc="IK", unit="target"):
        pos, rot = kin.fk(rng.uniform(low, high))
        start = time.perf_counter()
        result = kin.ik(home, pos, rot, random_restarts=16)
        times.append(time.perf_counter() - start)
        got_pos, got_rot = kin.fk(result.q)
        pos_errs.append(np.linalg.norm(got_pos - pos))
        rot_errs.append(np.linalg.norm(rotation_error(rot, got_rot)))
    pos_errs, rot_errs = np.array(pos_errs), np.array(rot_errs)
    within = (pos_errs < 0.005) & (rot_errs < np.radians(2))
    return {"targets": targets, "within_5mm_2deg": int(within.sum()),
            "median_pos_err_mm": float(np.median(pos_errs) * 1e3),
            "max_pos_err_mm_of_reached": float(pos_errs[within].max() * 1e3),
            "median_rot_err_deg": float(np.degrees(np.median(rot_errs))),
            "mean_solve_ms": float(np.mean(times) * 1e3), "p95_solve_ms": float(np.percentile(times, 95) * 1e3)}


def speed(control_steps: int = 300) -> dict:
    out = {}
    with Workcell(image_size=128, render=False) as workcell:
        expert = ScriptedExpert()
        workcell.reset(5, family="stack")
        # raw physics, arm holding a pose over the table with objects resting on it
        n = 20_000
        start = time.perf_counter()
        mujoco.mj_step(workcell.model, workcell.data, nstep=n)
        out["physics_steps_per_s"] = n / (time.perf_counter() - start)
        for render in (False, True):
            steps, elapsed, seed = 0, 0.0, 0
            while steps < control_steps:
                workcell.reset(seed, family=FAMILIES[seed % 4])
                seed += 1
                for _ in range(20):
                    action, _ = expert.act(workcell)
                    start = time.perf_counter()
                    workcell.step(action, render=render)
                    elapsed += time.perf_counter() - start
                    steps += 1
            key = "control_steps_per_s_render_128" if render else "control_steps_per_s_no_render"
            out[key] = steps / elapsed
        start = time.perf_counter()
        for _ in range(200):
            workcell.render()
        out["render_only_fps_128"] = 200 / (time.perf_counter() - start)
    out["physics_steps_per_control_step"] = int(round(0.2 / 0.002))
    return out


def generation(episodes: int, out: Path) -> dict:
    target = out / "gen_tmp"
    shutil.rmtree(target, ignore_errors=True)
    summary = generate_dataset(target, episodes, seed=300_000, workers=1)
    shutil.rmtree(target, ignore_errors=True)
    return {"episodes": episodes, "seconds": summary["seconds"], "bytes": summary["bytes"],
            "success_rate": summary["success_rate"], "samples": summary["samples"],
            "seconds_per_1000_extrapolated": summary["seconds"] * 1000 / episodes,
            "bytes_per_1000_extrapolated": summary["bytes"] * 1000 / episodes}


def plot(results: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    rates = [results["expert"][f]["success_rate"] * 100 for f in FAMILIES]
    axes[0].bar(FAMILIES, rates, color="tab:green")
    axes[0].axhline(97, color="k", ls="--", lw=1, label="target 97%")
    axes[0].set_ylim(80, 100.5)
    axes[0].set_ylabel("expert success (%)")
    axes[0].legend(loc="lower right")
    axes[0].set_title(f"{results['expert'][FAMILIES[0]]['episodes']} episodes per family")
    s = results["speed"]
    names = ["step, no render", "step + render 128"]
    axes[1].bar(names, [s["control_steps_per_s_no_render"], s["control_steps_per_s_render_128"]])
    axes[1].set_ylabel("5 Hz control steps per second")
    axes[1].set_title(f"{s['physics_steps_per_s']:.0f} physics steps/s")
    fig.tight_layout()
    fig.savefig(png, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=200, help="expert episodes per family")
    parser.add_argument("--ik-targets", type=int, default=200)
    parser.add_argument("--gen-episodes", type=int, default=100, help="episodes for the generation timing")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_sim"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"ik": ik_accuracy(args.ik_targets), "speed": speed(), "expert": expert_success(args.episodes)}
    if args.gen_episodes:
        results["generation"] = generation(args.gen_episodes, args.out)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.out / "results.png")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
