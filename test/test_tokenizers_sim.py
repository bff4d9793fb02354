"""Tokenizers on real demonstrations from the simulated workcell: shipped-model bounds, commands, closed loop."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vla_ros.cli import main as vla_ros
from vla_ros.tokenizers import load_tokenizer
from vla_ros.tokenizers.chunking import chunks_from_episodes
from vla_ros.tokenizers.demonstrations import load_action_episodes
from vla_ros.tokenizers.metrics import reconstruction_errors

torch.set_num_threads(1)
SHIPPED = Path(__file__).resolve().parents[1] / "models" / "tokenizers"
# Seeds far from the shipped models' training seeds (0–399) and held-out seeds (100000–100099).
FRESH_SEED = 300000


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    """Eight fresh scripted-expert episodes (two per task family) written as a real data set."""
    from vla_ros.data.generate import generate_dataset

    out = tmp_path_factory.mktemp("demos")
    generate_dataset(out, 8, seed=FRESH_SEED, image_size=16, show_progress=False)
    return out


@pytest.fixture(scope="module")
def chunks(demos):
    return chunks_from_episodes([e.actions for e in load_action_episodes(demos)], 8)


def shipped(kind):
    if not (SHIPPED / kind / "config.json").is_file():
        pytest.fail(f"the shipped {kind} tokenizer is missing from {SHIPPED}")
    return load_tokenizer(SHIPPED / kind)


def test_bins_round_trip_is_within_half_a_bin_on_demonstrations(chunks):
    tokenizer = shipped("bins")
    decoded = tokenizer.decode(tokenizer.encode(chunks))
    normalized = tokenizer.normalizer.normalize(chunks)
    inside = np.abs(normalized[..., :6]) < 1
    error = np.abs(decoded - chunks)[..., :6] / tokenizer.normalizer.half_range
    assert error[inside].max() <= 1 / 256 + 1e-4
    np.testing.assert_array_equal(decoded[..., 6], chunks[..., 6])


@pytest.mark.parametrize("kind, bound", [("vqvae", 0.10), ("rvq", 0.08)])
def test_shipped_vq_round_trip_error_is_bounded_on_fresh_demonstrations(kind, bound, chunks):
    tokenizer = shipped(kind)
    errors = reconstruction_errors(chunks, tokenizer.decode(tokenizer.encode(chunks)), tokenizer.normalizer)
    assert errors["gripper_accuracy"] >= 0.99
    assert errors["nrmse_mean"] <= bound, errors


def test_vqvae_beats_a_constant_guess_on_every_moving_dimension(chunks):
    tokenizer = shipped("vqvae")
    errors = reconstruction_errors(chunks, tokenizer.decode(tokenizer.encode(chunks)), tokenizer.normalizer)
    mean_chunk = np.broadcast_to(chunks.mean(axis=0), chunks.shape)
    baseline = reconstruction_errors(chunks, mean_chunk, tokenizer.normalizer)
    for dim in (0, 1, 2, 5):  # x, y, z, yaw move in every episode; roll and pitch stay ~0
        assert errors["nrmse_per_dim"][dim] < 0.5 * baseline["nrmse_per_dim"][dim]


@pytest.mark.slow
def test_train_export_and_compare_commands_end_to_end(demos, tmp_path, capsys):
    out = tmp_path / "vq"
    assert vla_ros(["tokenizer", "train", "--data", str(demos), "--kind", "vqvae", "--out", str(out),
                    "--steps", "60", "--seed", "1"]) == 0
    report = json.loads((out / "training_report.json").read_text())
    assert report["kind"] == "vqvae" and report["steps"] == 60 and report["episodes"] == 8
    assert (out / "loss_curve.png").stat().st_size > 1000
    assert load_tokenizer(out).identity == report["identity"]

    assert vla_ros(["tokenizer", "export-onnx", "--tokenizer", str(out), "--out", str(tmp_path / "vq.onnx")]) == 0
    assert "max |difference|" in capsys.readouterr().out

    table = tmp_path / "compare.md"
    assert vla_ros(["tokenizer", "compare", "--data", str(demos), "--heldout", str(demos), "--tokenizers",
                    str(SHIPPED / "bins"), str(out), "--out", str(table), "--fidelity-episodes", "4"]) == 0
    result = json.loads(table.with_suffix(".json").read_text())
    loop = result["closed_loop"]
    assert set(loop) == {"raw", "bins", "vq"}
    assert sorted(loop["raw"]["per_family"]) == ["pick", "place", "push", "stack"]
    # Bins are exact to half a bin: the expert must succeed wherever it does on raw actions.
    assert loop["bins"]["successes"] == loop["raw"]["successes"]
    text = table.read_text()
    assert "| bins | bins | 56 | 256 |" in text and "Closed-loop fidelity" in text


def test_commands_reject_bad_inputs_with_one_sentence(tmp_path):
    with pytest.raises(SystemExit, match="--data .* is not a readable data set"):
        vla_ros(["tokenizer", "train", "--data", str(tmp_path / "nowhere"), "--kind", "bins", "--out",
                 str(tmp_path / "out")])
    with pytest.raises(SystemExit, match="is not a saved tokenizer"):
        vla_ros(["tokenizer", "export-onnx", "--tokenizer", str(tmp_path), "--out", str(tmp_path / "x.onnx")])
    with pytest.raises(SystemExit, match="--levels applies to --kind rvq only"):
        vla_ros(["tokenizer", "train", "--data", str(tmp_path), "--kind", "vqvae", "--out", str(tmp_path / "o"),
                 "--levels", "3"])
