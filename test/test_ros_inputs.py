"""The input nodes as separate processes over real DDS: `vla-ros launch`, `vla-ros say`, and a probe node."""

from __future__ import annotations

import os
import re
import signal
import struct
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.duration import Duration
from ros_harness import LaunchedGraph, RosProbe, run_cli
from sensor_msgs.msg import Image
from std_msgs.msg import String

from vla_ros.core import topics
from vla_ros.nodes.qos import COMMANDS, DEFAULT, LATCHED, SENSOR, SENSOR_LATEST

pytestmark = pytest.mark.ros

MODEL_SIZE = 64
QUADRANTS_RGB = [(220, 30, 30), (30, 200, 40), (20, 40, 210), (240, 240, 20)]


@pytest.fixture(scope="module")
def graph():
    launched = LaunchedGraph("inputs", f"image_size:={MODEL_SIZE}")
    probe = RosProbe()
    probe.tasks = probe.collect(String, topics.TASK, LATCHED)
    probe.rejections = probe.collect(String, topics.INSTRUCTION_REJECTED, COMMANDS)
    probe.images = probe.collect(Image, topics.MODEL_IMAGE, SENSOR_LATEST)
    probe.diagnostics = probe.collect(DiagnosticArray, topics.DIAGNOSTICS, DEFAULT)
    probe.instruction_pub = probe.node.create_publisher(String, topics.INSTRUCTION, COMMANDS)
    probe.camera_pub = probe.node.create_publisher(Image, topics.CAMERA_IMAGE, SENSOR)
    try:
        probe.spin_until(
            lambda: probe.instruction_pub.get_subscription_count() > 0
            and probe.camera_pub.get_subscription_count() > 0
            and probe.node.count_publishers(topics.MODEL_IMAGE) > 0
            and probe.tasks,
            timeout_s=30,
            what="the launched nodes to match the probe",
        )
        yield launched, probe
    finally:
        probe.close()
        code = launched.stop()
        assert code == 0, f"vla-ros launch exited {code}:\n{launched.output}"


def camera_frame(height: int, width: int, encoding: str = "bgr8", stamp=None) -> Image:
    rgb = np.zeros((height, width, 3), np.uint8)
    h2, w2 = height // 2, width // 2
    rgb[:h2, :w2], rgb[:h2, w2:], rgb[h2:, :w2], rgb[h2:, w2:] = QUADRANTS_RGB
    pixels = rgb[..., ::-1] if encoding == "bgr8" else rgb
    msg = Image(height=height, width=width, encoding=encoding, step=width * 3, data=pixels.tobytes())
    msg.header.frame_id = "test_camera"
    return msg


def publish_frame_until_received(probe, frame: Image, what: str, timeout_s=15.0) -> tuple[Image, list]:
    """Camera frames are best effort and dropped when late: resend, freshly stamped, until one comes through."""
    count, stamps = len(probe.images), []
    deadline = time.monotonic() + timeout_s
    while len(probe.images) == count:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        frame.header.stamp = probe.node.get_clock().now().to_msg()
        stamps.append((frame.header.stamp.sec, frame.header.stamp.nanosec))
        probe.camera_pub.publish(frame)
        probe.spin_for(0.3)
    return probe.images[-1], stamps


def send_instruction(probe, payload) -> None:
    """Publish text, or raw serialized bytes (how invalid UTF-8 can be sent at all)."""
    probe.instruction_pub.publish(String(data=payload) if isinstance(payload, str) else payload)
    assert probe.instruction_pub.wait_for_all_acked(Duration(seconds=10))


def test_say_sets_the_latched_task_seen_by_a_third_process(graph):
    _, probe = graph
    result = run_cli("say", "  Pick UP the RED\tblock!  ", "--timeout", "20")
    assert result.returncode == 0, result.stderr
    assert "accepted: task 'pick up the red block'" in result.stdout
    probe.spin_until(lambda: probe.tasks[-1].data == "pick up the red block", 10, "the task on /vla/task")
    # A node that subscribes later still gets the current task (transient local).
    late = probe.collect(String, topics.TASK, LATCHED)
    probe.spin_until(lambda: late, 10, "the latched task for a late subscriber")
    assert late[-1].data == "pick up the red block"


def test_say_reports_a_rejection_with_its_reason(graph):
    result = run_cli("say", "   ", "--timeout", "20")
    assert result.returncode == 3
    assert "rejected: instruction is empty" in result.stderr


