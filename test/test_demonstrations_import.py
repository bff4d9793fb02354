"""`vla-ros data import`: demonstration bags → a training set, aligned by stamps, bad episodes reported and skipped,
never a half-written data set."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from demo_bags import Faults, write_demo_bag
from ros_harness import run_cli

from vla_ros.data.contract import ContractError, load_contract, parse_contract
from vla_ros.data.episodes import load_episodes
from vla_ros.data.formats import BAGS, dataset_kind, load_dataset_episodes
from vla_ros.data.importing import DatasetImportError, import_bags

CONTRACT = replace(load_contract(), image_size=64)


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp("demos")
    made = {
        "episode_0000": write_demo_bag(root / "episode_0000", steps=12, seed=0),
        "episode_0001": write_demo_bag(root / "episode_0001", steps=10, seed=1, faults=Faults(success=False)),
        "episode_0002": write_demo_bag(root / "episode_0002", seed=2, faults=Faults(camera_gap=(0.6, 1.5))),
        "episode_0003": write_demo_bag(root / "episode_0003", seed=3, faults=Faults(joints_backwards_at=40)),
        "episode_0004": write_demo_bag(root / "episode_0004", seed=4, faults=Faults(no_camera=True)),
        "episode_0005": write_demo_bag(root / "episode_0005", seed=5, faults=Faults(action_rate_hz=10.0)),
    }
    (root / "episode_0006.partial").mkdir()  # a recording that was killed
    return root, made


def test_good_episodes_are_imported_exactly_and_bad_ones_skipped_by_name_and_reason(bags, tmp_path):
    root, made = bags
    lines: list[str] = []
    report = import_bags([root], tmp_path / "dataset", CONTRACT, say=lines.append)
    reasons = {entry["bag"].rsplit("/", 1)[-1]: entry["reason"] for entry in report["skipped"]}
    assert report["imported"] == 2 and report["bags"] == 7
    assert "camera over_shoulder: a gap of 1.00 s at 0.50 s" in reasons["episode_0002"]
    assert "joint states: header stamps go backwards" in reasons["episode_0003"]
    assert "missing topic: none of /camera/image_raw" in reasons["episode_0004"]
    assert "wrong rate" in reasons["episode_0005"] and "10.00 messages per second" in reasons["episode_0005"]
    assert "unfinished recording" in reasons["episode_0006.partial"]
    assert any(line.startswith("  skipped episode_0002: camera over_shoulder: a gap") for line in lines)

    episodes = {e.name: e for e in load_episodes(tmp_path / "dataset", successful_only=False)}
    first = episodes["demo_0"]
    assert np.array_equal(first.actions, made["episode_0000"]["actions"].astype(np.float32))  # as recorded
    assert np.allclose(first.joint_pos, made["episode_0000"]["q"][:12], atol=1e-6)
    assert first.images.shape == (12, 64, 64, 3) and first.instruction == "pick up the red block"
    assert first.success and not episodes["demo_1"].success  # from the stop marks
    assert first.camera == "over_shoulder" and first.family == "pick" and first.seed == -1
    ages = report["frame_age_ms"]
    assert 0 <= ages["mean"] <= ages["max"] <= CONTRACT.tolerance_s * 1e3
    saved = json.loads((tmp_path / "dataset" / "import_report.json").read_text())
    assert saved["imported"] == 2 and saved["episodes_per_minute"] > 0


def test_frames_are_the_newest_before_each_control_step(bags, tmp_path):
    from demo_bags import frame

    root, made = bags
    import_bags([root / "episode_0000"], tmp_path / "one", CONTRACT, say=lambda _: None)
    episode = load_episodes(tmp_path / "one")[0]
    made = made["episode_0000"]
    steps, frames = made["step_ns"], made["camera_ns"]
    for k, step in enumerate(steps):
        newest = frames[frames <= step].max()
        assert np.array_equal(episode.images[k], frame((newest - made["start_ns"]) / 2e8, 64)), f"step {k}"


def test_without_recorded_actions_they_come_from_forward_kinematics(tmp_path):
    made = write_demo_bag(tmp_path / "bag", steps=10, seed=7, faults=Faults(no_actions=True))
    import_bags([tmp_path / "bag"], tmp_path / "fk", CONTRACT, say=lambda _: None)
    episode = load_episodes(tmp_path / "fk")[0]
    truth = made["actions"]
    assert 8 <= len(episode.actions) <= 10
    derived = episode.actions[: len(truth)]
    assert np.allclose(derived[:, :3], truth[: len(derived), :3], atol=2e-3)  # IK reaches within 1 mm
    assert np.allclose(derived[:, 5], truth[: len(derived), 5], atol=0.02)
    assert np.array_equal(derived[:, 6], truth[: len(derived), 6])


def test_a_bad_import_leaves_no_data_set_behind(bags, tmp_path):
    import shutil

    root, _ = bags
    truncated = tmp_path / "truncated"
    shutil.copytree(root / "episode_0000", truncated)
    storage = next(truncated.glob("*.mcap"))
    storage.write_bytes(storage.read_bytes()[: storage.stat().st_size // 2])
    report = import_bags([truncated, root / "episode_0001"], tmp_path / "one_good", CONTRACT, say=lambda _: None)
    assert report["imported"] == 1 and "truncated or corrupt" in report["skipped"][0]["reason"]
    out = tmp_path / "nothing"
    with pytest.raises(DatasetImportError, match="no episode could be imported"):
        import_bags([truncated], out, CONTRACT, say=lambda _: None)
    assert not out.exists()
    with pytest.raises(DatasetImportError, match="no episode could be imported"):
        import_bags([root / "episode_0002", root / "episode_0004"], out, CONTRACT, say=lambda _: None)
    assert not out.exists() and not (tmp_path / "nothing.partial").exists()
    import_bags([root / "episode_0000"], out, CONTRACT, say=lambda _: None)
    with pytest.raises(DatasetImportError, match="already exists"):
        import_bags([root / "episode_0000"], out, CONTRACT, say=lambda _: None)
    with pytest.raises(DatasetImportError, match="does not exist"):
        import_bags([tmp_path / "missing"], tmp_path / "x", CONTRACT, say=lambda _: None)


def test_train_reads_bags_directly_and_knows_what_it_cannot_read(bags, tmp_path):
    root, _ = bags
    assert dataset_kind(root) == BAGS
    episodes = load_dataset_episodes(root)  # the default contract: frames at 128 px
    assert len(episodes) == 1 and episodes[0].images.shape[1:] == (128, 128, 3)  # the successful, valid one
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="is not a data set vla-ros can read"):
        dataset_kind(tmp_path / "empty")


def test_contract_errors_name_the_file_and_key(tmp_path):
    with pytest.raises(ContractError, match="c.yaml: 'cameras' must map camera names"):
        parse_contract({"state": {"topic": "/joint_states"}}, "c.yaml")
    with pytest.raises(ContractError, match="state.joints must list the six arm joints"):
        parse_contract({"cameras": {"a": "/img"}, "state": {"topic": "/js", "joints": ["a"]}}, "c.yaml")
    example = load_contract(__import__("pathlib").Path(__file__).parents[1] / "config/import/joint_states_only.yaml")
    assert example.instruction_text and not example.action_topics


def test_the_command_imports_and_explains_refusals(bags, tmp_path):
    root, _ = bags
    result = run_cli("data", "import", str(root / "episode_0000"), "--out", str(tmp_path / "cli"))
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and "1 of 1 episodes" in result.stdout
    result = run_cli("data", "import", str(tmp_path / "nope"), "--out", str(tmp_path / "cli2"))
    assert result.returncode != 0 and "nope does not exist" in result.stderr
