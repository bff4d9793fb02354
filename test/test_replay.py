"""`vla-ros replay` on the committed episode bag: golden check, a changed tokenizer caught, determinism, bad input.

The fixtures in test/data/replay are rebuilt by test/data/make_golden.py (a 13-step sim episode at 64 px, a tiny
policy that memorized it, and the golden output of replaying the one with the other).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from vla_ros.bags.reading import BagReader
from vla_ros.cli import main

DATA = Path(__file__).parent / "data" / "replay"
EPISODE, POLICY, GOLDEN = DATA / "episode", DATA / "policy", DATA / "golden"
ARGS = ["--arg", "image_size:=64", "--quiet"]


def replay(*extra: str) -> int:
    return main(["replay", "--policy", str(POLICY), *ARGS, *extra])


def bag_messages(folder: Path) -> list[tuple[str, int, bytes]]:
    with BagReader(folder / "replay") as reader:
        return [(m.topic, m.timestamp_ns, m.data) for m in reader.messages()]


def test_replay_matches_the_golden_run_and_is_byte_identical_when_repeated(tmp_path, capsys):
    assert replay("--bag", str(EPISODE), "--out", str(tmp_path / "a"), "--check", str(GOLDEN)) == 0
    assert "matches golden" in capsys.readouterr().out
    assert replay("--bag", str(EPISODE), "--out", str(tmp_path / "b")) == 0
    first, second = bag_messages(tmp_path / "a"), bag_messages(tmp_path / "b")
    assert first == second
    topics = {topic for topic, _, _ in first}
    for topic in ("/vla/image", "/vla/action_tokens", "/vla/action_chunk", "/vla/arm_command",
                  "/wx250s/arm_controller/joint_trajectory", "/wx250s/gripper_controller/joint_trajectory"):
        assert topic in topics, topic
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["chunks"] > 0 and summary["tokens_per_chunk"] == [8]
    assert summary["controller_commands"]["arm_count"] == summary["output_messages"]["/vla/arm_command"]
    assert summary["settings"]["chunk_executor"]["execute_steps"] == 3  # the widowx graph's value
    assert {"p50_ms", "p95_ms"} <= set(summary["latency_ms"]["policy"])


def test_a_changed_tokenizer_is_caught_at_the_action_chunks(tmp_path, capsys):
    from vla_ros.tokenizers.loading import load_tokenizer

    tokenizer = load_tokenizer(POLICY / "tokenizer")
    weight = next(iter(tokenizer.decoder_module().parameters()))
    with __import__("torch").no_grad():
        weight.view(-1)[0] += 1e-3
    tokenizer.invalidate_identity()
    tokenizer.save_pretrained(tmp_path / "changed")
    code = replay("--bag", str(EPISODE), "--tokenizer", str(tmp_path / "changed"), "--check", str(GOLDEN))
    assert code == 1
    message = capsys.readouterr().err
    assert "first divergence on /vla/action_chunk" in message, message
    assert "expected" in message and "got" in message


def test_a_changed_value_is_named_with_its_field_and_time(tmp_path):
    """The comparison itself: one float in one chunk changed by more than the tolerance."""
    from vla_ros.bags.golden import compare_bags
    from vla_ros.bags.message_types import typestore
    from vla_ros.bags.writing import BagWriter

    store = typestore()
    with BagReader(GOLDEN / "replay") as reader:
        types = {name: t.msgtype for name, t in reader.info.topics.items()}
        messages = list(reader.messages())
    target = next(i for i, m in enumerate(messages) if m.topic == "/vla/action_chunk")
    chunk = store.deserialize_cdr(messages[target].data, types["/vla/action_chunk"])
    positions = chunk.points[2].positions.copy()
    positions[1] += 1e-3
    chunk.points[2].positions = positions
    with BagWriter(tmp_path / "edited") as writer:
        for name, msgtype in types.items():
            writer.add_topic(name, msgtype)
        for i, m in enumerate(messages):
            data = bytes(store.serialize_cdr(chunk, m.msgtype)) if i == target else m.data
            writer.write(m.topic, m.timestamp_ns, data)
    divergence = compare_bags(GOLDEN / "replay", tmp_path / "edited")
    assert divergence.topic == "/vla/action_chunk" and divergence.field == "points[2].positions[1]"
    assert divergence.time_s == pytest.approx((messages[target].timestamp_ns - messages[0].timestamp_ns) / 1e9)
    assert compare_bags(GOLDEN / "replay", GOLDEN / "replay") is None


def _bag_without(tmp_path: Path, drop: set[str]) -> Path:
    from vla_ros.bags.writing import BagWriter

    with BagReader(EPISODE) as reader:
        kept = [(n, t.msgtype) for n, t in reader.info.topics.items() if n not in drop]
        messages = [m for m in reader.messages() if m.topic not in drop]
    with BagWriter(tmp_path / "input") as writer:
        for name, msgtype in kept:
            writer.add_topic(name, msgtype)
        for m in messages:
            writer.write(m.topic, m.timestamp_ns, m.data)
    return tmp_path / "input"


def _truncated(tmp_path: Path) -> Path:
    copy = tmp_path / "truncated"
    shutil.copytree(EPISODE, copy)
    storage = next(copy.glob("*.mcap"))
    data = storage.read_bytes()
    storage.write_bytes(data[: len(data) // 2])
    return copy


BAD_INPUTS = {
    "missing bag": (lambda tmp: ["--bag", str(tmp / "nowhere")], "does not exist"),
    "corrupt bag": (lambda tmp: ["--bag", str(_truncated(tmp))], "corrupt"),
    "no camera": (lambda tmp: ["--bag", str(_bag_without(tmp, {"/camera/image_raw"}))], "no camera topic"),
    "no joint states": (lambda tmp: ["--bag", str(_bag_without(tmp, {"/joint_states"}))], "/joint_states"),
    "no task": (lambda tmp: ["--bag", str(_bag_without(tmp, {"/vla/task", "/vla/instruction"}))], "--task"),
    "missing model": (lambda tmp: ["--bag", str(EPISODE), "--policy", str(tmp / "no_policy")], "no_policy"),
    "bad tokenizer": (lambda tmp: ["--bag", str(EPISODE), "--tokenizer", str(tmp)], "tokenizer"),
    "unknown graph argument": (lambda tmp: ["--bag", str(EPISODE), "--arg", "nope:=1"], "nope"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_sentence_with_no_output_left(tmp_path, capsys, case):
    build, expected = BAD_INPUTS[case]
    arguments = build(tmp_path)
    out = tmp_path / "out"
    code = main(["replay", "--policy", str(POLICY), *ARGS, *arguments, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.startswith("vla-ros replay:")]
    assert len(lines) == 1 and expected in lines[0], err
    assert "Traceback" not in err
    assert not out.exists() and not Path(str(out) + ".partial").exists()


def test_an_existing_output_is_refused(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    assert replay("--bag", str(EPISODE), "--out", str(tmp_path / "out")) == 2
    assert "already exists" in capsys.readouterr().err


def test_instruction_only_bags_take_the_listeners_normalized_task(tmp_path):
    """A bag with /vla/instruction but no /vla/task gives the same output as the golden (same normalized task)."""
    bag = _bag_without(tmp_path, {"/vla/task"})
    assert replay("--bag", str(bag), "--out", str(tmp_path / "out"), "--check", str(GOLDEN)) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["task_source"] == "/vla/instruction"
    assert np.isfinite(summary["speed_vs_real_time"])


def test_a_policy_that_reads_the_wrist_camera_replays_a_bag_that_recorded_it(tmp_path, capsys):
    """camera_ingest's extra_cameras in replay: each wrist frame is kept and composed beside the next primary one."""
    from vla_ros.bags.writing import BagWriter
    from vla_ros.policy.modeling_vla import VLAPolicy, with_views

    with_views(VLAPolicy.from_pretrained(POLICY), ["wrist"]).save_pretrained(tmp_path / "policy")
    with BagReader(EPISODE) as reader:
        kept = [(n, t.msgtype) for n, t in reader.info.topics.items()]
        messages = list(reader.messages())
    with BagWriter(tmp_path / "input") as writer:
        for name, msgtype in [*kept, ("/camera/wrist/image_raw", "sensor_msgs/msg/Image")]:
            writer.add_topic(name, msgtype)
        for m in messages:
            writer.write(m.topic, m.timestamp_ns, m.data)
            if m.topic == "/camera/image_raw":  # the recorded frame stands in for the wrist camera's, a bit earlier
                writer.write("/camera/wrist/image_raw", m.timestamp_ns - 1_000_000, m.data)
    arguments = ["replay", "--policy", str(tmp_path / "policy"), *ARGS, "--arg", "extra_cameras:=wrist"]
    assert main([*arguments, "--bag", str(tmp_path / "input"), "--out", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["chunks"] > 0 and summary["settings"]["camera_ingest"]["extra_cameras"] == "wrist"
    from vla_ros.bags.replay_messages import deserialize

    with BagReader(tmp_path / "out" / "replay") as reader:
        image = next(m for m in reader.messages() if m.topic == "/vla/image")
        image = deserialize(image.data, image.msgtype)
    assert (image.width, image.height) == (128, 64)  # the primary view, then the wrist view
    # a bag without the wrist camera: one sentence naming its topic
    capsys.readouterr()
    assert main([*arguments, "--bag", str(EPISODE), "--out", str(tmp_path / "none")]) == 2
    assert "no image topic /camera/wrist/image_raw of the wrist camera" in capsys.readouterr().err
