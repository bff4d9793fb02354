"""Executor, command relay and simulated arm as separate processes: chunks in, the arm moves, `stop` stops it."""

from __future__ import annotations

import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from ros_harness import LaunchedGraph, RosProbe
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from vla_ros.core import topics
from vla_ros.core.action_tokens import task_hash
from vla_ros.nodes.qos import COMMANDS, DEFAULT, LATCHED, SENSOR
from vla_ros.nodes.messages import RCLPY
from vla_ros.robot.wx250s import ARM_JOINTS
from vla_ros.robot.kinematics import ArmKinematics

pytestmark = pytest.mark.ros

GRAPH = """
description: executor test graph
arguments: {}
nodes:
  - {name: widowx_sim, executable: widowx_sim, required: true, parameters: {camera_rate: 2.0}}
  - {name: instruction_listener, executable: instruction_listener, required: true}
  - {name: chunk_executor, executable: chunk_executor, required: true}
  - {name: safety_monitor, executable: safety_monitor, required: true, parameters: {policy_lease: 0.0}}
"""
TASK = "pick up the red block"


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    path = tmp_path_factory.mktemp("graph") / "executor_test.yaml"
    path.write_text(GRAPH)
    launched = LaunchedGraph(str(path))
    probe = RosProbe("executor_probe")
    probe.arm_commands = []
    probe.node.create_subscription(JointTrajectory, topics.ARM_COMMAND,
                                   lambda m: probe.arm_commands.append((time.monotonic(), m)), COMMANDS)
    probe.controller = []  # (arrival time, message) of what the safety monitor forwards
    probe.node.create_subscription(JointTrajectory, topics.ARM_CONTROLLER,
                                   lambda m: probe.controller.append((time.monotonic(), m)), COMMANDS)
    probe.joints = probe.collect(JointState, topics.JOINT_STATES, DEFAULT)
    probe.tasks = []
    probe.node.create_subscription(String, topics.TASK, lambda m: probe.tasks.append((time.monotonic(), m.data)),
                                   LATCHED)
    probe.diagnostics = probe.collect(DiagnosticArray, topics.DIAGNOSTICS, DEFAULT)
    probe.images = probe.collect(Image, topics.CAMERA_IMAGE, SENSOR)
    probe.instruction_pub = probe.node.create_publisher(String, topics.INSTRUCTION, COMMANDS)
    probe.chunk_pub = probe.node.create_publisher(JointTrajectory, topics.ACTION_CHUNK, COMMANDS)
    try:
        probe.spin_until(lambda: probe.chunk_pub.get_subscription_count() > 0
                         and probe.instruction_pub.get_subscription_count() > 0
                         and probe.node.count_publishers(topics.ARM_COMMAND) > 0
                         and probe.tasks and len(probe.joints) > 5,
                         30, "the executor graph")
        probe.wait_for_reports(["widowx_sim", "instruction_listener", "chunk_executor", "safety_monitor"])
        yield launched, probe
    finally:
        probe.close()
        launched.stop()


def chunk_msg(probe, task: str, action: np.ndarray, steps: int = 8) -> JointTrajectory:
    return RCLPY.action_chunk(np.tile(action, (steps, 1)), probe.node.get_clock().now().nanoseconds, 0.2,
                                task_hash(task), "00000000000000aa")


def say(probe, text: str) -> float:
    probe.instruction_pub.publish(String(data=text))
    probe.spin_until(lambda: probe.tasks and probe.tasks[-1][1] == ("" if text == "stop" else text), 10,
                     f"the task '{text}'")
    return probe.tasks[-1][0]


def measured_ee(probe) -> np.ndarray:
    msg = probe.joints[-1]
    index = {n: i for i, n in enumerate(msg.name)}
    return KINEMATICS.fk(np.array([msg.position[index[n]] for n in ARM_JOINTS]))[0]


KINEMATICS = ArmKinematics()


def sim_arm_commands(probe) -> int:
    """Arm commands the simulator says it has accepted, from its latest report on /diagnostics (0 before one)."""
    for array in reversed(probe.diagnostics):
        for status in array.status:
            if status.name.endswith("widowx_sim"):
                return int({v.key: v.value for v in status.values}.get("arm_commands", 0))
    return 0


