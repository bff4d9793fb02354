"""Data sets: robomimic layout, reader schema, determinism across worker counts, the CLI."""

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from vla_ros.data.episodes import action_statistics, load_episodes
from vla_ros.data.generate import generate_dataset
from vla_ros.sim.expert import PHASES
from vla_ros.sim.tasks import FAMILIES, all_instructions


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "one"
    summary = generate_dataset(out, 5, seed=40, workers=1, image_size=48, show_progress=False)
    return out, summary


def test_robomimic_layout(dataset):
    out, summary = dataset
    assert (out / "generation.json").is_file() and (out / "preview.png").is_file()
    with h5py.File(out / "dataset.hdf5", "r") as f:
        data = f["data"]
        assert json.loads(data.attrs["phases"]) == list(PHASES)
        assert json.loads(data.attrs["env_args"])["env_kwargs"]["image_size"] == 48
        total = 0
        for i in range(5):
            demo = data[f"demo_{i}"]
            t = demo.attrs["num_samples"]
            total += t
            assert demo["actions"].shape == (t, 7) and demo["actions"].dtype == np.float32
            assert demo["obs/agentview_image"].shape == (t, 48, 48, 3)
            assert demo["obs/agentview_image"].dtype == np.uint8
            assert demo["obs/agentview_image"].compression == "gzip"
            for key, width in (("joint_pos", 6), ("ee_pos", 3), ("ee_quat", 4), ("gripper", 1)):
                assert demo[f"obs/{key}"].shape == (t, width)
            assert demo["phases"].shape == (t,)
            assert demo.attrs["family"] == FAMILIES[i % 4] and demo.attrs["seed"] == 40 + i
            assert demo.attrs["instruction"] in all_instructions("train")
        assert data.attrs["total"] == total == summary["samples"]
        masked = [n.decode() for n in f["mask/train"][()]] + [n.decode() for n in f["mask/valid"][()]]
        successful = [n for n in data if data[n].attrs["success"]]
        assert sorted(masked) == sorted(successful)


def test_reader_schema_and_statistics(dataset):
    out, _ = dataset
    episodes = load_episodes(out)
    assert episodes and all(e.success for e in episodes)
    e = episodes[0]
    t = len(e.actions)
    assert e.images.shape == (t, 48, 48, 3) and e.joint_pos.shape == (t, 6) and e.gripper.shape == (t, 1)
    assert e.phases.min() >= 0 and e.phase_names == PHASES
    # the first observation is the home pose with the gripper open
    assert e.gripper[0, 0] > 0.95 and abs(e.ee_pos[0, 2] - 0.16) < 0.005
    assert load_episodes(out, with_images=False)[0].images is None
    stats = action_statistics(episodes)
    actions = np.concatenate([ep.actions for ep in episodes])
    for key in ("q01", "q99", "mean", "std", "min", "max"):
        assert len(stats[key]) == 7
    np.testing.assert_allclose(stats["max"], actions.max(0), rtol=1e-6)
    assert np.all(np.array(stats["q01"]) <= np.array(stats["q99"]))


def test_output_depends_on_seed_not_on_workers(dataset, tmp_path):
    out, _ = dataset
    generate_dataset(tmp_path / "two", 5, seed=40, workers=2, image_size=48, show_progress=False)
    one = load_episodes(out, successful_only=False)
    two = load_episodes(tmp_path / "two", successful_only=False)
    assert [e.name for e in one] == [e.name for e in two]
    for a, b in zip(one, two):
        assert (a.instruction, a.seed, a.success) == (b.instruction, b.seed, b.success)
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_array_equal(a.images, b.images)
        np.testing.assert_array_equal(a.joint_pos, b.joint_pos)


def test_heldout_split_uses_heldout_paraphrases(tmp_path):
    generate_dataset(tmp_path / "h", 4, seed=7, workers=1, image_size=32, split="heldout", show_progress=False)
    episodes = load_episodes(tmp_path / "h", successful_only=False, with_images=False)
    assert all(e.instruction in all_instructions("heldout") for e in episodes)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "vla_ros.cli", *args], capture_output=True, text=True, timeout=120)


def test_data_info_cli(dataset, tmp_path):
    out, _ = dataset
    result = run_cli("data", "info", str(out), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["episodes"] == 5 and len(report["action_statistics"]["q01"]) == 7
    table = run_cli("data", "info", str(out))
    assert "q99" in table.stdout and "gripper" in table.stdout
    missing = run_cli("data", "info", str(tmp_path / "nowhere"))
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert "nowhere" in missing.stderr


def test_noisy_generation_records_the_expert_and_depends_on_seed(dataset, tmp_path):
    from vla_ros.data.generate import noisy_episode

    out, _ = dataset
    assert [noisy_episode(i, 40, 0.0) for i in range(5)] == [False] * 5
    assert all(noisy_episode(i, 40, 1.0) for i in range(5))
    summary = generate_dataset(tmp_path / "noisy", 5, seed=40, workers=1, image_size=48, show_progress=False,
                               noise=0.015, noisy_share=1.0)
    assert summary["noise"] == 0.015 and summary["noisy_share"] == 1.0
    clean = load_episodes(out, successful_only=False, with_images=False)
    noisy = load_episodes(tmp_path / "noisy", successful_only=False, with_images=False)
    assert [e.seed for e in clean] == [e.seed for e in noisy]
    assert sum(len(e.actions) for e in noisy) > sum(len(e.actions) for e in clean)
    for episode in noisy:  # recorded actions are the expert's: bounded, binary gripper
        assert np.all(np.abs(episode.actions[:, :3]) <= 0.03 + 1e-6) and set(episode.actions[:, 6]) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="noisy_share"):
        generate_dataset(tmp_path / "bad", 1, noisy_share=1.5, show_progress=False)


def test_generate_cli_rejects_bad_noise(tmp_path):
    for flag, value in (("--noise", "-1"), ("--noise", "nan"), ("--noisy-share", "2")):
        result = run_cli("data", "generate", "--episodes", "1", "--out", str(tmp_path / "x"), flag, value)
        assert result.returncode == 2 and flag in result.stderr and "Traceback" not in result.stderr
