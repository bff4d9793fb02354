"""`vla-ros view --bag`, `vla-ros eval --view` and the viewer's bad inputs, read back from the .rrd they write."""

from __future__ import annotations

import socket
from collections import Counter
from pathlib import Path

from ros_harness import REPO
from vla_ros import cli

EPISODE_BAG = REPO / "test/data/replay/episode"  # camera, joint states, instruction, task
REPLAY_BAG = REPO / "test/data/replay/golden/replay"  # the chain's outputs only: no camera, no joint states


def rrd_rows(path: Path) -> Counter:
    """Rows logged per entity path in an .rrd file."""
    from rerun.chunk import RrdReader

    rows: Counter = Counter()
    for chunk in RrdReader(path).stream():
        rows[chunk.entity_path.lstrip("/")] += chunk.num_rows
    return rows


def test_view_bag_shows_camera_arm_task_and_plots(tmp_path, capsys):
    out = tmp_path / "episode.rrd"
    assert cli.main(["view", "--bag", str(EPISODE_BAG), "--save", str(out)]) == 0
    assert "messages" in capsys.readouterr().out
    rows = rrd_rows(out)
    assert rows["camera/image"] >= 10
    assert rows["world/arm/gripper_link"] >= 10 and rows["world/arm/ee_gripper_link"] >= 10
    assert rows["plots/joints/waist"] >= 10
    assert rows["events"] >= 2  # the instruction and the task
    assert rows["status"] >= 1


def test_view_refuses_a_bag_without_the_topics_it_needs(capsys):
    assert cli.main(["view", "--bag", str(REPLAY_BAG), "--save", "unused.rrd"]) == 2
    error = capsys.readouterr().err.strip()
    assert "has none of the topics the view needs" in error and "/joint_states" in error
    assert len(error.splitlines()) == 1


def test_view_refuses_a_missing_bag(tmp_path, capsys):
    assert cli.main(["view", "--bag", str(tmp_path / "nothing"), "--save", str(tmp_path / "x.rrd")]) == 2
    error = capsys.readouterr().err.strip()
    assert "does not exist" in error and len(error.splitlines()) == 1


def test_view_refuses_a_port_in_use(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["view", "--viewer", "web", "--web-port", str(port), "--grpc-port", str(port + 1)]) == 2
    error = capsys.readouterr().err.strip()
    assert f"web port {port} is in use" in error and "--web-port" in error and len(error.splitlines()) == 1


def test_native_viewer_without_a_display_is_one_sentence(monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert cli.main(["view", "--viewer", "native"]) == 2
    error = capsys.readouterr().err.strip()
    assert "no display for the native viewer" in error and "--viewer web" in error and len(error.splitlines()) == 1


def test_eval_view_logs_each_episode_with_its_chunks(tmp_path):
    import rerun as rr

    from vla_ros.policy.evaluation import evaluate
    from vla_ros.policy.runners import PolicyRunner
    from vla_ros.robot.urdf import load_robot
    from vla_ros.viewer.evaluation import EvaluationView
    from vla_ros.viewer.recording import APPLICATION_ID

    out = tmp_path / "eval.rrd"
    stream = rr.RecordingStream(APPLICATION_ID)
    stream.save(str(out))
    view = EvaluationView(stream, load_robot())
    runner = PolicyRunner(REPO / "test/data/replay/policy", "builtin-torch")
    summary = evaluate(runner, "train", 2, max_steps=4, progress=False, view=view)
    stream.flush()
    stream.disconnect()
    assert summary["episodes"] == 2
    rows = rrd_rows(out)
    assert rows["camera/image"] >= 8  # a frame per step, and the frame each chunk was computed from
    assert rows["world/chunk/path"] >= 2 and rows["world/chunk/window"] >= 2
    assert rows["world/arm/gripper_link"] >= 8
    assert rows["events"] >= 4  # per episode: its task, its instruction line and its outcome
