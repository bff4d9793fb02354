"""Fault injection in the closed loop: simulated arm, executor and safety monitor as separate processes;
the test feeds action chunks (as the policy and decoder would) and asserts what reaches the controllers."""

from __future__ import annotations

import os
import signal
import struct
import time

import numpy as np
import pytest
from ros_harness import LaunchedGraph, RosProbe
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from vla_ros.core import topics
from vla_ros.core.action_tokens import task_hash
from vla_ros.core.safety.limits import BRIDGE_WORKSPACE_MAX, BRIDGE_WORKSPACE_MIN
from vla_ros.nodes.qos import COMMANDS, DEFAULT, LATCHED
from vla_ros.nodes.messages import RCLPY
from vla_ros.robot.wx250s import ARM_JOINTS
from vla_ros.robot.kinematics import ArmKinematics

pytestmark = pytest.mark.ros

KIN = ArmKinematics()
TASK = "pick up the red block"
GRAPH = """
description: closed loop without the learned parts
arguments: {}
nodes:
  - {name: widowx_sim, executable: widowx_sim, required: true, parameters: {camera_rate: 2.0}}
  - {name: instruction_listener, executable: instruction_listener, required: true}
  - {name: chunk_executor, executable: chunk_executor, required: false}
  - {name: safety_monitor, executable: safety_monitor, required: true, parameters: {policy_lease: 0.0}}
"""


@pytest.fixture
def loop(tmp_path):
    path = tmp_path / "closed_loop.yaml"
    path.write_text(GRAPH)
    launched = LaunchedGraph(str(path))
    probe = RosProbe("closed_loop_probe")
    probe.outputs = []
    probe.node.create_subscription(
        JointTrajectory, topics.ARM_CONTROLLER,
        lambda m: probe.outputs.append((time.monotonic(), np.array(m.points[0].positions))), COMMANDS)
    probe.commands = []
    probe.node.create_subscription(JointTrajectory, topics.ARM_COMMAND,
                                   lambda m: probe.commands.append(time.monotonic()), COMMANDS)
    probe.vetoes = []
    probe.node.create_subscription(String, topics.SAFETY_VETO,
                                   lambda m: probe.vetoes.append((time.monotonic(), m.data)), COMMANDS)
    probe.tasks = probe.collect(String, topics.TASK, LATCHED)
    probe.joints = probe.collect(JointState, topics.JOINT_STATES, DEFAULT)
    probe.instruction_pub = probe.node.create_publisher(String, topics.INSTRUCTION, COMMANDS)
    probe.chunk_pub = probe.node.create_publisher(JointTrajectory, topics.ACTION_CHUNK, COMMANDS)
    try:
        probe.spin_until(lambda: probe.chunk_pub.get_subscription_count() > 0
                         and probe.instruction_pub.get_subscription_count() > 0
                         and probe.node.count_publishers(topics.ARM_CONTROLLER) > 0
                         and probe.tasks and len(probe.joints) > 5, 30, "the closed-loop graph")
        probe.wait_for_reports(["widowx_sim", "instruction_listener", "chunk_executor", "safety_monitor"])
        probe.instruction_pub.publish(String(data=TASK))
        probe.spin_until(lambda: probe.tasks[-1].data == TASK, 10, "the task")
        # Discovery on localhost is asymmetric: stream until the executor has surely matched our publisher.
        deadline = time.monotonic() + 30
        while not probe.outputs:
            assert time.monotonic() < deadline, f"no motion from the warm-up chunks\n{launched.output[-2000:]}"
            stream(probe, SIDEWAYS, 0.4)
        probe.spin_for(1.0)  # the warm-up chunk's window runs out
        yield launched, probe
    finally:
        probe.close()
        launched.stop()


def chunk(probe, action, obs_age=0.0) -> JointTrajectory:
    stamp = probe.node.get_clock().now().nanoseconds - int(obs_age * 1e9)
    return RCLPY.action_chunk(np.tile(action, (8, 1)), stamp, 0.2, task_hash(TASK), "00000000000000aa")


