"""OpenVLA's two sanity checks on real sim episodes (HDF5 and bags) and the committed tiny policy.

The tiny policy in test/data/replay/policy was trained on exactly these four episodes (seed 0, 64 px; see
test/data/make_golden.py), so it has memorized them: its actions must be clearly closer to the demonstrations
than the mean action is.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vla_ros.bags.sanity import check_replay_actions, load_demonstrations
from vla_ros.cli import main

POLICY = Path(__file__).parent / "data" / "replay" / "policy"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from vla_ros.data.generate import generate_dataset

    root = tmp_path_factory.mktemp("sanity") / "data"
    generate_dataset(root, 4, seed=0, image_size=64, bags=True, show_progress=False)
    return root


def test_replayed_demonstration_actions_reproduce_the_recorded_outcome(data, tmp_path, capsys):
    assert main(["sanity", "replay-actions", "--data", str(data / "bags"), "--out", str(tmp_path), "--quiet"]) == 0
    assert "agreement" in capsys.readouterr().out
    result = json.loads((tmp_path / "replay_actions.json").read_text())
    assert result["episodes"] == 4
    assert result["agreement_on_successful"] >= 0.9, result["episodes_detail"]
    assert np.isfinite(result["final_ee_error_mm_max"])
    # The HDF5 data set holds the same episodes: the same verdicts.
    demos, split = load_demonstrations(data, with_images=False)
    from_hdf5 = check_replay_actions(demos, split)
    assert [r["replayed_success"] for r in from_hdf5["episodes_detail"]] == \
           [r["replayed_success"] for r in result["episodes_detail"]]


def test_a_policy_that_memorized_the_episodes_beats_the_mean_action(data, tmp_path, capsys):
    code = main(["sanity", "policy-actions", "--data", str(data), "--policy", str(POLICY), "--out", str(tmp_path),
                 "--quiet"])
    assert code == 0
    table = capsys.readouterr().out
    assert "mean action (baseline)" in table and "tokenizer round trip" in table
    result = json.loads((tmp_path / "policy_actions.json").read_text())
    policy, baseline = result["policy"], result["mean_action_baseline"]
    assert all(np.isfinite(v) for v in policy["nrmse"].values())
    assert policy["nrmse_mean"] < 0.75 * baseline["nrmse_mean"], (policy, baseline)
    assert policy["gripper_agreement"] > baseline["gripper_agreement"]
    # Memorized: no worse than the tokenizer's own round trip of the demonstrations, give or take.
    assert policy["nrmse_mean"] <= result["tokenizer_round_trip"]["nrmse_mean"] + 0.05


def test_sanity_bad_input_is_one_sentence(tmp_path, capsys):
    assert main(["sanity", "replay-actions", "--data", str(tmp_path / "nowhere"), "--quiet"]) == 2
    assert main(["sanity", "policy-actions", "--data", str(tmp_path), "--policy", str(tmp_path / "none"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "nowhere" in err[0] and "none" in err[1], err
