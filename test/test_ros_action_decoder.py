"""action_decoder as a real process: tokens in, chunks out with the observation stamp, bad token messages refused."""

from __future__ import annotations

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from ros_harness import LaunchedGraph, RosProbe
from std_msgs.msg import Int32MultiArray, MultiArrayDimension, String
from trajectory_msgs.msg import JointTrajectory

from vla_ros.core import topics
from vla_ros.core.action_chunks import ACTION_NAMES
from vla_ros.core.action_tokens import pack_action_tokens
from vla_ros.nodes.qos import COMMANDS, DEFAULT, LATCHED
from vla_ros.tokenizers import load_tokenizer
from vla_ros.tokenizers.loading import new_tokenizer
from vla_ros.tokenizers.normalization import ActionNormalizer

pytestmark = pytest.mark.ros

TASK = "put the green block on the towel"


def demo_like_actions(seed: int, n: int = 512) -> np.ndarray:
    rng = np.random.default_rng(seed)
    actions = np.zeros((n, 7), np.float32)
    actions[:, :3] = rng.normal(0, 0.01, (n, 3))
    actions[:, 5] = rng.normal(0, 0.1, n)
    actions[:, 6] = rng.integers(0, 2, n)
    return actions


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokenizers")
    mine = new_tokenizer("vqvae", ActionNormalizer.from_actions(demo_like_actions(0)))
    mine.save_pretrained(root / "mine")
    foreign = new_tokenizer("bins", ActionNormalizer.from_actions(demo_like_actions(1)))
    graph = root / "decoder.yaml"
    graph.write_text(f"""
description: decoder test graph
arguments: {{}}
nodes:
  - {{name: instruction_listener, executable: instruction_listener, required: true}}
  - name: action_decoder
    executable: action_decoder
    required: true
    parameters: {{tokenizer_path: {root / 'mine'}, backend: torch}}
  - name: action_decoder_onnx
    executable: action_decoder
    required: true
    parameters: {{tokenizer_path: {root / 'mine'}, backend: onnx}}
    remappings: {{/vla/action_chunk: /vla/action_chunk_onnx}}
""")
    launched = LaunchedGraph(str(graph))
    probe = RosProbe("decoder_probe")
    probe.tokenizer = load_tokenizer(root / "mine")
    probe.foreign = foreign
    probe.chunks = probe.collect(JointTrajectory, topics.ACTION_CHUNK, COMMANDS)
    probe.onnx_chunks = probe.collect(JointTrajectory, "/vla/action_chunk_onnx", COMMANDS)
    probe.tasks = probe.collect(String, topics.TASK, LATCHED)
    probe.diagnostics = probe.collect(DiagnosticArray, topics.DIAGNOSTICS, DEFAULT)
    probe.token_pub = probe.node.create_publisher(Int32MultiArray, topics.ACTION_TOKENS, COMMANDS)
    probe.instruction_pub = probe.node.create_publisher(String, topics.INSTRUCTION, COMMANDS)
    try:
        probe.spin_until(lambda: probe.token_pub.get_subscription_count() >= 2
                         and probe.instruction_pub.get_subscription_count() > 0
                         and probe.node.count_publishers(topics.ACTION_CHUNK) > 0
                         and probe.node.count_publishers("/vla/action_chunk_onnx") > 0, 60, "the decoders")
        probe.wait_for_reports(["instruction_listener", "action_decoder", "action_decoder_onnx"])
        set_task(probe, TASK)
        yield launched, probe
    finally:
        probe.close()
        code = launched.stop()
        assert code == 0, launched.output


def set_task(probe, text: str) -> None:
    probe.instruction_pub.publish(String(data=text))
    probe.spin_until(lambda: probe.tasks and probe.tasks[-1].data == ("" if text == "stop" else text), 10, "task")
    probe.spin_for(0.3)  # the decoders have their own subscription to the latched task


def token_message(tokens, stamp_ns: int, task: str, identity: str) -> Int32MultiArray:
    fields = pack_action_tokens(np.asarray(tokens), stamp_ns, task, identity)
    msg = Int32MultiArray()
    msg.layout.dim = [MultiArrayDimension(label=label, size=size, stride=stride) for label, size, stride in fields.dims]
    msg.layout.data_offset = fields.data_offset
    msg.data = fields.data.tolist()
    return msg