def test_chunks_move_the_simulated_arm_and_stop_halts_it_within_one_control_period(rig):
    launched, probe = rig
    say(probe, TASK)
    # Discovery on localhost is asymmetric: a first chunk proves the executor has matched our publisher, and
    # the simulator counting arm commands proves the safety monitor's controller publisher has matched it.
    deadline = time.monotonic() + 30
    while not (probe.arm_commands and sim_arm_commands(probe) > 0):
        assert time.monotonic() < deadline, "the executor never took a chunk, or the simulator never got a command"
        probe.chunk_pub.publish(chunk_msg(probe, TASK, np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0])))
        probe.spin_for(0.3)
    probe.spin_for(1.0)
    start = measured_ee(probe)
    down = np.array([0.0, 0.0, -0.01, 0.0, 0.0, 0.0, 1.0])  # 1 cm down per 0.2 s step
    count = len(probe.arm_commands)
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:  # a free-running policy's pace: a chunk every 0.2 s
        probe.chunk_pub.publish(chunk_msg(probe, TASK, down))
        probe.spin_for(0.2)
    probe.spin_for(0.6)
    commands = probe.arm_commands[count:]
    assert len(commands) >= 9, f"only {len(commands)} arm commands in 2.5 s at 5 Hz"
    moved = measured_ee(probe) - start
    assert moved[2] < -0.08, f"the end effector moved {moved} (expected about 12 cm down)\n{launched.output}"
    assert abs(moved[0]) < 0.02 and abs(moved[1]) < 0.02
    assert probe.controller and probe.controller[-1][1].header.stamp.sec == 0  # the gate restamps "start now"
    # The monitor keeps pace: each command is forwarded within a control period, not in a late burst
    # (a multi-threaded rclpy executor in the monitor once fell 0.1-2 s behind and vetoed live commands).
    sent = [t for t, _ in probe.arm_commands[count:]]
    forwarded = [t for t, _ in probe.controller if t >= sent[0]]
    lags = [min((f - t for f in forwarded if f >= t), default=float("inf")) for t in sent[:-1]]
    assert max(lags) < 0.2, f"the safety monitor forwarded commands {np.round(lags, 3)} s late"

    # Chunks keep coming (stale ones of the old task, as from a policy that has not heard yet) while we stop.
    for _ in range(3):
        probe.chunk_pub.publish(chunk_msg(probe, TASK, down))
        probe.spin_for(0.2)
    stopped_at = say(probe, "stop")
    for _ in range(5):
        probe.chunk_pub.publish(chunk_msg(probe, TASK, down))
        probe.spin_for(0.2)
    late = [t - stopped_at for t, _ in probe.arm_commands if t > stopped_at]
    assert not late or max(late) <= 0.2, f"arm commands {late} s after stop (control period 0.2 s)"


def test_executor_holds_without_chunks_and_reports_it(rig):
    _, probe = rig
    say(probe, "put the blue block on the plate")
    count = len(probe.arm_commands)
    probe.spin_for(1.0)
    assert len(probe.arm_commands) == count, "the executor commanded the arm without a chunk"
    probe.spin_until(
        lambda: any(s.name.endswith("chunk_executor") and "no chunk received" in s.message
                    for d in probe.diagnostics[-5:] for s in d.status),
        5, "the executor's diagnostics to report the hold")
    say(probe, "stop")


def test_sim_renders_in_its_own_thread_and_reports_loop_timing(rig):
    """Camera frames keep coming at camera_rate while /joint_states flow; diagnostics carry the timing."""
    _, probe = rig
    images, joints = len(probe.images), len(probe.joints)
    probe.spin_for(3.0)
    frames = probe.images[images:]
    assert len(frames) >= 3, f"{len(frames)} camera frames in 3 s at 2 Hz"
    stamps = [f.header.stamp.sec + f.header.stamp.nanosec * 1e-9 for f in frames]
    assert all(b > a for a, b in zip(stamps, stamps[1:])) and frames[-1].width == 128
    assert len(probe.joints) - joints >= 50  # 50 Hz joint states, whatever the renderer does
    probe.spin_until(
        lambda: any(s.name.endswith("widowx_sim") and {"physics_lateness_max_ms", "render_max_ms", "frames_skipped",
                                                           "scheduling", "arm_commands"} <= {v.key for v in s.values}
                    for d in probe.diagnostics[-5:] for s in d.status),
        5, "widowx_sim's loop timing on /diagnostics")
