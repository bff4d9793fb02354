"""LeRobotDataset: our data set → v3.0 (parquet + H.264 MP4 + meta) → ours again; v2.1 reading; the files load with
Hugging Face `datasets` and pandas as LeRobot reads them; `vla-ros train` takes the exported directory."""

from __future__ import annotations

import json

import numpy as np
import pytest
from demo_bags import frame

from vla_ros.data.episodes import Episode, load_episodes
from vla_ros.data.formats import LEROBOT, dataset_kind
from vla_ros.data.importing import write_dataset
from vla_ros.data.lerobot import (FRAME_TOLERANCE_PSNR_DB, LeRobotError, export_dataset, import_lerobot,
                                  open_lerobot, psnr, read_lerobot)

SIZE = 64


def synthetic_episode(index: int, steps: int, success: bool = True) -> Episode:
    rng = np.random.default_rng(index)
    actions = rng.uniform(-0.03, 0.03, (steps, 7)).astype(np.float32)
    actions[:, 6] = rng.integers(0, 2, steps)
    return Episode(
        name=f"demo_{index}", actions=actions, images=np.stack([frame(k + 3 * index, SIZE) for k in range(steps)]),
        joint_pos=rng.normal(0, 0.5, (steps, 6)).astype(np.float32), ee_pos=rng.normal(0, 0.2, (steps, 3)).astype(np.float32),
        ee_quat=rng.normal(0, 1, (steps, 4)).astype(np.float32), gripper=rng.uniform(0, 1, (steps, 1)).astype(np.float32),
        phases=rng.integers(-1, 7, steps), instruction=["pick up the red block", "push the blue block to the left"][index % 2],
        family=["pick", "push"][index % 2], seed=100 + index, success=success, camera="over_shoulder",
        cameras={"wrist": np.stack([frame(2 * k, SIZE)[::-1] for k in range(steps)])})


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("lerobot")
    episodes = [synthetic_episode(i, steps, success=i != 2) for i, steps in enumerate((9, 14, 6, 11))]
    write_dataset(root / "ours", episodes, {"env_kwargs": {"control_hz": 5.0}})
    summary = export_dataset(root / "ours", root / "v3", say=lambda _: None)
    return root, episodes, summary


