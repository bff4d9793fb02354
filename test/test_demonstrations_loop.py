"""The whole demonstration loop in simulation: a scripted joystick (Joy messages made from the scripted expert's
actions) drives the real `widowx` graph (teleop:=joy, every node a process) while `vla-ros record-demos` records
one bag per episode; the bags are imported, exported as LeRobotDataset v3.0, imported back, and a small policy
is trained on the export. How well such a policy does is measured in benchmarks/bench_demonstrations.py
(docs/benchmarks.md, "Demonstrations"): a CI-sized run is too short to show it.
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from ros_harness import REPO, LaunchedGraph, RosProbe

from vla_ros.graphs.scripted_teleop import ScriptedTeleopSession

pytestmark = [pytest.mark.ros, pytest.mark.slow]

IMAGE_SIZE = 64
SEEDS = (11, 15, 19)  # pick layouts: family = the one set before each reset
EPISODE_TIMEOUT_S = 12.0
TINY_MODEL = {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "intermediate_size": 128,
              "cnn_channels": [8, 16, 32, 32], "image_grid": 2, "image_size": IMAGE_SIZE}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    root = tmp_path_factory.mktemp("loop")
    graph = LaunchedGraph("widowx", "teleop:=joy", "use_policy:=false", "expert_hints:=true",
                          f"image_size:={IMAGE_SIZE}")
    recorder = None
    probe = RosProbe("demonstration_loop")
    outcomes = []
    try:
        session = ScriptedTeleopSession(probe, REPO / "config" / "teleop" / "joy.yaml")
        session.spin_until(lambda: graph.process.poll() is None and session.ready(), 90, "the graph",
                           engaged=False)
        log = (root / "record-demos.log").open("w")  # a file, not a pipe: nobody reads it while recording
        recorder = subprocess.Popen(
            [sys.executable, "-m", "vla_ros.cli", "record-demos", "-o", str(root / "demos"),
             "--episodes", str(len(SEEDS))], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        session.spin_until(lambda: session.demos and session.demos[-1].data.startswith("idle"), 60,
                           "record-demos", engaged=False)
        session.take_control()
        for seed in SEEDS:
            outcomes.append(session.record_episode("pick", seed, EPISODE_TIMEOUT_S))
        recorder.wait(timeout=30)
        log.close()
        output = (root / "record-demos.log").read_text()
    finally:
        if recorder is not None and recorder.poll() is None:
            recorder.kill()
        probe.close()
        code = graph.stop()
    print(f"recorded {outcomes}")
    return root, outcomes, output, code, graph.output


def test_the_scripted_joystick_records_one_bag_per_episode_through_the_graph(recorded):
    root, outcomes, output, code, graph_output = recorded
    assert code == 0, graph_output[-3000:]
    assert "3 episodes kept" in output, output
    bags = sorted(p.name for p in (root / "demos").iterdir() if p.is_dir())
    assert bags == ["episode_0000", "episode_0001", "episode_0002"], bags
    table = (root / "demos" / "episodes.csv").read_text().splitlines()
    assert len(table) == 4 and all(",teleop," in line for line in table[1:]), table
    assert sum(o["success"] for o in outcomes) >= 2, outcomes  # the expert through teleop picks the block up


def test_recorded_bags_become_a_training_set_and_survive_a_lerobot_round_trip(recorded):
    from vla_ros.data.contract import load_contract
    from vla_ros.data.episodes import load_episodes
    from vla_ros.data.importing import import_bags
    from vla_ros.data.lerobot import FRAME_TOLERANCE_PSNR_DB, export_dataset, import_lerobot, psnr

    root, outcomes, _, _, _ = recorded
    contract_path = root / "contract.yaml"
    raw = yaml.safe_load((REPO / "config/import/vla_ros.yaml").read_text())
    contract_path.write_text(yaml.safe_dump({**raw, "image_size": IMAGE_SIZE}))
    report = import_bags([root / "demos"], root / "dataset", load_contract(contract_path), force=True, say=print)
    assert report["imported"] == 3, report["skipped"]
    assert report["frame_age_ms"]["max"] <= 250  # the contract's tolerance_s
    episodes = load_episodes(root / "dataset", successful_only=False)
    assert [e.success for e in episodes] == [o["success"] for o in outcomes]
    for episode, outcome in zip(episodes, outcomes):
        assert episode.instruction == outcome["instruction"] and len(episode.actions) >= 5
        moving = np.abs(episode.actions[:, :3]).max()
        assert 0.02 < moving <= 0.0301, moving  # the expert's steps (up to 3 cm), at the joystick's full speed
        assert abs(episode.joint_pos[0, 0]) < 0.02, "the episode did not start where the layout starts (waist 0)"
    export_dataset(root / "dataset", root / "lerobot", force=True, say=print)
    import_lerobot(root / "lerobot", root / "back", force=True, say=print)
    back = load_episodes(root / "back", successful_only=False)
    for before, after in zip(episodes, back):
        assert np.array_equal(before.actions, after.actions) and np.array_equal(before.joint_pos, after.joint_pos)
        assert psnr(before.images, after.images) > FRAME_TOLERANCE_PSNR_DB


def test_a_small_policy_trains_on_the_lerobot_export(recorded):
    from vla_ros.policy.recipe import TrainRecipe
    from vla_ros.policy.training import train_policy

    root, _, _, _, _ = recorded
    if not (root / "lerobot").is_dir():
        pytest.skip("the export failed in the test before")
    started = time.monotonic()
    recipe = TrainRecipe(steps=30, batch_size=8, learning_rate=3e-3, warmup_steps=5, eval_every=30,
                         checkpoint_every=30, threads=1, shift_pixels=0, proprio_dropout=0.0)
    report = train_policy(root / "lerobot", REPO / "models/policy/vla/tokenizer", root / "policy", recipe,
                          TINY_MODEL, progress=False, export_onnx=False)
    losses = report["history"]["loss"]
    print(f"trained {report['train_samples']} samples in {time.monotonic() - started:.0f} s: loss {losses[0]:.2f} -> "
          f"{losses[-1]:.2f}")
    assert (root / "policy" / "model.safetensors").is_file()
    assert losses[-1] < losses[0]