def stream(probe, action, seconds, obs_age=0.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        probe.chunk_pub.publish(chunk(probe, action, obs_age))
        probe.spin_for(0.2)


SIDEWAYS = np.array([0.0, 0.01, 0.0, 0.0, 0.0, 0.0, 1.0])


def test_chunks_from_a_stale_camera_frame_never_move_the_arm(loop):
    _, probe = loop
    start = len(probe.outputs)
    stream(probe, SIDEWAYS, 1.5, obs_age=3.0)
    assert len(probe.outputs) == start


def test_a_nan_in_a_chunk_never_reaches_the_arm(loop):
    _, probe = loop
    stream(probe, SIDEWAYS, 1.0)
    start = len(probe.outputs)
    poisoned = SIDEWAYS.copy()
    poisoned[2] = np.nan
    stream(probe, poisoned, 1.0)
    # The last valid chunk may finish its executed window (3 steps); the NaN chunks add nothing.
    assert len(probe.outputs) - start <= 3
    settled = len(probe.outputs)
    stream(probe, poisoned, 1.0)
    assert len(probe.outputs) == settled
    assert all(np.all(np.isfinite(p)) for _, p in probe.outputs)


def test_a_target_outside_the_workspace_is_vetoed(loop):
    _, probe = loop
    stream(probe, np.array([0.0, 0.0, -0.03, 0.0, 0.0, 0.0, 1.0]), 3.5)  # 15 cm/s straight down, through the table
    assert any("outside the workspace" in reason for _, reason in probe.vetoes)
    low, high = np.array(BRIDGE_WORKSPACE_MIN), np.array(BRIDGE_WORKSPACE_MAX)
    for _, positions in probe.outputs:
        ee = KIN.fk(positions)[0]
        assert np.all(ee >= low - 1e-6) and np.all(ee <= high + 1e-6), ee


def test_a_long_or_undecodable_instruction_during_motion_leaves_motion_unaffected(loop):
    _, probe = loop
    stream(probe, SIDEWAYS, 1.0)
    before = len(probe.outputs)
    probe.instruction_pub.publish(String(data="x" * (1 << 20)))
    probe.instruction_pub.publish(b"\x00\x01\x00\x00" + struct.pack("<I", 4) + b"\xff\xfeA\x00")
    stream(probe, SIDEWAYS, 2.0)
    assert probe.tasks[-1].data == TASK
    assert len(probe.outputs) - before >= 8, "motion slowed or stopped"
    assert not probe.vetoes


def test_the_executor_killed_mid_task_makes_the_arm_hold(loop):
    launched, probe = loop
    stream(probe, SIDEWAYS, 1.2)
    assert probe.outputs, "no motion before the fault"
    os.kill(launched.pid("chunk_executor"), signal.SIGKILL)
    killed_at = time.monotonic()
    probe.spin_until(lambda: any(t > killed_at and "chunk_executor is gone" in r for t, r in probe.vetoes), 5,
                     "the hold after the executor's death")
    hold_after = next(t for t, r in probe.vetoes if t > killed_at and "chunk_executor" in r) - killed_at
    assert hold_after < 0.5, f"hold {hold_after:.3f} s after the executor died"
    probe.spin_for(1.0)
    assert all(t - killed_at < hold_after + 0.05 for t, _ in probe.outputs), "commands after the hold"


def test_the_vla_node_killed_mid_task_makes_the_arm_hold(tmp_path):
    """The real chain (camera → replay policy → decoder → executor → monitor → simulated arm), then SIGKILL."""
    from vla_ros.data.generate import generate_dataset

    generate_dataset(tmp_path / "data", 1, seed=11, workers=1, show_progress=False)
    graph_file = tmp_path / "replay_chain.yaml"
    graph_file.write_text(f"""
description: the chain with the replay policy
arguments: {{}}
nodes:
  - {{name: widowx_sim, executable: widowx_sim, required: true}}
  - {{name: camera_ingest, executable: camera_ingest, required: true}}
  - {{name: instruction_listener, executable: instruction_listener, required: true}}
  - name: vla_policy
    executable: vla_policy
    required: false
    parameters: {{backend: episode, episode_data: {tmp_path / 'data'}, tokenizer_path: models/tokenizers/vqvae}}
  - {{name: action_decoder, executable: action_decoder, required: true,
     parameters: {{tokenizer_path: models/tokenizers/vqvae}}}}
  - {{name: chunk_executor, executable: chunk_executor, required: true}}
  - {{name: safety_monitor, executable: safety_monitor, required: true}}
""")
    launched = LaunchedGraph(str(graph_file))
    probe = RosProbe("policy_kill_probe")
    outputs, vetoes = [], []
    probe.node.create_subscription(JointTrajectory, topics.ARM_CONTROLLER,
                                   lambda m: outputs.append(time.monotonic()), COMMANDS)
    probe.node.create_subscription(String, topics.SAFETY_VETO,
                                   lambda m: vetoes.append((time.monotonic(), m.data)), COMMANDS)
    instruction_pub = probe.node.create_publisher(String, topics.INSTRUCTION, COMMANDS)
    try:
        probe.spin_until(lambda: instruction_pub.get_subscription_count() > 0
                         and probe.node.count_publishers(topics.ACTION_TOKENS) > 0
                         and probe.node.count_publishers(topics.ARM_CONTROLLER) > 0, 60, "the chain")
        probe.wait_for_reports(["widowx_sim", "camera_ingest", "instruction_listener", "vla_policy",
                                "action_decoder", "chunk_executor", "safety_monitor"])
        instruction_pub.publish(String(data=TASK))
        probe.spin_until(lambda: len(outputs) >= 4, 30, "motion from the replayed demonstration")
        os.kill(launched.pid("vla_policy"), signal.SIGKILL)
        killed_at = time.monotonic()
        probe.spin_until(lambda: any(t > killed_at and "vla_policy is gone" in r for t, r in vetoes), 5,
                         "the hold after the policy's death")
        hold_after = next(t for t, r in vetoes if t > killed_at and "vla_policy" in r) - killed_at
        probe.spin_for(1.5)
    finally:
        probe.close()
        launched.stop()
    # 200 ms is the target (benchmarks/bench_safety.py measures it); the test allows for a loaded CI machine.
    assert hold_after < 0.4, f"hold {hold_after:.3f} s after the policy died"
    assert all(t - killed_at <= hold_after + 0.05 for t in outputs), "commands forwarded after the hold"
