"""Teleop as a chunk source, without ROS: the control loop takes chunks from the source in control only, a switch
drops what the other left queued, the executed action stream is exactly what was integrated, and the gate leases
the teleop stream while teleop is in control without loosening the policy's lease."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vla_ros.core.action_tokens import task_hash
from vla_ros.core.ee_delta import pose_delta, rotation_of, rpy_of
from vla_ros.core.executor import ExecutorSettings
from vla_ros.core.stages.control import POLICY, TELEOP, ControlLoop
from vla_ros.core.stages.gate import POLICY_LEASE, TELEOP_LEASE, SafetySettings, build_gate
from vla_ros.robot.kinematics import ArmKinematics, delta_rotation
from vla_ros.sim.workcell import HOME_POS, HOME_ROT

KINEMATICS = ArmKinematics()
HOME_Q = KINEMATICS.ik(np.array([0.0, -0.3, 0.3, 0.0, 1.5, 0.0]), HOME_POS, HOME_ROT).q
TASK = "pick up the red block"


class Kit:
    """Plain stand-ins for the message classes (the readers are duck-typed)."""

    @staticmethod
    def chunk(actions, stamp_s, tokenizer="0"):
        from vla_ros.bags.replay_messages import rosbags_kit

        return rosbags_kit().action_chunk(np.asarray(actions, float), int(stamp_s * 1e9), 0.2, task_hash(TASK),
                                          tokenizer)


def loop_at_home(mode=POLICY) -> ControlLoop:
    loop = ControlLoop(ExecutorSettings(control_mode=mode), KINEMATICS)
    loop.set_task(TASK)
    loop.update_joint_positions(HOME_Q, now_mono=0.0)
    return loop


def test_only_the_source_in_control_is_taken():
    loop = loop_at_home(TELEOP)
    refused = loop.on_chunk(Kit.chunk([[0.01, 0, 0, 0, 0, 0, 1]] * 8, 1.0), received_s=1.0, source=POLICY)
    assert refused == "a policy chunk while teleop is in control"
    assert loop.on_chunk(Kit.chunk([[0.01, 0, 0, 0, 0, 0, 1]], 1.0), received_s=1.0, source=TELEOP) is None
    output = loop.tick(1.05, 0.05)
    assert output.targets is not None
    assert np.array_equal(output.executed, [0.01, 0, 0, 0, 0, 0, 1])  # what was integrated, exactly


def test_a_switch_drops_the_queued_chunks_of_the_source_that_lost_control():
    loop = loop_at_home(POLICY)
    loop.on_chunk(Kit.chunk([[0.02, 0, 0, 0, 0, 0, 1]] * 8, 1.0), received_s=1.0)
    assert loop.tick(1.0, 0.0).targets is not None  # the policy's window runs
    assert loop.set_mode(TELEOP) and not loop.set_mode(TELEOP)
    held = loop.tick(1.2, 0.2)
    assert held.targets is None, "a step of the policy's window ran after teleop took control"
    assert not loop.integrator.anchored  # integration restarts from the measured joints
    with pytest.raises(ValueError, match="not one of policy, teleop"):
        loop.set_mode("autopilot")


def test_executed_action_of_joint_targets_is_the_end_effector_motion_they_make():
    loop = loop_at_home(POLICY)
    target = HOME_Q + np.array([0.05, -0.04, 0.03, 0.0, 0.02, 0.0])
    from vla_ros.bags.replay_messages import rosbags_kit
    from vla_ros.core.action_chunks import JOINT_POSITION

    msg = rosbags_kit().action_chunk(np.append(target, 0.0)[None], int(1e9), 0.2, task_hash(TASK), "0",
                                     action_space=JOINT_POSITION)
    assert loop.on_chunk(msg, received_s=1.0) is None
    output = loop.tick(1.0, 0.0)
    start, end = KINEMATICS.fk(KINEMATICS.clamp(HOME_Q)), KINEMATICS.fk(output.targets.arm)
    assert np.allclose(output.executed[:6], pose_delta(*start, *end)) and output.executed[6] == 0.0


@settings(max_examples=200, deadline=None)
@given(st.tuples(st.floats(-0.5, 0.5), st.floats(-0.5, 0.5), st.floats(-0.5, 0.5)))
def test_pose_delta_inverts_the_bridge_rotation_convention(rpy):
    rot0 = delta_rotation(0.3, -0.2, 1.0)
    rot1 = delta_rotation(*rpy) @ rot0
    assert np.allclose(pose_delta(np.zeros(3), rot0, np.ones(3), rot1), [1, 1, 1, *rpy], atol=1e-9)
    assert np.allclose(rotation_of(rpy_of(rot1)), rot1, atol=1e-12)


def gate_with_task(settings=SafetySettings()):
    gate = build_gate(settings, KINEMATICS)
    gate.active = True
    for name in (POLICY_LEASE, TELEOP_LEASE):
        gate.touch(name, 0.0)
    return gate


def set_mode(gate, mode, now):
    from vla_ros.core.stages.gate import GateStage

    GateStage.set_control_mode(type("Stage", (), {"gate": gate})(), mode, now)


def test_in_teleop_mode_a_silent_joystick_holds_the_arm_and_the_policy_lease_does_not():
    gate = gate_with_task()
    set_mode(gate, TELEOP, 0.0)
    assert gate.check_leases(0.9, 0.9, watching=True) is not None  # teleop silent for 0.9 s > 0.5 s
    assert "lease_teleop" in gate.blocks and "lease_vla_policy" not in gate.blocks
    gate.touch(TELEOP_LEASE, 1.0)
    assert gate.check_leases(1.01, 1.01, watching=True) is None and not gate.blocks  # a live joystick again
    assert gate.min_obs_stamp_s == pytest.approx(1.01)  # only commands computed from now on


def test_in_policy_mode_the_policy_lease_still_holds_and_teleop_silence_is_ignored():
    gate = gate_with_task()
    set_mode(gate, POLICY, 0.0)
    decision = gate.check_leases(1.5, 1.5, watching=True)
    assert decision is not None and list(gate.blocks) == ["lease_vla_policy"]
    gate.set_alive(TELEOP_LEASE, False, 1.6)  # the teleop node dies: not the source in control
    gate.touch(POLICY_LEASE, 1.6)
    assert gate.check_leases(1.7, 1.7, watching=True) is None and not gate.blocks


def test_a_dead_teleop_node_holds_at_once_in_teleop_mode():
    gate = gate_with_task()
    set_mode(gate, TELEOP, 0.0)
    gate.set_alive(TELEOP_LEASE, False, 0.1)
    assert gate.check_leases(0.1, 0.1, watching=True) is not None
    assert "liveliness" in gate.blocks["lease_teleop"]


@pytest.mark.parametrize("anchor", ["measured", "target"])
def test_each_policy_chunk_starts_from_the_measured_joints_unless_told_to_integrate_on(anchor):
    """An arm following commands over their reach time trails its target; a chunk's deltas are meant from where the
    frame shows the arm (BridgeData applies each delta to the measured pose), not from where the target ran to."""
    loop = ControlLoop(ExecutorSettings(chunk_anchor=anchor, execute_steps=2), KINEMATICS)
    loop.set_task(TASK)
    loop.update_joint_positions(HOME_Q, now_mono=0.0)
    forward = [[0.02, 0, 0, 0, 0, 0, 1]] * 8
    loop.on_chunk(Kit.chunk(forward, 1.0), received_s=1.0)
    first = loop.tick(1.0, 0.0).targets.arm
    loop.update_joint_positions(HOME_Q, now_mono=0.2)  # the arm has not moved yet
    within = loop.tick(1.2, 0.2).targets.arm  # the window's second step goes on from its target
    assert float(np.abs(within - first).max()) > 1e-3
    loop.update_joint_positions(HOME_Q, now_mono=0.4)
    loop.on_chunk(Kit.chunk(forward, 1.4), received_s=1.4)
    adopted = loop.tick(1.4, 0.4).targets.arm
    if anchor == "measured":  # from home again: the first step's target
        np.testing.assert_allclose(adopted, first, atol=1e-9)
    else:  # a third step on from the target
        assert float(np.abs(adopted - within).max()) > 1e-3


def test_teleop_chunks_integrate_on_from_the_target_whatever_the_policys_anchor():
    loop = loop_at_home(TELEOP)
    assert loop.settings.chunk_anchor == "measured" and not loop.anchor_at_measured
    loop.on_chunk(Kit.chunk([[0.02, 0, 0, 0, 0, 0, 1]], 1.0), received_s=1.0, source=TELEOP)
    first = loop.tick(1.0, 0.0).targets.arm
    loop.update_joint_positions(HOME_Q, now_mono=0.2)
    loop.on_chunk(Kit.chunk([[0.02, 0, 0, 0, 0, 0, 1]], 1.2), received_s=1.2, source=TELEOP)
    assert float(np.abs(loop.tick(1.2, 0.2).targets.arm - first).max()) > 1e-3
