"""Write demonstrations into one robomimic-layout HDF5 file.

    data/                 attrs: env_args (JSON), total, phases (JSON list)
      demo_{i}/           attrs: instruction, family, seed, success, num_samples, task (JSON)
        actions [T,7] float32, phases [T] int8 (index into PHASES)
        obs/agentview_image [T,H,W,3] uint8 (gzip), joint_pos [T,6], ee_pos [T,3], ee_quat [T,4], gripper [T,1]
        obs/<camera>_image  [T,H,W,3] uint8 (gzip) for each extra camera, named in attrs extra_cameras (JSON list)
    mask/train, mask/valid   demo names (bytes), successful episodes only
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from vla_ros.sim.expert import PHASES
from vla_ros.sim.rollout import Rollout

DATASET_FILE = "dataset.hdf5"
VALID_EVERY = 10  # every 10th successful demo goes to the validation mask


def demo_name(index: int) -> str:
    return f"demo_{index}"


def write_episode(data_group: h5py.Group, index: int, record: Rollout) -> int:
    """Store one episode under data/demo_{index}; returns its number of samples."""
    observations = record.observations[: len(record.actions)]  # the observation before each action
    group = data_group.create_group(demo_name(index))
    group.create_dataset("actions", data=np.stack(record.actions).astype(np.float32))
    group.create_dataset("phases", data=np.asarray(record.phases, dtype=np.int8))
    obs = group.create_group("obs")
    if observations[0].image is not None:
        images = np.stack([o.image for o in observations]).astype(np.uint8)
        obs.create_dataset("agentview_image", data=images, compression="gzip", compression_opts=4,
                           chunks=(1,) + images.shape[1:])
    extra = list(observations[0].cameras)
    for name in extra:
        frames = np.stack([o.cameras[name] for o in observations]).astype(np.uint8)
        obs.create_dataset(f"{name}_image", data=frames, compression="gzip", compression_opts=4,
                           chunks=(1,) + frames.shape[1:])
    obs.create_dataset("joint_pos", data=np.stack([o.joint_pos for o in observations]).astype(np.float32))
    obs.create_dataset("ee_pos", data=np.stack([o.ee_pos for o in observations]).astype(np.float32))
    obs.create_dataset("ee_quat", data=np.stack([o.ee_quat for o in observations]).astype(np.float32))
    obs.create_dataset("gripper", data=np.array([[o.gripper] for o in observations], dtype=np.float32))
    task = record.task
    group.attrs["instruction"] = task.instruction
    group.attrs["family"] = task.family
    group.attrs["seed"] = int(record.seed)
    group.attrs["success"] = bool(record.success)
    group.attrs["num_samples"] = len(record.actions)
    group.attrs["task"] = json.dumps({"family": task.family, "target": task.target, "reference": task.reference,
                                      "direction": task.direction, "instruction": task.instruction})
    if extra:
        group.attrs["extra_cameras"] = json.dumps(extra)
    return len(record.actions)


def write_demo(data_group: h5py.Group, index: int, episode, task: dict | None = None) -> int:
    """Store a `vla_ros.data.episodes.Episode` (an imported demonstration) under data/demo_{index}.

    The layout is write_episode's; besides, attrs `camera` (the primary camera's name, stored as agentview_image),
    `extra_cameras` (JSON list: each stored as obs/<name>_image) and `source` (the bag or data set it came from).
    """
    group = data_group.create_group(demo_name(index))
    group.create_dataset("actions", data=np.asarray(episode.actions, np.float32))
    group.create_dataset("phases", data=np.asarray(episode.phases, dtype=np.int8))
    obs = group.create_group("obs")
    for key, images in (("agentview_image", episode.images),
                        *((f"{name}_image", frames) for name, frames in episode.cameras.items())):
        if images is not None:
            images = np.asarray(images, np.uint8)
            obs.create_dataset(key, data=images, compression="gzip", compression_opts=4, chunks=(1,) + images.shape[1:])
    obs.create_dataset("joint_pos", data=np.asarray(episode.joint_pos, np.float32))
    obs.create_dataset("ee_pos", data=np.asarray(episode.ee_pos, np.float32))
    obs.create_dataset("ee_quat", data=np.asarray(episode.ee_quat, np.float32))
    obs.create_dataset("gripper", data=np.asarray(episode.gripper, np.float32).reshape(-1, 1))
    group.attrs["instruction"] = episode.instruction
    group.attrs["family"] = episode.family
    group.attrs["seed"] = int(episode.seed)
    group.attrs["success"] = bool(episode.success)
    group.attrs["num_samples"] = len(episode.actions)
    group.attrs["task"] = json.dumps(task or {"instruction": episode.instruction})
    group.attrs["camera"] = episode.camera
    group.attrs["extra_cameras"] = json.dumps(list(episode.cameras))
    group.attrs["source"] = episode.source
    return len(episode.actions)


def finalize(path: Path, env_args: dict) -> dict:
    """Write the file-level attributes and the train/valid masks; returns a summary."""
    with h5py.File(path, "a") as f:
        data = f.require_group("data")
        names = sorted(data.keys(), key=lambda n: int(n.split("_")[1]))
        successful = [n for n in names if data[n].attrs["success"]]
        data.attrs["env_args"] = json.dumps(env_args)
        data.attrs["total"] = int(sum(data[n].attrs["num_samples"] for n in names))
        data.attrs["phases"] = json.dumps(list(PHASES))
        valid = successful[VALID_EVERY - 1::VALID_EVERY]
        train = [n for n in successful if n not in set(valid)]
        mask = f.require_group("mask")
        for key, members in (("train", train), ("valid", valid)):
            if key in mask:
                del mask[key]
            mask.create_dataset(key, data=np.array(members, dtype="S"))
        families: dict[str, list[int]] = {}
        for n in names:
            families.setdefault(str(data[n].attrs["family"]), []).append(int(bool(data[n].attrs["success"])))
        return {
            "episodes": len(names),
            "successful": len(successful),
            "success_rate": len(successful) / max(1, len(names)),
            "success_rate_per_family": {k: sum(v) / len(v) for k, v in sorted(families.items())},
            "episodes_per_family": {k: len(v) for k, v in sorted(families.items())},
            "samples": int(data.attrs["total"]),
            "train": len(train),
            "valid": len(valid),
        }
