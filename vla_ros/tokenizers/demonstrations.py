"""Reading the demonstration data sets the tokenizers train and are evaluated on (robomimic HDF5 layout)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ActionEpisode:
    """What the tokenizers need from one demonstration: its actions and how to replay its task."""

    actions: np.ndarray  # [T, 7] float32
    family: str
    seed: int
    instruction: str
    success: bool


def load_action_episodes(path: str | Path, *, successful_only: bool = True) -> list[ActionEpisode]:
    """Episodes of a data set directory (holding dataset.hdf5) or file, without images."""
    from vla_ros.data.episodes import load_episodes

    episodes = load_episodes(path, successful_only=successful_only, with_images=False)
    return [ActionEpisode(np.asarray(e.actions, np.float32), e.family, e.seed, e.instruction, e.success)
            for e in episodes]


def dataset_split(path: str | Path) -> str:
    """The instruction split ('train' or 'heldout') a data set was generated with; 'train' when unrecorded."""
    import h5py

    from vla_ros.data.episodes import dataset_path

    with h5py.File(dataset_path(path), "r") as f:
        env_args = f["data"].attrs.get("env_args")
    if env_args is None:
        return "train"
    return json.loads(env_args).get("env_kwargs", {}).get("split", "train")
