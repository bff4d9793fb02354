"""Fault injection at the safety monitor as a real process: the test plays the arm (joint states, /clock) and a
faulty upstream (arm commands), and asserts what reaches the controller topics."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
from rclpy.time import Time
from ros_harness import LaunchedGraph, RosProbe
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from vla_ros.core import topics
from vla_ros.nodes.qos import COMMANDS, DEFAULT, LATCHED, LEASED_COMMANDS
from vla_ros.nodes.messages import RCLPY
from vla_ros.robot.wx250s import ARM_JOINTS
from vla_ros.robot.kinematics import ArmKinematics

pytestmark = pytest.mark.ros

HOME = np.array([0.0, -0.011, 0.434, 0.0, 1.1477, 0.0])  # end effector mid-workspace
KIN = ArmKinematics()
GRAPH = """
description: the safety monitor alone, on simulated time
arguments: {}
nodes:
  - name: safety_monitor
    executable: safety_monitor
    required: true
    parameters: {use_sim_time: true, policy_lease: 0.0}
"""


class Robot:
    """The probe as the arm: joint states at 50 Hz (pausable) and /clock that can jump."""

    def __init__(self, probe: RosProbe):
        self.probe = probe
        self.positions = HOME.copy()
        self.offset = 0.0
        self.publishing = True
        self.joint_pub = probe.node.create_publisher(JointState, topics.JOINT_STATES, DEFAULT)
        self.clock_pub = probe.node.create_publisher(Clock, "/clock", 10)
        probe.node.create_timer(0.01, self.tick)

    def now(self) -> float:
        return time.time() + self.offset

    def stamp(self, seconds: float):
        sec, nanosec = divmod(int(seconds * 1e9), 1_000_000_000)
        return Time(seconds=sec, nanoseconds=nanosec).to_msg()

    def tick(self) -> None:
        self.clock_pub.publish(Clock(clock=self.stamp(self.now())))
        if self.publishing:
            msg = JointState(name=list(ARM_JOINTS), position=self.positions.tolist(), velocity=[0.0] * 6,
                             effort=[0.0] * 6)
            msg.header.stamp = self.stamp(self.now())
            self.joint_pub.publish(msg)


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    path = tmp_path_factory.mktemp("graph") / "safety_gate.yaml"
    path.write_text(GRAPH)
    launched = LaunchedGraph(str(path))
    probe = RosProbe("safety_probe")
    robot = Robot(probe)
    probe.robot = robot
    probe.outputs = []  # (monotonic receive time, positions)
    probe.node.create_subscription(
        JointTrajectory, topics.ARM_CONTROLLER,
        lambda m: probe.outputs.append((time.monotonic(), np.array(m.points[0].positions))), COMMANDS)
    probe.vetoes = probe.collect(String, topics.SAFETY_VETO, COMMANDS)
    probe.arm_pub = probe.node.create_publisher(JointTrajectory, topics.ARM_COMMAND, LEASED_COMMANDS)
    probe.estop_pub = probe.node.create_publisher(Bool, topics.ESTOP, LATCHED)
    probe.reset = probe.node.create_client(Trigger, topics.SAFETY_RESET_SERVICE)
    try:
        probe.spin_until(lambda: probe.arm_pub.get_subscription_count() > 0
                         and probe.node.count_publishers(topics.ARM_CONTROLLER) > 0
                         and probe.reset.service_is_ready(), 30, "the safety monitor")
        probe.wait_for_reports(["safety_monitor"])
        yield launched, probe
    finally:
        probe.close()
        launched.stop()


def command(probe, positions, obs_age=0.05, reach=0.2) -> JointTrajectory:
    return RCLPY.joint_command(ARM_JOINTS, positions, reach, int((probe.robot.now() - obs_age) * 1e9))


def send(probe, positions, **kwargs) -> None:
    """Publish a command, let it through the monitor, and let the robot 'reach' what was forwarded."""
    count = len(probe.outputs)
    probe.arm_pub.publish(command(probe, positions, **kwargs))
    probe.spin_for(0.2)
    if len(probe.outputs) > count:
        probe.robot.positions = probe.outputs[-1][1].copy()


def forwarded(probe, since: int, target) -> bool:
    return any(np.allclose(p, target) for _, p in probe.outputs[since:])


def call_reset(probe) -> Trigger.Response:
    future = probe.reset.call_async(Trigger.Request())
    probe.spin_until(future.done, 10, "the reset service")
    return future.result()


def settle(probe) -> None:
    """Back to a clean state: e-stop released and reset, arm at home, and both directions of discovery done.

    On localhost the monitor may learn of this probe's publisher seconds after the probe sees the monitor;
    a command forwarded and a NaN command vetoed prove that commands and vetoes flow both ways.
    """
    probe.estop_pub.publish(Bool(data=False))
    probe.robot.publishing, probe.robot.offset = True, 0.0
    probe.spin_for(0.3)
    call_reset(probe)
    probe.robot.positions = HOME.copy()
    deadline = time.monotonic() + 20
    start = len(probe.outputs)
    while not forwarded(probe, start, HOME):
        assert time.monotonic() < deadline, "the monitor never forwarded a command"
        send(probe, HOME, obs_age=0.0)
    vetoes = len(probe.vetoes)
    while len(probe.vetoes) == vetoes:
        assert time.monotonic() < deadline, "the monitor's vetoes never arrived"
        send(probe, HOME + np.nan, obs_age=0.0)
    probe.robot.positions = HOME.copy()
    probe.spin_for(0.8)  # late answers to the handshake arrive before the test counts anything


def test_a_joint_past_its_limit_is_vetoed_and_the_arm_holds(rig):
    _, probe = rig
    settle(probe)
    start, vetoes = len(probe.outputs), len(probe.vetoes)
    bad = HOME.copy()
    bad[4] = KIN.joint_limits[4, 1] + 0.2  # wrist_angle past its limit
    send(probe, bad)
    assert not forwarded(probe, start, bad)
    assert len(probe.vetoes) > vetoes and "outside" in probe.vetoes[-1].data
    assert forwarded(probe, start, HOME)  # the hold: where the arm is


def test_a_velocity_jump_between_chunks_is_vetoed(rig):
    _, probe = rig
    settle(probe)
    step = HOME + np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.05])  # normal: 0.25 rad/s
    start = len(probe.outputs)
    send(probe, step)
    assert forwarded(probe, start, step)
    jump = step + np.array([0.0, 0.0, 0.0, 0.0, 0.0, 1.5])  # next chunk starts 1.5 rad away: 7.5 rad/s
    vetoes = len(probe.vetoes)
    send(probe, jump)
    assert not forwarded(probe, start, jump)
    assert "jump" in probe.vetoes[vetoes].data


def test_estop_during_motion_then_stale_reset_refused_then_reset_runs_only_new_commands(rig):
    _, probe = rig
    settle(probe)
    q = HOME.copy()
    for _ in range(5):  # motion at 5 Hz
        q = q + np.array([0.02, 0, 0, 0, 0, 0])
        send(probe, q)
    estop_at = time.monotonic()
    probe.estop_pub.publish(Bool(data=True))
    sent_after = []
    for _ in range(5):  # the upstream keeps commanding
        q = q + np.array([0.02, 0, 0, 0, 0, 0])
        sent_after.append(q.copy())
        send(probe, q)
    moves_after = [t - estop_at for t, p in probe.outputs
                   if t > estop_at and any(np.allclose(p, s) for s in sent_after)]
    assert not [dt for dt in moves_after if dt > 0.2], f"commands forwarded {moves_after} s after the e-stop"
    assert any("e-stop" in v.data for v in probe.vetoes)

    probe.estop_pub.publish(Bool(data=False))
    probe.robot.publishing = False  # joint states stop: inputs are stale
    probe.spin_for(1.0)  # well past max_joint_state_age (0.25 s)
    response = call_reset(probe)
    assert not response.success and "stale" in response.message
    probe.robot.publishing = True
    probe.spin_for(0.3)
    old = command(probe, q + [0.02, 0, 0, 0, 0, 0], obs_age=0.3)  # computed before the reset
    response = call_reset(probe)
    assert response.success, response.message
    start = len(probe.outputs)
    probe.arm_pub.publish(old)
    probe.spin_for(0.3)
    assert not forwarded(probe, start, np.array(old.points[0].positions))
    fresh = probe.robot.positions + np.array([0.02, 0, 0, 0, 0, 0])
    send(probe, fresh, obs_age=0.0)
    assert forwarded(probe, start, fresh)


def test_a_burst_of_1000_commands_in_10_ms_gives_a_bounded_output_and_no_backlog(rig):
    _, probe = rig
    settle(probe)
    start = len(probe.outputs)
    messages = [command(probe, HOME + [0.0001 * i, 0, 0, 0, 0, 0]) for i in range(1000)]
    began = time.monotonic()
    for msg in messages:
        probe.arm_pub.publish(msg)
    burst = time.monotonic() - began
    probe.spin_for(1.0)
    outputs = probe.outputs[start:]
    assert len(outputs) <= 50 * (burst + 1.0) + 2, f"{len(outputs)} commands forwarded"
    assert outputs, "nothing was forwarded"
    assert outputs[-1][0] - began < 0.6, "the monitor was still forwarding a backlog"


def test_a_clock_jump_halts(rig):
    _, probe = rig
    settle(probe)
    send(probe, HOME)
    vetoes = len(probe.vetoes)
    probe.robot.offset = 5.0  # ROS time leaps 5 s
    probe.spin_for(0.1)
    start = len(probe.outputs)
    target = HOME + [0.01, 0, 0, 0, 0, 0]
    send(probe, target, obs_age=0.05)
    assert not forwarded(probe, start, target)
    assert any("time jumped forwards" in v.data for v in probe.vetoes[vetoes:]), [v.data for v in probe.vetoes[vetoes:]]


def test_with_the_monitor_killed_nothing_reaches_the_arm(rig):
    launched, probe = rig
    settle(probe)
    os.kill(launched.pid("safety_monitor"), signal.SIGKILL)
    killed_at = time.monotonic()
    for i in range(5):
        send(probe, HOME + [0.01 * i, 0, 0, 0, 0, 0])
    assert not [t for t, _ in probe.outputs if t > killed_at + 0.05]
    assert launched.process.wait(timeout=20) != 0  # a required node died: the graph stops with an error
