"""The vla_policy node as its own process over real DDS: tokens for an image and a task, nothing without a task."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from ros_harness import REPO, RosProbe, save_tiny_policy
from sensor_msgs.msg import Image
from std_msgs.msg import Int32MultiArray, String

from vla_ros.core import topics
from vla_ros.core.action_tokens import task_hash, unpack_action_tokens
from vla_ros.nodes.qos import COMMANDS, DEFAULT, LATCHED, SENSOR_LATEST

pytestmark = pytest.mark.ros

SIZE = 64


class NodeProcess:
    """`python -m vla_ros.nodes.vla_policy --ros-args …` with its output kept for failure messages."""

    def __init__(self, *parameters: str):
        arguments = [a for p in parameters for a in ("-p", p)]
        self.process = subprocess.Popen([sys.executable, "-m", "vla_ros.nodes.vla_policy", "--ros-args", *arguments],
                                        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True)
        self._reader.start()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(2)  # SIGINT: the node's clean shutdown path
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory):
    """An untrained tiny policy and its (untrained) VQ-VAE tokenizer: enough to exercise the node's wiring."""
    return save_tiny_policy(tmp_path_factory.mktemp("vla_policy") / "policy", SIZE)


@pytest.fixture(scope="module")
def graph(tiny_policy):
    path, tokenizer = tiny_policy
    node = NodeProcess(f"model_path:={path}", "inference_rate:=20.0", "max_image_age:=2.0")
    probe = RosProbe("policy_probe")
    probe.tokens = probe.collect(Int32MultiArray, topics.ACTION_TOKENS, COMMANDS)
    probe.diagnostics = probe.collect(DiagnosticArray, topics.DIAGNOSTICS, DEFAULT)
    probe.task_pub = probe.node.create_publisher(String, topics.TASK, LATCHED)
    probe.image_pub = probe.node.create_publisher(Image, topics.MODEL_IMAGE, SENSOR_LATEST)
    try:
        probe.spin_until(lambda: probe.image_pub.get_subscription_count() > 0
                         and probe.task_pub.get_subscription_count() > 0
                         and probe.node.count_publishers(topics.ACTION_TOKENS) > 0,
                         timeout_s=60, what=f"vla_policy to start and match the probe; its output:\n{node.output}")
        yield probe, tokenizer, node
    finally:
        probe.close()
        code = node.stop()
        assert code == 0, f"vla_policy exited {code}:\n{node.output}"


def frame(probe, seed: int = 0) -> Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    msg = Image(height=SIZE, width=SIZE, encoding="rgb8", step=SIZE * 3, data=pixels.tobytes())
    msg.header.stamp = probe.node.get_clock().now().to_msg()
    msg.header.frame_id = "camera"
    return msg


def set_task(probe, task: str) -> None:
    probe.task_pub.publish(String(data=task))
    probe.spin_for(0.3)  # the node's latched subscription delivers the task before the next frame


def identity_of(msg: Int32MultiArray) -> str:
    return unpack_action_tokens([(d.label, d.size, d.stride) for d in msg.layout.dim], msg.layout.data_offset,
                                np.asarray(msg.data)).identity


def diagnostics_value(probe, key: str) -> float:
    for array in reversed(probe.diagnostics):
        for status in array.status:
            if status.name.endswith("vla_policy"):
                values = {kv.key: kv.value for kv in status.values}
                if key in values:
                    return float(values[key])
    return -1


def test_images_without_a_task_produce_no_tokens(graph):
    probe, _, _ = graph
    set_task(probe, "")
    count = len(probe.tokens)
    for seed in range(5):
        probe.image_pub.publish(frame(probe, seed))
        probe.spin_for(0.2)
    probe.spin_for(1.0)
    assert len(probe.tokens) == count, "the node published tokens while it had no task"
    probe.spin_until(lambda: diagnostics_value(probe, "skipped_no_task") >= 5, 10,
                     "diagnostics counting the frames skipped for want of a task")


