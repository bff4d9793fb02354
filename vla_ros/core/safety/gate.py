"""The safety gate: every arm and gripper command passes here, or the arm holds. No rclpy; times are given.

State the gate keeps: an e-stop latch, blocks (e-stop, a lapsed lease, a clock jump) that stop all
forwarding until cleared, the oldest observation stamp still allowed to run (raised by a reset, a
recovered lease or a clock jump, so only chunks computed afterwards move the arm), the last forwarded
command (the reference for velocity, acceleration and speed across chunk boundaries), the newest joint
state, and counters for /diagnostics.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from vla_ros.core.safety import rules
from vla_ros.core.safety.limits import SafetyLimits
from vla_ros.core.safety.rules import ArmCommand, Reference
from vla_ros.core.safety.verdict import HALT, SCALE, Verdict, most_severe

FORWARD, HOLD, DROP = "forward", "hold", "drop"
MOVING_VELOCITY = 0.05  # rad/s: faster than this the arm counts as moving (no reset)


@dataclass(frozen=True)
class Decision:
    kind: str  # forward | hold | drop
    positions: np.ndarray | None = None  # forward: the target; hold: where to hold
    reach_s: float = 0.0
    rule: str = ""
    reason: str = ""


@dataclass
class JointSnapshot:
    positions: np.ndarray
    velocities: np.ndarray | None
    gripper_opening: float | None
    gripper_effort: float | None
    received_mono: float


@dataclass
class Lease:
    duration_s: float
    last_seen_mono: float | None = None
    alive: bool = True  # liveliness as DDS reports it
    watched: bool = True  # a lapse holds the arm (not for the chunk source that is not in control)


@dataclass
class SafetyGate:
    limits: SafetyLimits
    forward_kinematics: object  # callable q6 -> (pos[3], rot[3,3])
    max_command_rate: float = 50.0
    active: bool = False
    estop_asserted: bool = False
    blocks: dict[str, str] = field(default_factory=dict)
    min_obs_stamp_s: float = -np.inf
    joints: JointSnapshot | None = None
    reference: Reference | None = None
    last_forward_mono: dict[str, float] = field(default_factory=dict)
    leases: dict[str, Lease] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)
    _clock: tuple[float, float] | None = None  # (ros, monotonic) of the previous evaluation
    _reference_settled_mono: float | None = None  # when the last forwarded command is reached

    def __post_init__(self):
        self.problems = self.limits.problems()

    # ------------------------------------------------------------------------------- inputs
    def update_joints(self, snapshot: JointSnapshot) -> None:
        self.joints = snapshot

    def set_estop(self, asserted: bool, now_ros: float) -> Decision:
        """E-stop latches: it blocks until a successful reset, even when released."""
        self.estop_asserted = asserted
        if asserted:
            self.blocks["estop"] = "e-stop is latched: call /vla/safety/reset"
            return self._hold("estop", "e-stop asserted")
        return Decision(DROP, reason="e-stop released; still latched until reset")

    def add_lease(self, name: str, duration_s: float) -> None:
        self.leases[name] = Lease(duration_s)

    def touch(self, name: str, now_mono: float) -> None:
        lease = self.leases[name]
        lease.last_seen_mono = now_mono

    def task_changed(self) -> None:
        """A new task (or stop): the executor integrates from the measured joints again, and so does the gate.

        Judging the new task's first command from the old task's last target would call it a leap when the
        arm was moved in between (a simulator reset between episodes: every episode after the first began
        with a false `ee_speed` veto in the demo, 2.5-3.1x the limit).
        """
        self.reference = None

    def watch(self, name: str, watched: bool, now_mono: float) -> None:
        """Watch a lease or stop watching it; a lease watched anew starts afresh, as at a task change."""
        lease = self.leases[name]
        if watched and not lease.watched:
            lease.last_seen_mono = now_mono
        lease.watched = watched

    def set_alive(self, name: str, alive: bool, now_mono: float) -> None:
        self.leases[name].alive = alive
        if alive:
            self.leases[name].last_seen_mono = now_mono

    def check_leases(self, now_mono: float, now_ros: float, watching: bool) -> Decision | None:
        """Hold when a lease lapses while a task runs; clear the block when it is alive again."""
        for name, lease in self.leases.items():
            key = f"lease_{name}"
            silent = (lease.duration_s > 0 and lease.last_seen_mono is not None
                      and now_mono - lease.last_seen_mono > lease.duration_s)
            lapsed = watching and lease.watched and (not lease.alive or silent)
            if lapsed and key not in self.blocks:
                why = "is gone (liveliness lost)" if not lease.alive else f"sent nothing for {lease.duration_s:.2f} s"
                self.blocks[key] = f"{name} {why}"
                return self._hold(key, f"{name} {why}: holding")
            if not lapsed and key in self.blocks and (lease.alive or not lease.watched):
                del self.blocks[key]
                self.min_obs_stamp_s = max(self.min_obs_stamp_s, now_ros)  # only chunks computed from now on
        return None

    def try_reset(self, now_ros: float, now_mono: float) -> tuple[bool, str]:
        """Clear the e-stop latch; refused while the e-stop is still asserted, inputs are stale or the arm moves."""
        if self.estop_asserted:
            return False, "refused: the e-stop is still asserted on /vla/estop"
        if self.joints is None or now_mono - self.joints.received_mono > self.limits.max_joint_state_age:
            return False, "refused: the joint state is stale"
        if self.joints.velocities is not None and np.max(np.abs(self.joints.velocities)) > MOVING_VELOCITY:
            return False, "refused: the arm is moving"
        self.blocks.pop("estop", None)
        self.min_obs_stamp_s = now_ros
        self.counts["resets"] += 1
        return True, "reset: only commands computed from observations after now will run"

    # ------------------------------------------------------------------------------- commands
    def evaluate_arm(self, command: ArmCommand, now_ros: float, now_mono: float) -> Decision:
        early = self._admission("arm", command.obs_stamp_s, now_ros, now_mono)
        if early is not None:
            return early
        measured = self.joints.positions if self.joints else None
        joint_age = now_mono - self.joints.received_mono if self.joints else None
        basic = most_severe([
            rules.finite(command, measured),
            rules.staleness(command.obs_stamp_s, now_ros, joint_age, self.limits),
        ])
        if basic.halts:
            return self._veto(basic)
        verdict = most_severe([rules.joint_positions(command, self.limits), rules.reach_time(command, self.limits)])
        if verdict.halts:
            return self._veto(verdict)
        reference = self._reference(now_mono)
        ee_target = self.forward_kinematics(command.positions)[0]
        verdict = most_severe([
            rules.joint_velocity(command, reference, self.limits),
            rules.joint_acceleration(command, reference, self.limits),
            rules.workspace(ee_target, reference.ee_pos, self.limits),
            rules.ee_speed(ee_target, reference, command.reach_s, self.limits),
        ])
        if verdict.halts:
            return self._veto(verdict)
        reach = command.reach_s if verdict.kind != SCALE else command.reach_s / verdict.factor
        if verdict.kind == SCALE:
            # The slowed command must itself be within every limit, else it halts.
            slowed = ArmCommand(command.positions, reach, command.obs_stamp_s)
            recheck = most_severe([
                rules.joint_velocity(slowed, reference, self.limits),
                rules.joint_acceleration(slowed, reference, self.limits),
                rules.ee_speed(ee_target, reference, reach, self.limits),
            ])
            if recheck.kind != "allow":
                return self._veto(Verdict(HALT, 0.0, recheck.rule, f"{recheck.reason} even when slowed down"))
            self.counts["scaled"] += 1
            self.counts[f"scaled_{verdict.rule}"] += 1
        else:
            self.counts["allowed"] += 1
        self.reference = Reference(command.positions.copy(), (command.positions - reference.positions) / reach,
                                   ee_target)
        self.last_forward_mono["arm"] = now_mono
        self._reference_settled_mono = now_mono + reach
        return Decision(FORWARD, command.positions.copy(), reach, verdict.rule, verdict.reason)

    def evaluate_gripper(self, target: float, reach_s: float, obs_stamp_s: float, now_ros: float,
                         now_mono: float) -> Decision:
        early = self._admission("gripper", obs_stamp_s, now_ros, now_mono)
        if early is not None:
            return early
        joint_age = now_mono - self.joints.received_mono if self.joints else None
        opening = self.joints.gripper_opening if self.joints else None
        effort = self.joints.gripper_effort if self.joints else None
        verdict = most_severe([
            rules.staleness(obs_stamp_s, now_ros, joint_age, self.limits),
            rules.gripper_effort(float(target), opening, effort, self.limits),
        ])
        if verdict.halts:
            self.counts["vetoed"] += 1
            self.counts[f"vetoed_{verdict.rule}"] += 1
            return Decision(DROP, rule=verdict.rule, reason=verdict.reason)
        self.last_forward_mono["gripper"] = now_mono
        self.counts["gripper_allowed"] += 1
        return Decision(FORWARD, np.array([float(target)]), max(reach_s, self.limits.min_reach_time))

    # ------------------------------------------------------------------------------- internals
    def _admission(self, kind: str, obs_stamp_s: float, now_ros: float, now_mono: float) -> Decision | None:
        """Checks before any rule: configured and active, not blocked, not too fast, not from before a reset."""
        if self.problems:
            self.counts["dropped_misconfigured"] += 1
            return Decision(DROP, reason=f"misconfigured: {'; '.join(self.problems)}")
        if not self.active:
            self.counts["dropped_inactive"] += 1
            return Decision(DROP, reason="safety monitor is not active")
        if self._clock is not None:
            jump = rules.clock_jump(now_ros - self._clock[0], now_mono - self._clock[1], self.limits)
            self._clock = (now_ros, now_mono)
            if jump.halts:
                self.min_obs_stamp_s = now_ros  # stamps from before the jump are meaningless now
                return self._veto(jump)
        self._clock = (now_ros, now_mono)
        if self.blocks:
            self.counts["dropped_blocked"] += 1
            return Decision(DROP, reason="; ".join(self.blocks.values()))
        last = self.last_forward_mono.get(kind)
        if last is not None and now_mono - last < 1.0 / self.max_command_rate:
            self.counts["dropped_rate_limited"] += 1
            return Decision(DROP, reason=f"more than {self.max_command_rate:g} {kind} commands per second")
        if obs_stamp_s < self.min_obs_stamp_s:
            self.counts["dropped_before_reset"] += 1
            return Decision(DROP, reason="command was computed before the last reset or recovery")
        return None

    def _reference(self, now_mono: float) -> Reference:
        settled = self._reference_settled_mono
        if settled is not None and now_mono > settled + 0.5:
            # The last command has long been reached and the arm is at rest: where the joint state says it is,
            # which is not the old target if something else moved it meanwhile (a reset of the simulator, a
            # person guiding the arm, another controller). Speeds are judged from there.
            self.reference = None
        if self.reference is None:  # the rules before this one halted unless the joint state is fresh and finite
            positions = self.joints.positions.copy()
            self.reference = Reference(positions, np.zeros(6), self.forward_kinematics(positions)[0])
        return self.reference

    def _hold_positions(self) -> np.ndarray | None:
        if self.joints is not None and np.all(np.isfinite(self.joints.positions)):
            return self.joints.positions.copy()
        return None if self.reference is None else self.reference.positions.copy()

    def _hold(self, rule: str, reason: str) -> Decision:
        positions = self._hold_positions()
        self.counts["holds"] += 1
        if positions is None:
            return Decision(DROP, rule=rule, reason=f"{reason} (no joint state to hold at)")
        self.reference = Reference(positions, np.zeros(6), self.forward_kinematics(positions)[0])
        return Decision(HOLD, positions, max(0.1, self.limits.min_reach_time), rule, reason)

    def _veto(self, verdict: Verdict) -> Decision:
        self.counts["vetoed"] += 1
        self.counts[f"vetoed_{verdict.rule}"] += 1
        return self._hold(verdict.rule, verdict.reason)
