"""Generate a demonstration data set with the scripted expert, optionally across worker processes or a Ray cluster.

Episode i always uses seed `seed + i` and task family FAMILIES[i % 4], and shards are merged in
episode order, so the result depends on the seed only, not on the number of workers. With a Ray address,
episodes are Ray tasks on `DemoRecorder` actors (`vla_ros.cluster`) that return each recording to this process,
which writes them in episode order: the same file as a local run.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import shutil
import time
from pathlib import Path

import h5py
import numpy as np

from vla_ros.core.settings import CONTROL_RATE_HZ

from vla_ros.data.writer import DATASET_FILE, finalize, write_episode

ENV_NAME = "vla_ros/WidowX250Workcell-v1"
BAGS_DIR = "bags"


def noisy_episode(index: int, seed: int, share: float) -> bool:
    """Whether episode `index` is recorded with perturbed execution; depends on the seed only."""
    return share > 0 and bool(np.random.default_rng([seed, index, 1]).random() < share)


def episode_plan(episodes: int, seed: int) -> list[tuple[int, int, str]]:
    """(index, seed, family) of every episode."""
    from vla_ros.sim.tasks import FAMILIES

    return [(i, seed + i, FAMILIES[i % len(FAMILIES)]) for i in range(episodes)]


class DemoRecorder:
    """Records expert episodes by (index, seed, family) in one workcell; the same object runs locally and in Ray."""

    def __init__(self, image_size: int, camera: str, split: str, max_steps: int,
                 noise: tuple[float, float, int] = (0.0, 0.0, 0), scene: str = "default",
                 interpolate_commands: bool = False, extra_cameras: tuple[str, ...] = ()):
        from vla_ros.sim.workcell import Workcell

        self.workcell = Workcell(image_size=image_size, camera=camera, render=True, split=split, scene=scene,
                                 extra_cameras=tuple(extra_cameras))
        self.max_steps, self.noise, self.interpolate_commands = max_steps, noise, interpolate_commands

    def record(self, index: int, episode_seed: int, family: str):
        from vla_ros.sim.noise import ActionNoise
        from vla_ros.sim.rollout import expert_rollout

        sigma, share, base_seed = self.noise
        perturb = ActionNoise(sigma, seed=episode_seed) if noisy_episode(index, base_seed, share) else None
        return expert_rollout(self.workcell, episode_seed, family=family, max_steps=self.max_steps, perturb=perturb,
                              interpolate_commands=self.interpolate_commands)

    def close(self) -> None:
        self.workcell.close()


def _store(data, index: int, record, bags_dir: Path | None, bag_storage: str) -> None:
    from vla_ros.robot.wx250s import ARM_JOINTS

    write_episode(data, index, record)
    if bags_dir is not None:
        from vla_ros.bags.episodes import write_episode_bag

        write_episode_bag(bags_dir / episode_bag_name(index), record, ARM_JOINTS, storage=bag_storage)


def _write_shard(path: Path, plan: list[tuple[int, int, str]], image_size: int, camera: str, split: str,
                 max_steps: int, progress=None, bags_dir: Path | None = None, bag_storage: str = "mcap",
                 noise: tuple[float, float, int] = (0.0, 0.0, 0), recordings=None, scene: str = "default",
                 interpolate_commands: bool = False, extra_cameras: tuple[str, ...] = ()) -> None:
    """Write `plan`'s episodes to `path`; `recordings` (an iterator of Rollouts in plan order) replaces recording
    them here (a Ray run)."""
    recorder = None if recordings is not None else DemoRecorder(image_size, camera, split, max_steps, noise, scene,
                                                                interpolate_commands, extra_cameras)
    if recordings is None:
        recordings = (recorder.record(*entry) for entry in plan)
    try:
        with h5py.File(path, "w") as f:
            data = f.create_group("data")
            for (index, _, _), record in zip(plan, recordings):
                _store(data, index, record, bags_dir, bag_storage)
                if progress is not None:
                    progress(bool(record.success))
    finally:
        if recorder is not None:
            recorder.close()


def _shard_worker(path: str, plan, image_size, camera, split, max_steps, queue, bags_dir, bag_storage, noise,
                  scene, interpolate_commands, extra_cameras) -> None:
    _write_shard(Path(path), plan, image_size, camera, split, max_steps, progress=queue.put,
                 bags_dir=None if bags_dir is None else Path(bags_dir), bag_storage=bag_storage, noise=noise,
                 scene=scene, interpolate_commands=interpolate_commands, extra_cameras=extra_cameras)


def episode_bag_name(index: int) -> str:
    return f"episode_{index:06d}"


def generate_dataset(out_dir: str | Path, episodes: int, seed: int = 0, workers: int = 1, image_size: int = 128,
                     camera: str = "over_shoulder", split: str = "train", max_steps: int = 80,
                     show_progress: bool = True, bags: bool = False, bag_storage: str = "mcap",
                     noise: float = 0.0, noisy_share: float = 0.75, ray_address: str | None = None,
                     scene: str = "default", interpolate_commands: bool = False,
                     extra_cameras: tuple[str, ...] = ()) -> dict:
    """Write DIR/dataset.hdf5, DIR/generation.json and DIR/preview.png; returns the summary.

    `scene` is a set-up shift of the workcell (`vla_ros.sim.scenes`), recorded in env_args' env_kwargs.
    With `interpolate_commands` the arm follows each command over its reach time, as the graph's simulator and
    a trajectory controller do (`vla_ros.sim.rollout.rollout`), also recorded there.

    With `noise` > 0, a `noisy_share` of the episodes (chosen from the seed) executes the expert's
    actions perturbed by `ActionNoise(noise)` while recording the unperturbed ones (DART).

    With `bags`, every episode is also written as a rosbag2 bag DIR/bags/episode_NNNNNN
    (see `vla_ros.bags.episodes`); an existing DIR/bags is replaced.

    `extra_cameras` (e.g. ("wrist",)) are recorded beside `camera` as obs/<name>_image, named in each demo's
    attrs extra_cameras and in env_args' env_kwargs (a policy with a second view trains on them).

    With `ray_address` (a cluster's address, 'auto', or 'local' for a new local one) the episodes run as Ray tasks
    instead of `workers` local processes; the data set is the same.
    """
    from tqdm import tqdm

    from vla_ros.sim.settings import CAMERAS, SCENES

    extra_cameras = tuple(extra_cameras)
    for name in (camera, *extra_cameras):
        if name not in CAMERAS:
            raise ValueError(f"camera {name!r} is not one of {', '.join(CAMERAS)}")
    if camera in extra_cameras or len(set(extra_cameras)) != len(extra_cameras):
        raise ValueError(f"extra cameras {list(extra_cameras)} repeat a camera (the primary one is {camera!r})")
    if scene not in SCENES:
        raise ValueError(f"scene {scene!r} is not one of {', '.join(SCENES)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / DATASET_FILE
    if not 0.0 <= noisy_share <= 1.0:
        raise ValueError(f"noisy_share must lie in [0, 1], got {noisy_share!r}")
    noise_spec = (float(noise), float(noisy_share), int(seed))
    plan = episode_plan(episodes, seed)
    workers = max(1, min(workers, episodes))
    bags_dir = out_dir / BAGS_DIR if bags else None
    if bags_dir is not None:
        shutil.rmtree(bags_dir, ignore_errors=True)
        bags_dir.mkdir()
    start = time.perf_counter()
    bar = tqdm(total=episodes, desc="episodes", unit="ep", disable=not show_progress)
    counts = {"done": 0, "successes": 0}

    def tick(success: bool) -> None:
        counts["done"] += 1
        counts["successes"] += success
        bar.update(1)
        bar.set_postfix(success=f"{counts['successes'] / counts['done']:.0%}")

    if ray_address:
        from vla_ros.cluster import ordered_results, ray_cluster

        tmp = target.with_suffix(".partial")
        with ray_cluster(ray_address):
            recordings = ordered_results(DemoRecorder, (image_size, camera, split, max_steps, noise_spec, scene,
                                                        interpolate_commands, extra_cameras), plan, method="record")
            _write_shard(tmp, plan, image_size, camera, split, max_steps, progress=tick, bags_dir=bags_dir,
                         bag_storage=bag_storage, noise=noise_spec, recordings=recordings, scene=scene)
        tmp.replace(target)
        workers = None
    elif workers == 1:
        tmp = target.with_suffix(".partial")
        _write_shard(tmp, plan, image_size, camera, split, max_steps, progress=tick, bags_dir=bags_dir,
                     bag_storage=bag_storage, noise=noise_spec, scene=scene, interpolate_commands=interpolate_commands,
                     extra_cameras=extra_cameras)
        tmp.replace(target)
    else:
        shard_dir = out_dir / ".shards"
        shard_dir.mkdir(exist_ok=True)
        chunks = [list(c) for c in np.array_split(np.arange(episodes), workers)]
        context = mp.get_context("spawn")  # a fresh interpreter per worker: no forked GL/MuJoCo state
        queue = context.Queue()
        shard_paths = [shard_dir / f"shard_{k}.hdf5" for k in range(workers)]
        processes = [context.Process(target=_shard_worker,
                                     args=(str(p), [plan[i] for i in chunk], image_size, camera, split, max_steps,
                                           queue, None if bags_dir is None else str(bags_dir), bag_storage,
                                           noise_spec, scene, interpolate_commands, extra_cameras))
                     for p, chunk in zip(shard_paths, chunks)]
        for process in processes:
            process.start()
        done = 0
        while done < episodes:
            try:
                tick(queue.get(timeout=5.0))
                done += 1
            except Exception:  # queue.Empty: check that no worker died
                if any(p.exitcode not in (None, 0) for p in processes):
                    raise RuntimeError("a data generation worker failed; see its traceback above")
        for process in processes:
            process.join()
        with h5py.File(target.with_suffix(".partial"), "w") as merged:
            data = merged.create_group("data")
            for shard in shard_paths:
                with h5py.File(shard, "r") as f:
                    for name in sorted(f["data"].keys(), key=lambda n: int(n.split("_")[1])):
                        f.copy(f["data"][name], data, name=name)
        target.with_suffix(".partial").replace(target)
        shutil.rmtree(shard_dir)
    bar.close()
    env_args = {"env_name": ENV_NAME, "type": "mujoco",
                "env_kwargs": {"image_size": image_size, "camera": camera, "scene": scene,
                               "control_hz": CONTROL_RATE_HZ, "split": split,
                               "seed": seed, "max_steps": max_steps, "noise": float(noise),
                               "noisy_share": float(noisy_share) if noise > 0 else 0.0,
                               "interpolate_commands": bool(interpolate_commands),
                               "extra_cameras": list(extra_cameras)}}
    summary = finalize(target, env_args)
    summary.update({"seconds": time.perf_counter() - start, "workers": workers or f"ray {ray_address}",
                    "seed": seed, "split": split, "scene": scene,
                    "noise": env_args["env_kwargs"]["noise"], "noisy_share": env_args["env_kwargs"]["noisy_share"],
                    "bytes": target.stat().st_size, "path": str(target)})
    if bags_dir is not None:
        summary.update({"bags_dir": str(bags_dir), "bags": len(list(bags_dir.iterdir())), "bag_storage": bag_storage,
                        "bag_bytes": sum(f.stat().st_size for f in bags_dir.rglob("*") if f.is_file())})
    (out_dir / "generation.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_preview(target, out_dir / "preview.png")
    return summary


def write_preview(dataset: Path, png: Path, count: int = 6) -> None:
    """A contact sheet: first, middle and last frame of the first few demos, instruction written above."""
    import cv2
    import imageio.v3 as iio

    rows = []
    with h5py.File(dataset, "r") as f:
        names = sorted(f["data"].keys(), key=lambda n: int(n.split("_")[1]))[:count]
        for name in names:
            demo = f["data"][name]
            if "agentview_image" not in demo["obs"]:
                return
            images = demo["obs"]["agentview_image"]
            frames = [images[0], images[len(images) // 2], images[-1]]
            row = np.concatenate([cv2.resize(fr, (192, 192), interpolation=cv2.INTER_NEAREST) for fr in frames], 1)
            label = np.full((22, row.shape[1], 3), 255, np.uint8)
            text = f"{name}: {demo.attrs['instruction']} [{'ok' if demo.attrs['success'] else 'FAIL'}]"
            cv2.putText(label, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
            rows.append(np.concatenate([label, row], 0))
    if rows:
        iio.imwrite(png, np.concatenate(rows, 0))