def test_the_export_has_lerobots_v3_layout_and_metadata(exported):
    root, episodes, summary = exported
    v3 = root / "v3"
    info = json.loads((v3 / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 5 and info["robot_type"] == "wx250s"
    assert info["total_episodes"] == 4 and info["total_frames"] == 40 and info["total_tasks"] == 2
    features = info["features"]
    assert features["observation.images.over_shoulder"]["dtype"] == "video"
    assert features["observation.images.over_shoulder"]["shape"] == [SIZE, SIZE, 3]
    assert features["observation.state"]["names"][-1] == "gripper" and features["action"]["shape"] == [7]
    for path in ("data/chunk-000/file-000.parquet", "meta/episodes/chunk-000/file-000.parquet", "meta/tasks.parquet",
                 "meta/stats.json", "videos/observation.images.over_shoulder/chunk-000/file-000.mp4",
                 "videos/observation.images.wrist/chunk-000/file-000.mp4"):
        assert (v3 / path).is_file(), path
    stats = json.loads((v3 / "meta/stats.json").read_text())
    assert np.allclose(stats["action"]["mean"], np.concatenate([e.actions for e in episodes]).mean(0), atol=1e-6)
    assert np.asarray(stats["observation.images.wrist"]["mean"]).shape == (3, 1, 1)
    assert summary["episodes"] == 4 and summary["bytes"] > 0


def test_the_parquet_files_load_as_lerobot_loads_them(exported, tmp_path, monkeypatch):
    import datasets
    import pandas

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    root, episodes, _ = exported
    data = datasets.Dataset.from_parquet(str(root / "v3/data/chunk-000/file-000.parquet"),
                                         cache_dir=str(tmp_path / "cache"))
    assert len(data) == 40 and {"observation.state", "action", "timestamp", "frame_index", "episode_index",
                                "index", "task_index"} <= set(data.column_names)
    row = data[9]  # the second episode's first frame
    assert row["episode_index"] == 1 and row["frame_index"] == 0 and row["index"] == 9
    assert np.array_equal(np.asarray(row["action"], np.float32), episodes[1].actions[0])
    tasks = pandas.read_parquet(root / "v3/meta/tasks.parquet")
    assert tasks.index.name == "task" and tasks.loc["push the blue block to the left", "task_index"] == 1
    meta = datasets.Dataset.from_parquet(str(root / "v3/meta/episodes/chunk-000/file-000.parquet"),
                                         cache_dir=str(tmp_path / "cache"))
    assert meta[3]["dataset_from_index"] == 29 and meta[3]["dataset_to_index"] == 40
    assert meta[3]["videos/observation.images.over_shoulder/from_timestamp"] == pytest.approx(29 / 5)


def test_round_trip_is_exact_for_actions_and_states_and_close_for_frames(exported, tmp_path):
    root, episodes, _ = exported
    import_lerobot(root / "v3", tmp_path / "back", say=lambda _: None)
    back = load_episodes(tmp_path / "back", successful_only=False)
    assert [e.instruction for e in back] == [e.instruction for e in episodes]
    for original, returned in zip(episodes, back):
        for field in ("actions", "joint_pos", "gripper", "ee_pos", "ee_quat"):
            assert np.array_equal(getattr(returned, field), getattr(original, field)), field
        assert np.array_equal(returned.phases, original.phases)
        assert (returned.success, returned.family, returned.seed) == (original.success, original.family, original.seed)
        for got, want in ((returned.images, original.images), (returned.cameras["wrist"], original.cameras["wrist"])):
            assert psnr(got, want) > FRAME_TOLERANCE_PSNR_DB, psnr(got, want)


def test_v21_data_sets_are_read_too(exported, tmp_path):
    """A v2.1 data set (one parquet and one MP4 per episode, JSON-lines metadata), made from the v3.0 export."""
    import shutil

    import pyarrow.parquet as pq

    root, episodes, _ = exported
    v3, v21 = root / "v3", tmp_path / "v21"
    info = json.loads((v3 / "meta/info.json").read_text())
    table = pq.read_table(v3 / "data/chunk-000/file-000.parquet")
    (v21 / "meta").mkdir(parents=True)
    for e, episode in enumerate(episodes):
        path = v21 / f"data/chunk-000/episode_{e:06d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.filter(np.asarray(table.column("episode_index")) == e), path)
        for camera, frames in (("over_shoulder", episode.images), ("wrist", episode.cameras["wrist"])):
            from vla_ros.data.lerobot import _VideoFile

            video = _VideoFile(v21 / f"videos/chunk-000/observation.images.{camera}/episode_{e:06d}.mp4", SIZE, SIZE,
                               5, 18)
            video.add(frames)
            video.close()
    info.update(codebase_version="v2.1", total_chunks=1, total_videos=8,
                data_path="data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
                video_path="videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4")
    (v21 / "meta/info.json").write_text(json.dumps(info))
    (v21 / "meta/tasks.jsonl").write_text('{"task_index": 0, "task": "pick up the red block"}\n'
                                          '{"task_index": 1, "task": "push the blue block to the left"}\n')
    (v21 / "meta/episodes.jsonl").write_text("".join(
        json.dumps({"episode_index": e, "tasks": [ep.instruction], "length": len(ep.actions)}) + "\n"
        for e, ep in enumerate(episodes)))
    assert open_lerobot(v21).version == "v2.1"
    read = list(read_lerobot(v21, camera="wrist"))
    assert len(read) == 4 and read[1].camera == "wrist"
    assert np.array_equal(read[1].actions, episodes[1].actions)
    assert psnr(read[1].images, episodes[1].cameras["wrist"]) > FRAME_TOLERANCE_PSNR_DB
    assert all(e.success for e in read)  # v2.1 keeps no outcome: every episode counts
    shutil.rmtree(v21)


def test_unusable_data_sets_are_refused_in_one_sentence(exported, tmp_path):
    root, _, _ = exported
    bad = tmp_path / "bad"
    (bad / "meta").mkdir(parents=True)
    info = json.loads((root / "v3/meta/info.json").read_text())
    info["features"]["action"]["shape"] = [6]
    (bad / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(LeRobotError, match="the action feature has shape \\[6\\]; vla_ros trains on 7-D"):
        open_lerobot(bad)
    with pytest.raises(LeRobotError, match="is not a LeRobot data set"):
        open_lerobot(tmp_path)


def test_train_reads_the_exported_directory(exported):
    from vla_ros.policy.training import load_split

    root, episodes, _ = exported
    assert dataset_kind(root / "v3") == LEROBOT
    train, valid = load_split(root / "v3")
    assert len(train) + len(valid) == 3  # the failed episode is left out, as from our HDF5
    assert train[0].images.shape == (9, SIZE, SIZE, 3)


def test_image_features_stored_in_the_parquet_are_read_losslessly(exported, tmp_path):
    """Data sets recorded without video keep each frame as a PNG cell ({bytes, path}) in the parquet."""
    import shutil

    import cv2
    import pyarrow as pa
    import pyarrow.parquet as pq

    root, episodes, _ = exported
    copy = tmp_path / "png"
    shutil.copytree(root / "v3", copy)
    path = copy / "data/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    frames = np.concatenate([e.images for e in episodes])
    cells = [{"bytes": cv2.imencode(".png", cv2.cvtColor(f, cv2.COLOR_RGB2BGR))[1].tobytes(), "path": None}
             for f in frames]
    table = table.append_column("observation.images.png", pa.array(cells, pa.struct([("bytes", pa.binary()),
                                                                                      ("path", pa.string())])))
    pq.write_table(table, path)
    info = json.loads((copy / "meta/info.json").read_text())
    info["features"]["observation.images.png"] = {"dtype": "image", "shape": [SIZE, SIZE, 3],
                                                  "names": ["height", "width", "channels"]}
    (copy / "meta/info.json").write_text(json.dumps(info))
    read = list(read_lerobot(copy, camera="png"))
    assert all(np.array_equal(r.images, e.images) for r, e in zip(read, episodes))