def actions_of(chunk: JointTrajectory) -> np.ndarray:
    return np.array([p.positions for p in chunk.points])


def test_tokens_become_a_chunk_with_the_same_stamp_and_the_directly_decoded_values(rig):
    _, probe = rig
    tokens = np.arange(probe.tokenizer.tokens_per_chunk) * 37 % probe.tokenizer.vocab_size
    stamp_ns = 1_700_000_000_123_456_789
    count, onnx_count = len(probe.chunks), len(probe.onnx_chunks)
    probe.token_pub.publish(token_message(tokens, stamp_ns, TASK, probe.tokenizer.identity))
    probe.spin_until(lambda: len(probe.chunks) > count and len(probe.onnx_chunks) > onnx_count, 10, "the chunks")
    chunk = probe.chunks[-1]
    assert tuple(chunk.joint_names) == ACTION_NAMES
    assert chunk.header.stamp.sec * 10**9 + chunk.header.stamp.nanosec == stamp_ns
    assert len(chunk.points) == probe.tokenizer.chunk_size
    assert [p.time_from_start.nanosec + p.time_from_start.sec * 10**9 for p in chunk.points] == [
        int(i * 0.2e9) for i in range(len(chunk.points))]
    expected = probe.tokenizer.decode(tokens[None])[0]
    np.testing.assert_allclose(actions_of(chunk), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(actions_of(probe.onnx_chunks[-1]), expected, rtol=0, atol=1e-4)


def _rejections(probe) -> dict[str, int]:
    for array in reversed(probe.diagnostics):
        for status in array.status:
            if status.name.endswith("/action_decoder") or status.name == "action_decoder":
                return {kv.key: int(kv.value) for kv in status.values if kv.key.startswith("rejected_")}
    return {}


def bad_messages(probe):
    t = probe.tokenizer
    good = np.zeros(t.tokens_per_chunk, np.int64)
    malformed = token_message(good, 1, TASK, t.identity)
    malformed.data = [0x1234] + list(malformed.data[1:])
    short = token_message(good, 1, TASK, t.identity)
    short.data = list(short.data[:-2])
    out_of_range = token_message(np.full(t.tokens_per_chunk, t.vocab_size + 5), 1, TASK, t.identity)
    wrong_count = token_message(np.zeros(t.tokens_per_chunk + 1, np.int64), 1, TASK, t.identity)
    foreign = token_message(good, 1, TASK, probe.foreign.identity)
    wrong_task = token_message(good, 1, "pick up the red block", t.identity)
    return [("malformed", malformed), ("malformed", short), ("out_of_range", out_of_range),
            ("out_of_range", wrong_count), ("foreign_tokenizer", foreign), ("wrong_task", wrong_task)]


def test_each_kind_of_bad_token_message_is_refused_counted_and_the_next_good_one_served(rig):
    _, probe = rig
    for key, message in bad_messages(probe):
        before = _rejections(probe).get(f"rejected_{key}", 0)
        count = len(probe.chunks)
        probe.token_pub.publish(message)
        probe.spin_until(lambda: _rejections(probe).get(f"rejected_{key}", 0) > before, 10,
                         f"the decoder to count a {key} rejection")
        assert len(probe.chunks) == count
    good = token_message(np.zeros(probe.tokenizer.tokens_per_chunk, np.int64), 5, TASK, probe.tokenizer.identity)
    count = len(probe.chunks)
    probe.token_pub.publish(good)
    probe.spin_until(lambda: len(probe.chunks) > count, 10, "a chunk after the bad messages")


def test_tokens_without_a_current_task_are_refused(rig):
    _, probe = rig
    set_task(probe, "stop")
    before = _rejections(probe).get("rejected_no_task", 0)
    count = len(probe.chunks)
    probe.token_pub.publish(token_message(np.zeros(probe.tokenizer.tokens_per_chunk, np.int64), 7, TASK,
                                          probe.tokenizer.identity))
    probe.spin_until(lambda: _rejections(probe).get("rejected_no_task", 0) > before, 10, "a no_task rejection")
    assert len(probe.chunks) == count
    set_task(probe, TASK)
