"""Safety rules and gate without ROS: each rule, the latch and leases, and property tests over command streams."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vla_ros.core.safety.gate import DROP, FORWARD, HOLD, JointSnapshot, SafetyGate
from vla_ros.core.safety.limits import SafetyLimits
from vla_ros.core.safety.rules import ArmCommand
from vla_ros.core.safety.verdict import ALLOW, HALT, SCALE, allow, halt, most_severe, scale
from vla_ros.robot.kinematics import ArmKinematics

KIN = ArmKinematics()
LIMITS = SafetyLimits(joint_lower=KIN.joint_limits[:, 0], joint_upper=KIN.joint_limits[:, 1])
HOME = np.array([0.0, -0.011, 0.434, 0.0, 1.1477, 0.0])  # end effector at (0.275, 0, 0.10): mid-workspace
DT = 0.2


def fk(q):
    return KIN.fk(q)


def make_gate(**kwargs) -> SafetyGate:
    gate = SafetyGate(LIMITS, fk, active=True, **kwargs)
    gate.update_joints(JointSnapshot(HOME.copy(), np.zeros(6), 1.0, 0.0, received_mono=100.0))
    return gate


class Clock:
    """Drives a gate through time, keeping the joint state fresh at the last output (perfect tracking)."""

    def __init__(self, gate: SafetyGate, t0: float = 100.0):
        self.gate, self.now = gate, t0

    def send(self, positions, reach=DT, obs_age=0.1, advance=DT):
        self.now += advance
        self.gate.joints.received_mono = self.now - 0.01  # the arm publishes joint states continuously
        decision = self.gate.evaluate_arm(ArmCommand(np.asarray(positions, float), reach, self.now - obs_age),
                                          self.now, self.now)
        held = decision.positions if decision.kind in (FORWARD, HOLD) else self.gate.joints.positions
        self.gate.update_joints(JointSnapshot(np.array(held, float), np.zeros(6), 1.0, 0.0, self.now))
        return decision


def test_most_severe_wins():
    assert most_severe([allow(), scale(0.5, "a", ""), scale(0.3, "b", "")]).factor == 0.3
    assert most_severe([scale(0.5, "a", ""), halt("c", "x"), allow()]).kind == HALT
    assert most_severe([]).kind == ALLOW and scale(1.5, "a", "").kind == ALLOW


@pytest.mark.parametrize(
    "mutate, rule",
    [
        (lambda q: np.where(np.arange(6) == 1, np.nan, q), "finite"),
        (lambda q: np.where(np.arange(6) == 2, LIMITS.joint_upper[2] - 0.01, q), "joint_limit"),
        (lambda q: q + np.array([0.0, 0.0, 0.0, 0.0, 0.0, 1.5]), "joint_velocity"),  # 7.5 rad/s: a jump
    ],
)
def test_bad_commands_halt_with_their_rule(mutate, rule):
    clock = Clock(make_gate())
    decision = clock.send(mutate(HOME.copy()))
    assert decision.kind == HOLD and decision.rule == rule
    np.testing.assert_allclose(decision.positions, HOME)  # held where the arm is


def test_target_outside_the_workspace_halts():
    gate, clock = make_gate(), None
    clock = Clock(gate)
    # Walk down in small steps until the end effector would leave the box through the floor (z < -0.05).
    q = HOME.copy()
    outcome = None
    for _ in range(200):
        pos, rot = KIN.fk(q)
        result = KIN.ik(q, pos + [0, 0, -0.012], rot)
        q = result.q
        outcome = clock.send(q)
        if outcome.kind != FORWARD:
            break
    assert outcome.kind == HOLD and outcome.rule == "workspace"


def test_a_moderately_fast_command_is_slowed_not_refused():
    clock = Clock(make_gate())
    target = HOME + np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.8])  # 4 rad/s at 0.2 s: 1.27x the limit
    decision = clock.send(target)
    assert decision.kind == FORWARD and decision.rule == "joint_velocity"
    assert decision.reach_s == pytest.approx(0.8 / 3.14, rel=1e-3)  # stretched to exactly the limit
    np.testing.assert_allclose(decision.positions, target)


def test_stale_observation_and_stale_joint_state_halt():
    gate = make_gate()
    clock = Clock(gate)
    assert clock.send(HOME, obs_age=2.0).rule == "stale_input"
    gate.update_joints(JointSnapshot(HOME.copy(), np.zeros(6), 1.0, 0.0, received_mono=clock.now - 5))
    clock.now += DT
    decision = gate.evaluate_arm(ArmCommand(HOME.copy(), DT, clock.now - 0.1), clock.now, clock.now)
    assert decision.kind == HOLD and "joint state is" in decision.reason


def test_clock_jump_halts_and_only_later_observations_run():
    gate = make_gate()
    clock = Clock(gate)
    assert clock.send(HOME).kind == FORWARD
    jumped = clock.now + 5.0  # ROS time leaps 5 s while the monotonic clock moves 0.2 s
    decision = gate.evaluate_arm(ArmCommand(HOME.copy(), DT, jumped - 0.1), jumped, clock.now + DT)
    assert decision.kind == HOLD and decision.rule == "clock_jump"


def test_estop_latches_until_a_valid_reset_and_then_only_new_chunks_run():
    gate = make_gate()
    clock = Clock(gate)
    assert clock.send(HOME).kind == FORWARD
    assert gate.set_estop(True, clock.now).kind == HOLD
    assert clock.send(HOME).kind == DROP
    gate.set_estop(False, clock.now)
    assert clock.send(HOME).kind == DROP  # released but still latched
    gate.update_joints(JointSnapshot(HOME.copy(), np.zeros(6), 1.0, 0.0, received_mono=clock.now - 5))
    ok, message = gate.try_reset(clock.now, clock.now)
    assert not ok and "stale" in message
    gate.update_joints(JointSnapshot(HOME.copy(), np.full(6, 0.3), 1.0, 0.0, received_mono=clock.now))
    assert gate.try_reset(clock.now, clock.now) == (False, "refused: the arm is moving")
    gate.update_joints(JointSnapshot(HOME.copy(), np.zeros(6), 1.0, 0.0, received_mono=clock.now))
    ok, _ = gate.try_reset(clock.now, clock.now)
    assert ok
    reset_at = clock.now
    clock.now += DT
    old = gate.evaluate_arm(ArmCommand(HOME.copy(), DT, reset_at - 0.05), clock.now, clock.now)
    assert old.kind == DROP and "before the last reset" in old.reason
    assert clock.send(HOME, obs_age=0.05).kind == FORWARD


def test_a_lapsed_lease_holds_and_recovery_admits_only_fresh_commands():
    gate = make_gate()
    gate.add_lease("vla_policy", 0.0)
    clock = Clock(gate)
    assert clock.send(HOME).kind == FORWARD
    gate.set_alive("vla_policy", False, clock.now)
    assert gate.check_leases(clock.now, clock.now, watching=True).kind == HOLD
    assert clock.send(HOME).kind == DROP
    gate.set_alive("vla_policy", True, clock.now)
    assert gate.check_leases(clock.now, clock.now, watching=True) is None
    assert clock.send(HOME, obs_age=1.0).kind == DROP  # computed before the recovery
    assert clock.send(HOME, obs_age=0.0).kind == FORWARD


def test_burst_is_rate_limited():
    gate = make_gate(max_command_rate=50.0)
    clock = Clock(gate)
    decisions = [clock.send(HOME, advance=0.00001) for _ in range(1000)]  # 1000 commands in 10 ms
    assert sum(d.kind == FORWARD for d in decisions) == 1


def test_inactive_or_misconfigured_gate_forwards_nothing():
    inactive = make_gate()
    inactive.active = False
    assert Clock(inactive).send(HOME).kind == DROP
    bad = SafetyLimits(joint_lower=LIMITS.joint_lower, joint_upper=LIMITS.joint_upper, position_margin=10.0)
    gate = SafetyGate(bad, fk, active=True)
    gate.update_joints(JointSnapshot(HOME.copy(), np.zeros(6), 1.0, 0.0, 100.0))
    decision = Clock(gate).send(HOME)
    assert decision.kind == DROP and "misconfigured" in decision.reason


def test_gripper_effort_refuses_squeezing_harder_but_allows_opening():
    gate = make_gate()
    gate.update_joints(JointSnapshot(HOME.copy(), np.zeros(6), 0.4, 35.0, received_mono=100.0))
    assert gate.evaluate_gripper(0.0, DT, 100.0, 100.05, 100.05).rule == "gripper_effort"
    assert gate.evaluate_gripper(1.0, DT, 100.1, 100.15, 100.15).kind == FORWARD


# --------------------------------------------------------------------------------------------- properties
def _within_limits(previous: np.ndarray, decision) -> None:
    q = decision.positions
    assert np.all(np.isfinite(q)) and decision.reach_s > 0
    assert np.all(q >= LIMITS.safe_lower - 1e-9) and np.all(q <= LIMITS.safe_upper + 1e-9)
    if decision.kind == FORWARD:
        assert np.all(np.abs(q - previous) / decision.reach_s <= LIMITS.max_joint_velocity + 1e-6)
        ee = KIN.fk(q)[0]
        assert np.all(ee >= LIMITS.workspace_min - 1e-9) and np.all(ee <= LIMITS.workspace_max + 1e-9)
        speed = np.linalg.norm(ee - KIN.fk(previous)[0]) / decision.reach_s
        assert speed <= LIMITS.max_ee_speed + 1e-6


delta = st.one_of(
    st.floats(-0.05, 0.05),
    st.floats(-1.5, 1.5),
    st.sampled_from([np.nan, np.inf, -np.inf, 4.0, -4.0]),
)
stream = st.lists(
    st.tuples(st.lists(delta, min_size=6, max_size=6), st.sampled_from([0.0, 0.01, 0.05, 0.2, 0.5]),
              st.sampled_from([0.05, 0.1, 0.5, 3.0])),
    min_size=1, max_size=6,
)


@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream)
def test_no_command_outside_the_limits_ever_reaches_the_controllers(commands):
    gate = make_gate()
    clock = Clock(gate)
    previous = HOME.copy()
    for deltas, reach, obs_age in commands:
        target = previous + np.array(deltas)
        decision = clock.send(target, reach=reach, obs_age=obs_age)
        if decision.kind in (FORWARD, HOLD):
            _within_limits(previous, decision)
            previous = decision.positions.copy()


@settings(max_examples=1_000, deadline=None)
@given(st.lists(st.lists(st.floats(-0.03, 0.03), min_size=6, max_size=6), min_size=1, max_size=8))
def test_commands_inside_the_limits_pass_unchanged(steps):
    gate = make_gate()
    clock = Clock(gate)
    q = HOME.copy()
    for step in steps:
        q = q + np.array(step)
        decision = clock.send(q)
        assert decision.kind == FORWARD and decision.rule == "", decision
        np.testing.assert_array_equal(decision.positions, q)
        assert decision.reach_s == DT


def test_after_a_rest_speeds_are_judged_from_where_the_arm_is_not_from_the_old_target():
    """Between tasks something else may move the arm (a simulator reset, a person guiding it): the first
    command of the next task is judged from the measured joints once the last command has long been reached."""
    gate = make_gate()
    clock = Clock(gate)
    away = HOME + np.array([0.3, 0.0, 0.0, 0.0, 0.0, 0.0])  # a 0.3 rad base turn: 1.5 rad/s over 0.2 s
    for fraction in np.linspace(0.2, 1.0, 5):  # commanded there at a normal pace
        assert clock.send(HOME + fraction * (away - HOME)).kind == FORWARD
    clock.now += 2.0  # the task ends; the arm rests at `away` ...
    gate.update_joints(JointSnapshot(HOME.copy(), np.zeros(6), 1.0, 0.0, received_mono=clock.now))  # ... then is reset
    near_home = HOME + np.array([0.02, 0.0, 0.0, 0.0, 0.0, 0.0])
    decision = clock.send(near_home)
    assert decision.kind == FORWARD and decision.rule == "", decision.reason
    # And a command back at the old target is now the leap it is from where the arm actually is.
    clock.now += 2.0
    gate.update_joints(JointSnapshot(near_home.copy(), np.zeros(6), 1.0, 0.0, received_mono=clock.now))
    assert clock.send(away + np.array([0.6, 0.0, 0.0, 0.0, 0.0, 0.0])).kind == HOLD


def test_a_command_slowed_to_exactly_the_speed_limit_is_forwarded():
    """Re-judging the slowed command must not halt it for a rounding error (1.0000001× the limit)."""
    gate = make_gate()
    clock = Clock(gate)
    for k in range(1, 40):  # speeds between 1.04× and 1.8× the end-effector limit (2× is a jump)
        start = gate.joints.positions.copy()
        position, rotation = KIN.fk(start)
        target = KIN.ik(start, position + [0.051 + 0.001 * k, 0.0, 0.0], rotation).q
        decision = clock.send(target)
        assert decision.kind == FORWARD, decision.reason
        clock.send(start)  # and back, at whatever pace the gate allows
        clock.now += 1.0


def test_a_new_task_is_judged_from_the_measured_joints_at_once():
    """A reset between episodes moves the arm; the next task's first command comes 0.2 s later."""
    away = HOME + np.array([0.6, 0.0, 0.0, 0.0, 0.0, 0.0])  # reached in 10 normal steps
    near_home = HOME + np.array([0.02, 0.0, 0.0, 0.0, 0.0, 0.0])
    outcomes = {}
    for new_task in (False, True):
        gate = make_gate()
        clock = Clock(gate)
        for fraction in np.linspace(0.1, 1.0, 10):
            assert clock.send(HOME + fraction * (away - HOME)).kind == FORWARD
        gate.update_joints(JointSnapshot(HOME.copy(), np.zeros(6), 1.0, 0.0, received_mono=clock.now))  # reset
        if new_task:
            gate.task_changed()
        outcomes[new_task] = clock.send(near_home)
    assert outcomes[False].kind == HOLD and outcomes[False].rule == "ee_speed"  # judged from the old target
    assert outcomes[True].kind == FORWARD and outcomes[True].rule == "", outcomes[True].reason
