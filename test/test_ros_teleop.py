"""Teleoperation through the real graph: a joystick (sensor_msgs/Joy) → the teleop node → the chunk executor → the
safety monitor → the simulated arm, each a process. Teleop moves the arm only when it is in control, the
policy's chunks never mix in, a silent joystick makes the gate hold, and Joy → controller latency is measured."""

from __future__ import annotations

import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from ros_harness import LaunchedGraph, RosProbe
from sensor_msgs.msg import JointState, Joy
from std_msgs.msg import String
from std_srvs.srv import SetBool
from trajectory_msgs.msg import JointTrajectory

from vla_ros.core import topics
from vla_ros.core.action_tokens import task_hash
from vla_ros.nodes.messages import RCLPY
from vla_ros.nodes.qos import COMMANDS, DEFAULT, LATCHED
from vla_ros.robot.kinematics import ArmKinematics
from vla_ros.robot.wx250s import ARM_JOINTS

pytestmark = pytest.mark.ros

GRAPH = """
description: teleop test graph
arguments: {}
nodes:
  - {name: widowx_sim, executable: widowx_sim, required: true,
     parameters: {camera_rate: 2.0, image_width: 32, image_height: 32}}
  - {name: instruction_listener, executable: instruction_listener, required: true}
  - {name: chunk_executor, executable: chunk_executor, required: true}
  - {name: safety_monitor, executable: safety_monitor, required: true}
  - {name: teleop, executable: teleop, required: true}
"""
TASK = "pick up the red block"
KINEMATICS = ArmKinematics()
LB = 4  # the gamepad mapping's deadman (config/teleop/joy.yaml); left stick y (axis 1) is +x


def joy(forward: float = 0.0, deadman: bool = True) -> Joy:
    axes = [0.0] * 8
    axes[1] = forward
    buttons = [0] * 11
    buttons[LB] = int(deadman)
    return Joy(axes=axes, buttons=buttons)


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    path = tmp_path_factory.mktemp("graph") / "teleop_test.yaml"
    path.write_text(GRAPH)
    launched = LaunchedGraph(str(path))
    probe = RosProbe("teleop_probe")
    probe.controller = []
    probe.node.create_subscription(JointTrajectory, topics.ARM_CONTROLLER,
                                   lambda m: probe.controller.append((time.monotonic(), m)), COMMANDS)
    probe.executed = probe.collect(JointTrajectory, topics.EXECUTED_ACTION, COMMANDS)
    probe.teleop_chunks = probe.collect(JointTrajectory, topics.TELEOP_CHUNK, COMMANDS)
    probe.modes = probe.collect(String, topics.CONTROL_MODE, LATCHED)
    probe.tasks = probe.collect(String, topics.TASK, LATCHED)
    probe.vetoes = []
    probe.node.create_subscription(String, topics.SAFETY_VETO, lambda m: probe.vetoes.append((time.monotonic(), m.data)),
                                   COMMANDS)
    probe.joints = probe.collect(JointState, topics.JOINT_STATES, DEFAULT)
    probe.diagnostics = probe.collect(DiagnosticArray, topics.DIAGNOSTICS, DEFAULT)
    probe.joy_pub = probe.node.create_publisher(Joy, topics.JOY, DEFAULT)
    probe.chunk_pub = probe.node.create_publisher(JointTrajectory, topics.ACTION_CHUNK, COMMANDS)
    probe.instruction_pub = probe.node.create_publisher(String, topics.INSTRUCTION, COMMANDS)
    probe.engage = probe.node.create_client(SetBool, topics.TELEOP_ENGAGE_SERVICE)
    try:
        probe.spin_until(lambda: probe.joy_pub.get_subscription_count() > 0
                         and probe.chunk_pub.get_subscription_count() > 0
                         and probe.instruction_pub.get_subscription_count() > 0
                         and probe.engage.service_is_ready() and probe.modes and len(probe.joints) > 5,
                         60, "the teleop graph")
        probe.wait_for_reports(["widowx_sim", "chunk_executor", "safety_monitor", "teleop"])
        probe.instruction_pub.publish(String(data=TASK))
        probe.spin_until(lambda: probe.tasks and probe.tasks[-1].data == TASK, 15, "the task")
        yield launched, probe
    finally:
        probe.close()
        launched.stop()


def ee(probe) -> np.ndarray:
    msg = probe.joints[-1]
    index = {n: i for i, n in enumerate(msg.name)}
    return KINEMATICS.fk(np.array([msg.position[index[n]] for n in ARM_JOINTS]))[0]


