"""The data set kinds `vla-ros train` reads, told apart by what a path holds, and their episodes.

- `hdf5`: our robomimic-layout data set (`DIR/dataset.hdf5`, from `data generate` or `data import`);
- `lerobot`: a LeRobotDataset v3.0 or v2.1 directory (`meta/info.json`, from `data export --format lerobot` or the
  Hub);
- `bags`: rosbag2 demonstration bags (`vla-ros record-demos`), imported in memory with the default contract.
"""

from __future__ import annotations

from pathlib import Path

from vla_ros.data.episodes import Episode

HDF5, LEROBOT, BAGS = "hdf5", "lerobot", "bags"


def dataset_kind(path: str | Path) -> str:
    """Which kind of data set `path` is; raises ValueError with one sentence when it is none of them."""
    from vla_ros.data.lerobot import is_lerobot  # noqa: PLC0415
    from vla_ros.data.writer import DATASET_FILE  # noqa: PLC0415

    path = Path(path)
    if (path / DATASET_FILE).is_file() or (path.is_file() and path.suffix in (".hdf5", ".h5")):
        return HDF5
    if is_lerobot(path):
        return LEROBOT
    if (path.is_file() and path.suffix in (".mcap", ".db3")) or (path.is_dir() and any(path.rglob("metadata.yaml"))):
        return BAGS
    raise ValueError(f"{path} is not a data set vla-ros can read: give a directory holding dataset.hdf5 (data "
                     "generate, data import), a LeRobotDataset (meta/info.json) or demonstration bags (record-demos)")


def load_dataset_episodes(path: str | Path, *, successful_only: bool = True, with_images: bool = True,
                          say=lambda text: None) -> list[Episode]:
    """The episodes of any readable data set kind, in order (successful ones only by default)."""
    kind = dataset_kind(path)
    if kind == HDF5:
        from vla_ros.data.episodes import load_episodes  # noqa: PLC0415

        return load_episodes(path, successful_only=successful_only, with_images=with_images)
    if kind == LEROBOT:
        from vla_ros.data.lerobot import load_lerobot_episodes  # noqa: PLC0415

        return load_lerobot_episodes(path, successful_only=successful_only, with_images=with_images)
    from vla_ros.bags.errors import BagError  # noqa: PLC0415
    from vla_ros.data.alignment import StreamProblem  # noqa: PLC0415
    from vla_ros.data.contract import load_contract  # noqa: PLC0415
    from vla_ros.data.importing import find_bags, read_bag_episode  # noqa: PLC0415
    from vla_ros.robot.kinematics import ArmKinematics  # noqa: PLC0415

    contract, kinematics, episodes = load_contract(), ArmKinematics(), []
    for bag in find_bags([path]):
        try:
            episode, _ = read_bag_episode(bag, contract, kinematics)
        except (StreamProblem, BagError) as exc:
            say(f"skipped {bag.name}: {exc}")
            continue
        if episode.success or not successful_only:
            episodes.append(episode)
    return episodes


def dataset_splits(path: str | Path) -> dict[str, list[str]]:
    """The data set's train/valid episode names where it records them (our HDF5 masks), else empty lists."""
    if dataset_kind(path) != HDF5:
        return {"train": [], "valid": []}
    from vla_ros.policy.training_data import split_names  # noqa: PLC0415

    return split_names(path)
