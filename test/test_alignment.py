"""Safety alignment on real parts: the shipped policy, the MuJoCo workcell, peft, onnxruntime and the CLI.

One module-scoped `vla-ros prefs generate` (a few episodes, seconds) feeds the tests: the file round-trips, its
look-aheads are reproducible from the saved states, its pairs follow the judge, the reward model and
`vla-ros align` train on it, the aligned adapter runs in every backend, and `vla-ros prefs label` writes
human pairs from answers typed on standard input.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vla_ros.alignment.preferences import (
    Outcome, PreferenceWorker, PrefsSpec, judge, judged_pairs, load_prefs, restore_state, task_progress)
from vla_ros.cli import main
from vla_ros.sim.safety_events import EVENT_KINDS
from vla_ros.sim.tasks import Task, WorldState, ObjectState

REPO = Path(__file__).resolve().parents[1]
BASE = REPO / "models" / "policy" / "vla"


def _outcome(events: int = 0, success: bool = False, progress: float = 0.0) -> Outcome:
    counts = np.zeros(len(EVENT_KINDS), np.int64)
    counts[0] = events
    return Outcome(counts, success, progress)


def test_the_judge_prefers_safer_then_successful_then_further():
    assert judge(_outcome(0, progress=0.1), _outcome(1, success=True, progress=1.0), 0.05) == (1, "safety")
    assert judge(_outcome(2), _outcome(1), 0.05) == (-1, "safety")
    assert judge(_outcome(0, success=True, progress=1.0), _outcome(0, progress=0.99), 0.05) == (1, "progress")
    assert judge(_outcome(0, progress=0.5), _outcome(0, progress=0.52), 0.05) == (0, "")
    assert judge(_outcome(0, progress=0.3), _outcome(0, progress=0.6), 0.05) == (-1, "progress")
    pairs = judged_pairs([_outcome(1), _outcome(0, progress=0.2), _outcome(0, progress=0.9)], 0.05)
    assert sorted(pairs) == [(1, 0, "safety"), (2, 0, "safety"), (2, 1, "progress")]


def test_task_progress_grows_as_the_task_gets_done():
    def world(block_pos, ee_pos):
        block = ObjectState(pos=np.array(block_pos, float), half_extents=np.full(3, 0.015))
        return WorldState(objects={"red": block}, ee_pos=np.array(ee_pos, float), gripper=0.5,
                          start_pos={"red": np.array([0.3, 0.0, 0.015])})

    pick = Task("pick", "red")
    far, near = world([0.3, 0, 0.015], [0.3, 0, 0.2]), world([0.3, 0, 0.015], [0.3, 0, 0.03])
    lifted = world([0.3, 0, 0.07], [0.3, 0, 0.07])
    assert task_progress(pick, far) < task_progress(pick, near) < task_progress(pick, lifted) <= 1.0
    push = Task("push", "red", direction="left")
    assert task_progress(push, world([0.3, 0.06, 0.015], [0.3, 0.03, 0.02])) > \
        task_progress(push, world([0.3, -0.06, 0.015], [0.3, -0.03, 0.02]))


@pytest.fixture(scope="module")
def prefs_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("prefs")
    path = root / "prefs.h5"
    code = main(["prefs", "generate", "--policy", str(BASE), "--out", str(path), "--episodes", "4",
                 "--candidates", "3", "--horizon", "8", "--every", "3", "--first-episode", "2"])
    assert code == 0
    return path


def test_generated_preferences_round_trip_and_follow_the_judge(prefs_file):
    prefs = load_prefs(prefs_file)
    states, k, t = prefs.tokens.shape
    assert k == 3 and t == 8 and states >= 4
    assert prefs.image.shape == (states, 128, 128, 3) and prefs.image.dtype == np.uint8
    assert prefs.events.shape == (states, k, len(EVENT_KINDS))
    assert set(prefs.pair_source) == {"judge"} and len(prefs.pairs) > 0
    assert sorted(set(prefs.seed.tolist())) == [3_000_002, 3_000_003, 3_000_004, 3_000_005]
    for (s, w, l), kind in zip(prefs.pairs, prefs.pair_kind):
        a = Outcome(prefs.events[s, w], bool(prefs.success[s, w]), float(prefs.progress[s, w]))
        b = Outcome(prefs.events[s, l], bool(prefs.success[s, l]), float(prefs.progress[s, l]))
        assert judge(a, b, prefs.spec["progress_margin"]) == (1, kind)


def test_a_candidate_rolled_again_from_its_saved_state_ends_as_recorded(prefs_file):
    prefs = load_prefs(prefs_file)
    spec = PrefsSpec(**{**prefs.spec, "policy": str(BASE)})
    worker = PreferenceWorker(spec)
    try:
        for s in (0, len(prefs.seed) - 1):
            for candidate in range(prefs.tokens.shape[1]):
                state = restore_state(worker.workcell, int(prefs.seed[s]), prefs.family[s], prefs.physics[s],
                                      prefs.controller[s])
                # the state the policy saw (rendered after a physics step, the frame lags the state by 2 ms)
                image = worker.workcell.observe().image.astype(int)
                assert np.mean(np.abs(image - prefs.image[s].astype(int)) > 0) < 0.01
                actions = worker.runner.tokenizer.decode(prefs.tokens[s, candidate][None])[0]
                outcome = worker.outcome(worker.look_ahead(int(prefs.seed[s]), state, actions))
                assert outcome.events.tolist() == prefs.events[s, candidate].tolist()
                assert outcome.progress == pytest.approx(float(prefs.progress[s, candidate]), abs=1e-6)
    finally:
        worker.close()


def test_the_look_ahead_oracle_leaves_the_state_as_it_found_it():
    from vla_ros.alignment.preferences import SEED_BASE, ShieldedChunks

    worker = PreferenceWorker(PrefsSpec(policy=str(BASE), candidates=3, horizon=4))
    try:
        observation = worker.workcell.reset(SEED_BASE, family="push")
        before = worker.workcell.get_state()
        oracle = ShieldedChunks(worker, SEED_BASE)
        actions, _ = oracle.chunk(observation, worker.workcell.task.instruction)
        after = worker.workcell.get_state()
        assert np.array_equal(before.physics, after.physics) and after.step == before.step
        assert actions.shape == (worker.runner.config.chunk_size, 7)
        assert oracle.requests == 1 and oracle.deviations in (0, 1)
    finally:
        worker.close()


@pytest.fixture(scope="module")
def other_base(tmp_path_factory):
    """A copy of the shipped policy with one weight changed: another base."""
    import shutil

    other = tmp_path_factory.mktemp("other") / "policy"
    shutil.copytree(BASE, other)
    weights = bytearray((other / "model.safetensors").read_bytes())
    weights[-2] ^= 0x01
    (other / "model.safetensors").write_bytes(bytes(weights))
    return other


def test_reward_model_fits_the_pairs_and_is_tied_to_its_base(prefs_file, other_base, tmp_path):
    from vla_ros.alignment.reward_model import load_reward_model

    assert main(["prefs", "reward", "--policy", str(BASE), "--prefs", str(prefs_file), "--out",
                 str(tmp_path / "reward")]) == 0
    report = json.loads((tmp_path / "reward" / "reward_model.json").read_text())
    assert report["train_accuracy"] >= 0.8  # a head that can separate the pairs it saw
    assert (tmp_path / "reward" / "reward_model.png").is_file()
    head = load_reward_model(tmp_path / "reward", BASE)
    assert head.mean.shape[0] == report["features"]
    with pytest.raises(ValueError, match="trained on base policy"):
        load_reward_model(tmp_path / "reward", other_base)


@pytest.fixture(scope="module")
def aligned(prefs_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("aligned") / "adapter"
    assert main(["align", "--policy", str(BASE), "--prefs", str(prefs_file), "--out", str(out), "--steps", "40",
                 "--batch-size", "16", "--lr", "2e-3", "--anchor-weight", "0", "--progress-weight", "1"]) == 0
    return out


def test_dpo_raises_the_preferred_chunks_against_the_others(prefs_file, aligned):
    from vla_ros.alignment.scoring import sequence_logps, state_prefixes
    from vla_ros.policy.adapters import load_policy

    prefs = load_prefs(prefs_file)
    base, tuned = load_policy(BASE), load_policy(BASE, aligned)
    prefixes = state_prefixes(base, prefs)
    s, w, l = (torch.from_numpy(prefs.pairs[:, i]) for i in range(3))
    tokens = torch.from_numpy(prefs.tokens)
    with torch.no_grad():
        margin = [sequence_logps(model, prefixes[s], tokens[s, w]) - sequence_logps(model, prefixes[s], tokens[s, l])
                  for model in (base, tuned)]
    assert float((margin[1] - margin[0]).mean()) > 0.5
    report = json.loads((aligned / "align_report.json").read_text())
    assert report["method"] == "dpo" and report["trainable_percent"] < 2.0
    assert (aligned / "align_curve.png").is_file()


def test_the_aligned_adapter_runs_in_torch_and_merged_onnx_alike(prefs_file, aligned):
    from vla_ros.policy.runners import PolicyRunner

    prefs = load_prefs(prefs_file)
    images, joints = prefs.image[:3], prefs.joint_pos[:3]
    torch_runner = PolicyRunner(BASE, "builtin-torch", adapter=aligned)
    onnx_runner = PolicyRunner(BASE, "builtin-onnx", adapter=aligned)
    a = torch_runner.infer(images, prefs.instruction[:3], joints, temperature=0.0).tokens
    b = onnx_runner.infer(images, prefs.instruction[:3], joints, temperature=0.0).tokens
    assert np.array_equal(a, b)


def test_constrained_alignment_tracks_its_multiplier(prefs_file, tmp_path):
    out = tmp_path / "constrained"
    assert main(["align", "--policy", str(BASE), "--prefs", str(prefs_file), "--out", str(out), "--steps", "10",
                 "--batch-size", "8", "--method", "constrained", "--no-onnx"]) == 0
    report = json.loads((out / "align_report.json").read_text())
    assert report["method"] == "constrained" and report["final_multiplier"] >= 0.0
    assert len(report["history"]["multiplier"]) >= 1


def test_prefs_label_writes_human_pairs_from_typed_answers(prefs_file, tmp_path):
    from vla_ros.alignment.labelling import label_pairs

    out = tmp_path / "human.h5"
    answers = io.StringIO("x\na\nb\n=\nq\n")
    shown = io.StringIO()
    summary = label_pairs(BASE, prefs_file, out, tmp_path / "videos", pairs=5, answers=answers, out=shown)
    assert summary["labelled"] == 2 and summary["skipped"] == 1
    assert "'x' is not an answer" in shown.getvalue()
    labelled = load_prefs(out)
    assert labelled.pair_source == ["human", "human"]
    assert labelled.tokens.shape == load_prefs(prefs_file).tokens.shape
    assert len(list((tmp_path / "videos").glob("pair_*.mp4"))) == 4


def test_several_files_pool_with_their_pairs_reindexed(prefs_file):
    from vla_ros.alignment.preferences import load_many

    one = load_prefs(prefs_file)
    both = load_many([prefs_file, prefs_file])
    states = len(one.seed)
    assert len(both.seed) == 2 * states and len(both.pairs) == 2 * len(one.pairs)
    second = both.pairs[len(one.pairs):]
    assert np.array_equal(second[:, 0], one.pairs[:, 0] + states)
    s, w = second[0, 0], second[0, 1]
    assert np.array_equal(both.tokens[s, w], one.tokens[s - states, w])


def test_bad_inputs_get_one_clear_error(prefs_file, other_base, tmp_path):
    not_prefs = tmp_path / "not.h5"
    not_prefs.write_text("hello")
    with pytest.raises(SystemExit, match="not an HDF5 preferences file"):
        main(["prefs", "info", str(not_prefs)])
    with pytest.raises(SystemExit, match="is not a saved VLA policy"):
        main(["prefs", "generate", "--policy", str(tmp_path), "--out", str(tmp_path / "p.h5"), "--workers", "2"])
    with pytest.raises(SystemExit, match="does not exist"):
        main(["align", "--policy", str(BASE), "--prefs", str(tmp_path / "missing.h5"), "--out", str(tmp_path / "a")])
    with pytest.raises(SystemExit, match="generated with base policy"):
        main(["align", "--policy", str(other_base), "--prefs", str(prefs_file), "--out", str(tmp_path / "b")])
