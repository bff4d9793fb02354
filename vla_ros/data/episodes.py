"""Read demonstrations back from a robomimic-layout data set (see `vla_ros.data.writer`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from vla_ros.data.writer import DATASET_FILE


@dataclass
class Episode:
    """One demonstration: per-step arrays of length T plus what the episode was about."""

    name: str
    actions: np.ndarray  # [T,7] float32, team action convention
    images: np.ndarray | None  # [T,H,W,3] uint8, or None when not loaded
    joint_pos: np.ndarray  # [T,6]
    ee_pos: np.ndarray  # [T,3]
    ee_quat: np.ndarray  # [T,4] (w, x, y, z)
    gripper: np.ndarray  # [T,1] measured opening, 1 = open
    phases: np.ndarray  # [T] index into `phase_names`
    instruction: str
    family: str
    seed: int
    success: bool
    phase_names: tuple[str, ...] = ()
    camera: str = "agentview"  # the primary camera's name (`images`); imported data sets record it
    cameras: dict[str, np.ndarray] = field(default_factory=dict)  # further cameras' frames by name [T,H,W,3]
    source: str = ""  # where an imported episode came from (a bag, a LeRobot episode)


def dataset_path(path: str | Path) -> Path:
    """Accept the data set directory or the HDF5 file itself."""
    path = Path(path)
    if path.is_dir():
        path = path / DATASET_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no data set at {path}: expected a directory holding {DATASET_FILE} or the file itself")
    return path


def load_episodes(path: str | Path, *, successful_only: bool = True, with_images: bool = True) -> list[Episode]:
    """All episodes of a data set in demo order (successful ones only by default)."""
    episodes = []
    with h5py.File(dataset_path(path), "r") as f:
        data = f["data"]
        phase_names = tuple(json.loads(data.attrs["phases"])) if "phases" in data.attrs else ()
        for name in sorted(data.keys(), key=lambda n: int(n.split("_")[1])):
            demo = data[name]
            success = bool(demo.attrs["success"])
            if successful_only and not success:
                continue
            obs = demo["obs"]
            images = obs["agentview_image"][()] if with_images and "agentview_image" in obs else None
            extra = json.loads(demo.attrs.get("extra_cameras", "[]"))
            cameras = {name: obs[f"{name}_image"][()] for name in extra} if with_images else {}
            episodes.append(Episode(
                name=name, actions=demo["actions"][()], images=images, joint_pos=obs["joint_pos"][()],
                ee_pos=obs["ee_pos"][()], ee_quat=obs["ee_quat"][()], gripper=obs["gripper"][()],
                phases=demo["phases"][()].astype(np.int64), instruction=str(demo.attrs["instruction"]),
                family=str(demo.attrs["family"]), seed=int(demo.attrs["seed"]), success=success,
                phase_names=phase_names, camera=str(demo.attrs.get("camera", "agentview")), cameras=cameras,
                source=str(demo.attrs.get("source", ""))))
    return episodes


def action_statistics(episodes: list[Episode]) -> dict[str, list[float]]:
    """Per-dimension q01, q99, mean, std, min, max of the actions of all episodes."""
    if not episodes:
        raise ValueError("no episodes to compute action statistics from")
    actions = np.concatenate([e.actions for e in episodes]).astype(np.float64)
    return {
        "q01": np.quantile(actions, 0.01, axis=0).tolist(),
        "q99": np.quantile(actions, 0.99, axis=0).tolist(),
        "mean": actions.mean(axis=0).tolist(),
        "std": actions.std(axis=0).tolist(),
        "min": actions.min(axis=0).tolist(),
        "max": actions.max(axis=0).tolist(),
    }