def drive(probe, seconds: float, forward: float = 0.0, deadman: bool = True, rate_hz: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        probe.joy_pub.publish(joy(forward, deadman))
        probe.spin_for(1.0 / rate_hz)


def engage(probe, teleop: bool) -> str:
    future = probe.engage.call_async(SetBool.Request(data=teleop))
    probe.spin_until(future.done, 10, "the engage service")
    mode = "teleop" if teleop else "policy"
    probe.spin_until(lambda: probe.modes and probe.modes[-1].data == mode, 10, f"/vla/control_mode {mode}")
    return future.result().message


def status(probe, node: str) -> dict:
    for array in reversed(probe.diagnostics):
        for entry in array.status:
            if entry.name.endswith(node):
                return {kv.key: kv.value for kv in entry.values}
    return {}


def test_the_joystick_moves_the_arm_only_when_teleop_is_in_control(rig):
    _, probe = rig
    assert probe.modes[-1].data == "policy"
    before = ee(probe)
    drive(probe, 1.0, forward=0.5)
    assert np.linalg.norm(ee(probe) - before) < 0.003, "the arm moved while the policy was in control"
    assert not probe.teleop_chunks, "the teleop node sent chunks while the policy was in control"

    assert "teleop in control" in engage(probe, True)
    drive(probe, 0.6, deadman=False)  # deadman up: zero motion, the lease stays alive
    start, executed = ee(probe), len(probe.executed)
    drive(probe, 1.6, forward=0.5)
    drive(probe, 0.5, deadman=False)
    moved = ee(probe) - start
    step = (0.5 - 0.1) / 0.9 * 0.03 * 0.5  # shaped deflection × scale × the initial speed preset
    assert moved[0] > 4 * step and abs(moved[1]) < 0.01 and abs(moved[2]) < 0.01, moved
    actions = [np.asarray(m.points[0].positions) for m in probe.executed[executed:]]
    moving = [a for a in actions if a[0] > 0]
    assert len(moving) >= 5 and all(np.allclose(a, [step, 0, 0, 0, 0, 0, 1]) for a in moving), moving[:3]
    assert all(m.header.frame_id == "teleop" for m in probe.executed[executed:])
    probe.spin_until(lambda: status(probe, "chunk_executor").get("control_mode") == "teleop", 5, "diagnostics")
    assert status(probe, "safety_monitor").get("control_mode") == "teleop"


def test_joy_to_controller_latency_through_the_gate(rig):
    _, probe = rig
    engage(probe, True)
    latencies = []
    for trial in range(6):
        drive(probe, 0.45 + 0.037 * trial, deadman=False)  # at rest; a different phase against the 5 Hz tick
        count = len(probe.controller)
        reference = np.asarray(probe.controller[-1][1].points[0].positions)
        sent = time.monotonic()
        probe.joy_pub.publish(joy(0.6))

        def moved() -> bool:
            return any(np.abs(np.asarray(m.points[0].positions) - reference).max() > 1e-4
                       for _, m in probe.controller[count:])
        while not moved():
            assert time.monotonic() - sent < 2.0, "no command reached the controller"
            probe.joy_pub.publish(joy(0.6))
            probe.spin_for(0.01)
        arrival = next(t for t, m in probe.controller[count:]
                       if np.abs(np.asarray(m.points[0].positions) - reference).max() > 1e-4)
        latencies.append(arrival - sent)
        drive(probe, 0.2, deadman=False)
    print(f"Joy -> arm controller, through the executor and the safety monitor: "
          f"p50 {np.median(latencies) * 1e3:.0f} ms, max {max(latencies) * 1e3:.0f} ms over {len(latencies)}")
    assert np.median(latencies) < 0.4, latencies  # one 0.2 s control period plus transport


def test_policy_chunks_never_mix_in_while_teleop_is_in_control(rig):
    _, probe = rig
    engage(probe, True)
    drive(probe, 0.4, deadman=False)
    start = ee(probe)
    rejected = int(status(probe, "chunk_executor").get("rejected", 0))
    for _ in range(6):
        chunk = RCLPY.action_chunk(np.tile([0, 0, -0.01, 0, 0, 0, 1.0], (8, 1)),
                                   probe.node.get_clock().now().nanoseconds, 0.2, task_hash(TASK), "00000000000000aa")
        probe.chunk_pub.publish(chunk)
        drive(probe, 0.2, deadman=False)
    drive(probe, 1.2, deadman=False)
    assert abs(ee(probe)[2] - start[2]) < 0.002, "a policy chunk moved the arm while teleop was in control"
    diag = status(probe, "chunk_executor")
    assert int(diag["rejected"]) >= rejected + 6 and diag["last_rejection"] == "a policy chunk while teleop is in control"


def test_a_silent_joystick_makes_the_gate_hold_and_a_live_one_resumes(rig):
    _, probe = rig
    engage(probe, True)
    drive(probe, 0.6, forward=0.4)
    silent_at, vetoes = time.monotonic(), len(probe.vetoes)
    probe.spin_until(lambda: any("teleop" in text for _, text in probe.vetoes[vetoes:]), 3.0,
                     "the safety monitor's hold")
    hold_at, text = next((t, x) for t, x in probe.vetoes[vetoes:] if "teleop" in x)
    assert "sent nothing for 0.50 s" in text and hold_at - silent_at < 1.5, (text, hold_at - silent_at)
    probe.spin_for(0.5)
    rest = ee(probe)
    probe.spin_for(1.0)
    assert np.linalg.norm(ee(probe) - rest) < 0.002, "the arm moved while the joystick was silent"
    start = ee(probe)
    drive(probe, 1.2, forward=0.4)
    assert ee(probe)[0] - start[0] > 0.01, "a live joystick did not move the arm again"


def test_control_goes_back_to_the_policy_explicitly(rig):
    _, probe = rig
    engage(probe, True)
    assert "policy in control" in engage(probe, False)
    drive(probe, 0.3, forward=0.4)
    count = len(probe.teleop_chunks)
    drive(probe, 0.8, forward=0.4)
    assert len(probe.teleop_chunks) == count, "the teleop node kept sending after the policy took control"
    probe.spin_until(lambda: "standing by" in _message(probe, "teleop"), 5, "the teleop node's report")


def _message(probe, node: str) -> str:
    for array in reversed(probe.diagnostics):
        for entry in array.status:
            if entry.name.endswith(node):
                return entry.message
    return ""
