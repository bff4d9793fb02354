"""Training's peak memory against data-set size: frames read per batch from the HDF5 file vs held in memory.

Builds data sets of N episodes by copying the episodes of a generated one (HDF5 object copies: the compressed
frame chunks are copied as they are, so a 4000-episode file takes seconds), then in a fresh process per size:

- `lazy`: what `vla-ros train` does now: the small per-step arrays in memory, frames read by DataLoader
  workers (`Hdf5Frames`); a short `train_policy` run (default 30 steps);
- `in-memory`: every frame loaded and concatenated into one array, as training did before (`load_split` with
  frames, `build_training_set` over episodes that hold them; measured up to --in-memory-max episodes).

Peak memory is the resident high-water mark of the training process (ru_maxrss), plus that of its DataLoader
worker for the lazy runs (an upper bound: the forked worker's resident pages include ones it shares with its parent).
Writes OUT/results.json and OUT/memory.png. Usage:

    MUJOCO_GL=egl python benchmarks/bench_training_memory.py [--source runs/adapt/data_camera_shift]
        [--sizes 250 1000 4000] [--in-memory-max 1000] [--out runs/bench_memory]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=REPO / "runs" / "adapt" / "data_camera_shift",
                        help="a generated data set whose episodes are copied")
    parser.add_argument("--sizes", nargs="+", type=int, default=[250, 1000, 4000], help="episodes per data set")
    parser.add_argument("--in-memory-max", type=int, default=1000, help="largest size measured in memory")
    parser.add_argument("--steps", type=int, default=30, help="training steps of the lazy runs")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench_memory", help="output directory")
    parser.add_argument("--measure", nargs=3, metavar=("MODE", "DATA", "OUT"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def build(source: Path, episodes: int, out: Path) -> Path:
    """A data set of `episodes` demos: the source's successful demos over and over (masks: every 10th valid)."""
    import h5py
    import numpy as np

    from vla_ros.data.writer import DATASET_FILE

    target = out / f"data_{episodes}"
    if (target / DATASET_FILE).is_file():
        return target
    target.mkdir(parents=True, exist_ok=True)
    with h5py.File(source / DATASET_FILE, "r") as src, h5py.File(target / DATASET_FILE, "w") as dst:
        names = [n for n in sorted(src["data"], key=lambda n: int(n.split("_")[1])) if src["data"][n].attrs["success"]]
        data = dst.create_group("data")
        for key, value in src["data"].attrs.items():
            data.attrs[key] = value
        for index in range(episodes):
            src.copy(src["data"][names[index % len(names)]], data, name=f"demo_{index}")
        members = [f"demo_{i}" for i in range(episodes)]
        mask = dst.create_group("mask")
        mask.create_dataset("train", data=np.array([m for i, m in enumerate(members) if i % 10 != 9], dtype="S"))
        mask.create_dataset("valid", data=np.array([m for i, m in enumerate(members) if i % 10 == 9], dtype="S"))
    return target


def measure(mode: str, data: Path, out: Path) -> dict:
    """In this (fresh) process: the peak memory of one way of holding the training data."""
    import resource

    import numpy as np

    from vla_ros.policy.training import load_split, train_policy

    if mode == "lazy":
        from vla_ros.policy.recipe import TrainRecipe

        recipe = TrainRecipe(steps=int(os.environ.get("BENCH_STEPS", "30")), batch_size=64, eval_every=10_000,
                             checkpoint_every=10_000)
        report = train_policy(data, REPO / "models/policy/vla/tokenizer", out, recipe, progress=False,
                              export_onnx=False, workers=1)
        samples = report["train_samples"]
    else:
        from vla_ros.policy.modeling_vla import VLAPolicy
        from vla_ros.policy.training_data import build_training_set

        train, valid = load_split(data)
        policy = VLAPolicy.from_pretrained(REPO / "models/policy/vla")
        held = build_training_set(train, policy.tokenizer, policy.vocab)
        frames = np.concatenate(held.images.per_episode)  # the one array the loop indexed before
        samples = len(frames)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    return {"mode": mode, "samples": int(samples), "peak_mb": round(own, 1), "workers_peak_mb": round(children, 1)}


def main(argv=None) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")
    args = parse_args(argv)
    if args.measure:
        mode, data, out = args.measure
        print(json.dumps(measure(mode, Path(data), Path(out))))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    results_file = args.out / "results.json"
    rows = json.loads(results_file.read_text())["rows"] if results_file.is_file() else []  # kept: a re-run resumes
    for size in args.sizes:
        data = build(args.source, size, args.out)
        for mode in ("lazy", "in-memory"):
            if (mode == "in-memory" and size > args.in_memory_max) or \
                    any(r["episodes"] == size and r["mode"] == mode for r in rows):
                continue
            done = subprocess.run([sys.executable, __file__, "--measure", mode, str(data), str(args.out / "run")],
                                  capture_output=True, text=True, env={**os.environ, "BENCH_STEPS": str(args.steps)})
            if done.returncode:
                raise SystemExit(done.stderr[-2000:])
            row = {"episodes": size, **json.loads(done.stdout.strip().splitlines()[-1])}
            rows.append(row)
            print(row, flush=True)
            save(results_file, rows)
    save(results_file, rows)
    plot(args.out / "memory.png", sorted(rows, key=lambda r: r["episodes"]))
    return 0


def save(path: Path, rows: list[dict]) -> None:
    results = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
               "rows": sorted(rows, key=lambda r: (r["mode"], r["episodes"]))}
    path.write_text(json.dumps(results, indent=2) + "\n")


def plot(path: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for mode in ("lazy", "in-memory"):
        # lazy: the training process plus its DataLoader worker (whose resident pages include copy-on-write ones
        # shared with the parent, so the sum is an upper bound); in-memory runs no workers
        points = [(r["episodes"], (r["peak_mb"] + (r["workers_peak_mb"] if mode == "lazy" else 0.0)) / 1024.0)
                  for r in rows if r["mode"] == mode]
        if points:
            ax.plot(*zip(*points), "o-", label=mode)
    ax.axhline(4.0, color="grey", ls=":", label="4 GB")
    ax.set_xlabel("episodes")
    ax.set_ylabel("peak memory, training + workers (GB)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