def test_an_image_and_a_task_give_one_chunk_of_tokens_with_their_metadata(graph):
    probe, tokenizer, _ = graph
    task = "pick up the red block"
    set_task(probe, task)
    image = frame(probe, 42)
    count = len(probe.tokens)
    probe.image_pub.publish(image)
    probe.spin_until(lambda: len(probe.tokens) > count, 20, "tokens on /vla/action_tokens")
    msg = probe.tokens[-1]
    received = unpack_action_tokens([(d.label, d.size, d.stride) for d in msg.layout.dim], msg.layout.data_offset,
                                    np.asarray(msg.data), vocab_size=tokenizer.vocab_size,
                                    tokens_per_chunk=tokenizer.tokens_per_chunk,
                                    expected_identity=tokenizer.identity, expected_task=task)
    stamp_ns = image.header.stamp.sec * 1_000_000_000 + image.header.stamp.nanosec
    assert received.stamp_ns == stamp_ns
    assert received.task_hash == task_hash(task)
    # one frame, one chunk: the node does not infer again on a frame it has used
    probe.spin_for(1.0)
    assert len(probe.tokens) == count + 1
    probe.spin_until(lambda: diagnostics_value(probe, "chunks_published") >= 1, 10, "chunks_published diagnostics")
    # the slowest inference and the oldest frame used are kept with their time, for finding stalls
    assert diagnostics_value(probe, "latency_ms_max") > 0
    assert diagnostics_value(probe, "inferred_frame_age_ms_max") >= 0
    assert diagnostics_value(probe, "latency_max_at") > 0


def start_up_error(*parameters: str) -> str:
    """The one configuration error line of a vla_policy node that exits 2 at start-up (and no traceback)."""
    node = NodeProcess(*parameters)
    code = node.process.wait(timeout=120)
    node._reader.join(timeout=5)
    assert code == 2, node.output
    errors = [line for line in node.lines if "configuration error" in line]
    assert len(errors) == 1, node.output
    assert "Traceback" not in node.output
    return errors[0]


def test_a_missing_model_is_one_clear_start_up_error(tmp_path):
    assert "no_such_policy is not a saved VLA policy" in start_up_error(f"model_path:={tmp_path / 'no_such_policy'}")


def test_an_adapter_of_another_base_is_one_clear_start_up_error(tiny_policy, tmp_path):
    from vla_ros.policy.adapters import AdapterSpec, add_lora, save_adapter
    from vla_ros.policy.modeling_vla import VLAPolicy

    base = REPO / "models" / "policy" / "vla"
    save_adapter(add_lora(VLAPolicy.from_pretrained(base), AdapterSpec()), AdapterSpec(), tmp_path / "adapter", base)
    error = start_up_error(f"model_path:={tiny_policy[0]}", f"adapter_path:={tmp_path / 'adapter'}")
    assert "was trained on base policy" in error


def test_episode_backend_publishes_the_recorded_episode_through_the_tokenizer(tiny_policy, tmp_path):
    from vla_ros.data.generate import generate_dataset
    from vla_ros.policy.episode_source import EpisodeTokenSource

    import torch

    from vla_ros.tokenizers.loading import new_tokenizer

    # its own tokenizer: the module's builtin node may be running too, and its chunks carry another identity
    torch.manual_seed(1)
    tokenizer = new_tokenizer("vqvae", tiny_policy[1].normalizer, codebook_size=32, hidden_dim=32)
    generate_dataset(tmp_path / "data", 1, seed=3, workers=1, show_progress=False)
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    expected = EpisodeTokenSource(tmp_path / "data", 0, tmp_path / "tokenizer")
    node = NodeProcess("backend:=episode", f"episode_data:={tmp_path / 'data'}", "episode_index:=0",
                       f"tokenizer_path:={tmp_path / 'tokenizer'}", "max_image_age:=2.0")
    probe = RosProbe("episode_probe")
    try:
        tokens = probe.collect(Int32MultiArray, topics.ACTION_TOKENS, COMMANDS)
        task_pub = probe.node.create_publisher(String, topics.TASK, LATCHED)
        image_pub = probe.node.create_publisher(Image, topics.MODEL_IMAGE, SENSOR_LATEST)
        probe.spin_until(lambda: image_pub.get_subscription_count() > 0 and task_pub.get_subscription_count() > 0
                         and probe.node.count_publishers(topics.ACTION_TOKENS) > 0, 60,
                         f"the episode node to start; its output:\n{node.output}")
        task_pub.publish(String(data=expected.instruction))
        mine = [tokenizer.identity]

        def replayed():
            return [m for m in tokens if identity_of(m) in mine]

        # a camera-like stream: the module's builtin node may have matched the probe before this node did
        for seed in range(100):
            image_pub.publish(frame(probe, seed))
            probe.spin_for(0.2)
            if replayed():
                break
        probe.spin_until(replayed, 5, f"replayed tokens; the node's output:\n{node.output}")
        msg = replayed()[-1]
        received = unpack_action_tokens([(d.label, d.size, d.stride) for d in msg.layout.dim],
                                        msg.layout.data_offset, np.asarray(msg.data),
                                        expected_identity=tokenizer.identity, expected_task=expected.instruction)
        # a chunk of the recorded episode (or the hold-still chunk after its end), not a generated one
        assert any(np.array_equal(received.tokens, expected.tokens_at(k)) for k in range(expected.steps + 1))
    finally:
        probe.close()
        assert node.stop() == 0, node.output