def test_bgr8_frame_arrives_as_rgb8_at_model_size_with_its_stamp(graph):
    _, probe = graph
    out, stamps = publish_frame_until_received(probe, camera_frame(480, 640), "/vla/image")
    assert (out.encoding, out.height, out.width, out.step) == ("rgb8", MODEL_SIZE, MODEL_SIZE, MODEL_SIZE * 3)
    assert (out.header.stamp.sec, out.header.stamp.nanosec) in stamps
    assert out.header.frame_id == "test_camera"
    pixels = np.frombuffer(bytes(out.data), np.uint8).reshape(MODEL_SIZE, MODEL_SIZE, 3)
    quarter = MODEL_SIZE // 4
    corners = [pixels[quarter, quarter], pixels[quarter, -quarter], pixels[-quarter, quarter],
               pixels[-quarter, -quarter]]
    for got, expected in zip(corners, QUADRANTS_RGB):
        assert np.abs(got.astype(int) - expected).max() <= 2, (got, expected)


@pytest.mark.parametrize(
    "payload, reason",
    [
        ("x" * (1 << 20), "1048576 characters long; at most 512"),
        (b"\x00\x01\x00\x00" + struct.pack("<I", 6) + b"\xff\xfe\xfdab\x00", "not valid UTF-8 (byte 0xff at offset 0)"),
        (" \t \n ", "empty once whitespace and control characters are removed"),
        ("\x01\x02\x1b\x7f", "empty once whitespace and control characters are removed"),
    ],
)
def test_bad_instructions_are_rejected_and_the_next_one_is_served(graph, payload, reason):
    _, probe = graph
    count = len(probe.rejections)
    send_instruction(probe, payload)
    probe.spin_until(lambda: len(probe.rejections) > count, 10, "a rejection")
    assert reason in probe.rejections[-1].data
    send_instruction(probe, "put the blue block on the plate")
    probe.spin_until(lambda: probe.tasks[-1].data == "put the blue block on the plate", 10, "the next task")


def test_malformed_and_stale_frames_are_dropped_and_the_next_one_is_served(graph):
    _, probe = graph
    liar = camera_frame(10, 10)
    liar.height, liar.width, liar.step = 480, 640, 1920  # claims 640x480, carries 10x10
    liar.header.stamp = probe.node.get_clock().now().to_msg()
    stale = camera_frame(48, 64)
    stale.header.stamp = (probe.node.get_clock().now() - Duration(seconds=10)).to_msg()
    count = len(probe.images)
    for bad in (liar, stale):
        probe.camera_pub.publish(bad)
    probe.spin_for(1.0)
    assert len(probe.images) == count, "a malformed or stale frame reached /vla/image"
    out, stamps = publish_frame_until_received(probe, camera_frame(48, 64, encoding="rgb8"),
                                               "a valid frame after bad ones")
    assert (out.header.stamp.sec, out.header.stamp.nanosec) in stamps
    probe.spin_until(
        lambda: any(
            status.name.endswith("camera_ingest")
            and {kv.key: kv.value for kv in status.values}.get("dropped_malformed", "0") != "0"
            and {kv.key: kv.value for kv in status.values}.get("dropped_stale", "0") != "0"
            # the 10 s old frame is the oldest seen: the peak the benchmarks use to find a late stage
            and float({kv.key: kv.value for kv in status.values}.get("frame_age_ms_max", "0")) >= 9000
            for array in probe.diagnostics
            for status in array.status
        ),
        10,
        "camera_ingest diagnostics counting malformed and stale drops and the oldest frame",
    )


def test_a_burst_of_1000_instructions_leaves_the_listener_responsive(graph):
    _, probe = graph
    started = time.monotonic()
    for index in range(1000):
        probe.instruction_pub.publish(String(data=f"pick up block number {index}"))
    assert time.monotonic() - started < 2.0
    assert probe.instruction_pub.wait_for_all_acked(Duration(seconds=10))
    probe.spin_until(lambda: probe.tasks[-1].data == "pick up block number 999", 10, "the last instruction to win")
    send_instruction(probe, "stop")
    probe.spin_until(lambda: probe.tasks[-1].data == "", 3, "stop to be served right after the burst")


def test_launch_prefixes_output_with_node_names(graph):
    launched, _ = graph
    assert re.search(r"^\[instruction_listener\] ", launched.output, re.M)
    assert re.search(r"^\[camera_ingest\] ", launched.output, re.M)


def test_a_required_node_dying_stops_the_graph_with_an_error():
    launched = LaunchedGraph("inputs")
    try:
        pid = launched.pid("camera_ingest")
        time.sleep(1.0)
        os.kill(pid, signal.SIGKILL)
        code = launched.process.wait(timeout=30)
    finally:
        launched.stop()
    assert code != 0
    assert "camera_ingest is required: stopping the graph" in launched.output
    assert "failed: camera_ingest" in launched.output
