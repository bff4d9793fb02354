"""A policy that reads the wrist camera, through the full `widowx` graph (every node a process, real DDS): the
simulator renders both cameras, camera_ingest composes them side by side, and vla_policy infers on both views.

The policy is an untrained tiny one (`extra_cameras: ["wrist"]`): this checks the wiring, not success.
"""

from __future__ import annotations

import numpy as np
import pytest
from ros_harness import LaunchedGraph, RosProbe, save_tiny_policy
from sensor_msgs.msg import Image
from std_msgs.msg import Int32MultiArray, String

from vla_ros.core import topics
from vla_ros.nodes.qos import COMMANDS, SENSOR, SENSOR_LATEST

pytestmark = pytest.mark.ros

SIZE = 64


@pytest.fixture(scope="module")
def two_view_policy(tmp_path_factory):
    path, _ = save_tiny_policy(tmp_path_factory.mktemp("two_view") / "policy", SIZE, extra_cameras=["wrist"])
    return path


def test_the_graph_carries_the_wrist_view_to_a_policy_that_reads_it(two_view_policy):
    graph = LaunchedGraph("widowx", "extra_cameras:=wrist", f"image_size:={SIZE}", f"policy_path:={two_view_policy}",
                          f"tokenizer_path:={two_view_policy / 'tokenizer'}")
    probe = RosProbe("views_probe")
    wrist = probe.collect(Image, topics.camera_image("wrist"), SENSOR)
    model_images = probe.collect(Image, topics.MODEL_IMAGE, SENSOR_LATEST)
    tokens = probe.collect(Int32MultiArray, topics.ACTION_TOKENS, COMMANDS)
    instruction = probe.node.create_publisher(String, topics.INSTRUCTION, COMMANDS)
    try:
        probe.spin_until(lambda: graph.process.poll() is None and wrist and model_images
                         and instruction.get_subscription_count() > 0
                         and probe.node.count_publishers(topics.ACTION_TOKENS) > 0, 120,
                         f"the wrist camera and /vla/image; the graph's output:\n{graph.output[-3000:]}")
        assert wrist[-1].header.frame_id == "wrist_camera" and (wrist[-1].width, wrist[-1].height) == (SIZE, SIZE)
        composed = model_images[-1]
        assert (composed.width, composed.height) == (2 * SIZE, SIZE)  # the primary view, then the wrist view
        pixels = np.frombuffer(bytes(composed.data), np.uint8).reshape(SIZE, 2 * SIZE, 3)
        assert not np.array_equal(pixels[:, :SIZE], pixels[:, SIZE:])
        instruction.publish(String(data="pick up the red block"))
        probe.spin_until(lambda: tokens, 60, f"action tokens; the graph's output:\n{graph.output[-3000:]}")
    finally:
        probe.close()
        code = graph.stop()
    assert code == 0, f"the graph exited with code {code}\n{graph.output[-3000:]}"
    assert "camera views side by side" not in graph.output  # vla_policy refused no frame as having too few views
