"""The gate stage: the safety_monitor's logic between the executor's commands and the arm controllers.

Every arm and gripper command passes `SafetyGate` (vla_ros.core.safety.gate) or the arm holds; the gripper's
opening (0 closed .. 1 open) becomes the Interbotix finger position in metres on the way out. Handlers return
the messages to publish as (topic, message) pairs, built with the driver's `MessageKit`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from vla_ros.core import topics
from vla_ros.core.messages import MessageKit, single_point, stamp_ns
from vla_ros.core.safety.gate import FORWARD, HOLD, Decision, JointSnapshot, SafetyGate
from vla_ros.core.safety.limits import BRIDGE_WORKSPACE_MAX, BRIDGE_WORKSPACE_MIN, DEFAULT_MAX_JOINT_VELOCITY, SafetyLimits
from vla_ros.core.safety.rules import ArmCommand
from vla_ros.core.settings import Settings, length, non_negative, positive, setting
from vla_ros.core.stages.control import TELEOP
from vla_ros.robot.wx250s import (ARM_JOINTS, FINGER_JOINT, GRIPPER_COMMAND_JOINT, finger_position, finger_value,
                                  gripper_opening, joint_values)

POLICY_LEASE = "vla_policy"
EXECUTOR_LEASE = "chunk_executor"
TELEOP_LEASE = "teleop"  # the teleop node's chunks; watched instead of the policy's while teleop is in control
NS = 1_000_000_000
_VETO = re.compile(r"^([a-z][a-z0-9_]*): (.*)$", re.DOTALL)


@dataclass(frozen=True)
class SafetySettings(Settings):
    """The safety_monitor's settings: the limits no command may exceed, and its leases."""

    autostart: bool = setting(True, "Configure and activate at start-up (else wait for lifecycle transitions).",
                              node_only=True)
    position_margin: float = setting(0.05, "rad kept clear of each joint limit.", check=non_negative)
    max_joint_velocity: tuple = setting([DEFAULT_MAX_JOINT_VELOCITY] * 6, "rad/s per arm joint.", check=length(6))
    max_joint_acceleration: float = setting(30.0, "rad/s² per joint.", check=positive)
    jump_factor: float = setting(2.0, "Over-limit ratio from which a command halts instead of being slowed.",
                                 check=positive)
    workspace_min: tuple = setting(list(BRIDGE_WORKSPACE_MIN), "End-effector box, lower corner (m, base frame).",
                                   check=length(3))
    workspace_max: tuple = setting(list(BRIDGE_WORKSPACE_MAX), "End-effector box, upper corner (m, base frame).",
                                   check=length(3))
    slowdown_band: float = setting(0.02, "m inside the box where motion towards a wall is slowed.",
                                   check=non_negative)
    max_ee_speed: float = setting(0.25, "End-effector speed cap, m/s (reduced-speed mode).", check=positive)
    max_obs_age: float = setting(1.0, "Oldest observation a command may be computed from, s.", check=positive)
    max_joint_state_age: float = setting(0.25, "Oldest joint state the rules accept, s.", check=positive)
    clock_jump: float = setting(0.5, "ROS-time jump (against the monotonic clock) that halts, s.", check=positive)
    max_gripper_effort: float = setting(20.0, "Finger effort above which closing further is refused.",
                                        check=positive)
    max_command_rate: float = setting(50.0, "Most commands per second forwarded per controller.", check=positive)
    policy_lease: float = setting(1.0, "Hold when the policy sends no tokens (or, remote, no chunks) for this long "
                                  "during a task, s (0 = liveliness only).", check=non_negative)
    teleop_lease: float = setting(0.5, "While teleop is in control: hold when the teleop node sends no chunk for this "
                                  "long during a task (a silent joystick), s (0 = liveliness only).",
                                  check=non_negative)

    def limits(self, joint_limits: np.ndarray) -> SafetyLimits:
        """SafetyLimits for an arm whose joint limits are `joint_limits` [6, 2] (lower, upper) rad."""
        joint_limits = np.asarray(joint_limits, dtype=np.float64)
        return SafetyLimits(
            joint_lower=joint_limits[:, 0], joint_upper=joint_limits[:, 1], position_margin=self.position_margin,
            max_joint_velocity=np.array(self.max_joint_velocity, float),
            max_joint_acceleration=self.max_joint_acceleration, jump_factor=self.jump_factor,
            workspace_min=np.array(self.workspace_min, float), workspace_max=np.array(self.workspace_max, float),
            slowdown_band=self.slowdown_band, max_ee_speed=self.max_ee_speed, max_obs_age=self.max_obs_age,
            max_joint_state_age=self.max_joint_state_age, clock_jump=self.clock_jump,
            max_gripper_effort=self.max_gripper_effort)


def joint_snapshot(names, position, velocity, effort, received_mono: float) -> JointSnapshot | None:
    """What the gate keeps of a JointState's fields, or None when the arm joints are incomplete."""
    positions = joint_values(names, position, ARM_JOINTS)
    if positions is None:
        return None
    finger = finger_value(names, position)
    return JointSnapshot(positions, joint_values(names, velocity, ARM_JOINTS),
                         None if finger is None else gripper_opening(finger),
                         None if finger is None else finger_value(names, effort), received_mono)


def build_gate(settings: SafetySettings, kinematics) -> SafetyGate:
    """An inactive gate with the policy's token lease and the executor's liveliness lease; check `.problems`."""
    gate = SafetyGate(settings.limits(kinematics.joint_limits), kinematics.fk,
                      max_command_rate=settings.max_command_rate)
    gate.add_lease(POLICY_LEASE, settings.policy_lease)
    gate.add_lease(EXECUTOR_LEASE, 0.0)
    gate.add_lease(TELEOP_LEASE, settings.teleop_lease)
    gate.watch(TELEOP_LEASE, False, 0.0)  # the policy is in control until /vla/control_mode says otherwise
    return gate


class GateStage:
    """The safety gate with its message handling; `kinematics` gives the arm's FK and joint limits."""

    def __init__(self, settings: SafetySettings, kinematics, messages: MessageKit):
        self.settings, self.m = settings, messages
        self.gate = build_gate(settings, kinematics)
        self.vetoes: Counter = Counter()  # by rule
        self.last_veto = ""

    @property
    def problems(self) -> list[str]:
        return self.gate.problems

    # ------------------------------------------------------------------------------------ inputs
    def on_joint_state(self, msg, now_mono: float) -> None:
        snapshot = joint_snapshot(msg.name, msg.position, msg.velocity, msg.effort, now_mono)
        if snapshot is not None:
            self.gate.update_joints(snapshot)

    def on_tokens(self, now_mono: float) -> None:
        self.gate.touch(POLICY_LEASE, now_mono)

    def on_chunk(self, now_mono: float) -> None:
        """A chunk from the policy itself (a remote backend publishes chunks, no tokens) renews the same lease."""
        self.gate.touch(POLICY_LEASE, now_mono)

    def on_task(self, now_mono: float) -> None:
        """A new task starts the policy's lease afresh, and speeds are judged from the measured joints."""
        self.gate.touch(POLICY_LEASE, now_mono)
        self.gate.touch(TELEOP_LEASE, now_mono)
        self.gate.task_changed()

    def on_teleop_chunk(self, now_mono: float) -> None:
        self.gate.touch(TELEOP_LEASE, now_mono)

    def set_control_mode(self, mode: str, now_mono: float) -> None:
        """Watch the lease of the chunk source in control (policy or teleop), and judge speeds afresh.

        The executor takes chunks from that source only, so the other's silence cannot move the arm; the executor's
        own lease is watched in both modes.
        """
        teleop = mode == TELEOP
        self.gate.watch(POLICY_LEASE, not teleop, now_mono)
        self.gate.watch(TELEOP_LEASE, teleop, now_mono)
        self.gate.task_changed()

    def on_estop(self, asserted: bool, now_ros: float) -> list:
        return self._act(self.gate.set_estop(asserted, now_ros))

    def watchdog(self, now_ros: float, now_mono: float, watching: bool) -> list:
        """Leases, liveliness and stale joint states; returns the hold to publish, if any."""
        if not self.gate.active:
            return []
        decision = self.gate.check_leases(now_mono, now_ros, watching=watching)
        return [] if decision is None else self._act(decision)

    # ------------------------------------------------------------------------------------ commands
    def on_arm(self, msg, now_ros: float, now_mono: float) -> list:
        command = single_point(msg, ARM_JOINTS)
        if isinstance(command, str):
            return self._veto(f"arm command refused: {command}", "malformed")
        positions, reach = command
        return self._act(self.gate.evaluate_arm(ArmCommand(positions, reach, stamp_ns(msg.header.stamp) / NS),
                                                now_ros, now_mono))

    def on_gripper(self, msg, now_ros: float, now_mono: float) -> list:
        command = single_point(msg, (GRIPPER_COMMAND_JOINT,))
        if isinstance(command, str):
            return self._veto(f"gripper command refused: {command}", "malformed")
        positions, reach = command
        decision = self.gate.evaluate_gripper(float(positions[0]), reach, stamp_ns(msg.header.stamp) / NS,
                                              now_ros, now_mono)
        if decision.kind == FORWARD:
            # Controllers take the Interbotix finger joint in metres; the executor speaks 0 (closed) .. 1 (open).
            finger = finger_position(float(decision.positions[0]))
            return [(topics.GRIPPER_CONTROLLER, self.m.joint_command([FINGER_JOINT], [finger], decision.reach_s))]
        return self._veto(decision.reason, decision.rule) if decision.rule else []

    # ------------------------------------------------------------------------------------ outputs
    def _act(self, decision: Decision) -> list:
        out = []
        if decision.kind in (FORWARD, HOLD):
            out.append((topics.ARM_CONTROLLER, self.m.joint_command(ARM_JOINTS, decision.positions, decision.reach_s)))
        if decision.kind == HOLD:
            out += self._veto(decision.reason, decision.rule)
        return out

    def _veto(self, reason: str, rule: str) -> list:
        self.vetoes[rule or "unspecified"] += 1
        self.last_veto = reason
        return [(topics.SAFETY_VETO, self.m.string(veto_text(rule, reason)))]


def veto_text(rule: str, reason: str) -> str:
    """A /vla/safety/veto message: `<rule>: <reason>` (the rule that held the arm first), or the reason alone."""
    return f"{rule}: {reason}" if rule else reason


def split_veto(text: str) -> tuple[str, str]:
    """(rule, reason) of a /vla/safety/veto message; the rule is '' when the text names none."""
    match = _VETO.match(text)
    return (match.group(1), match.group(2)) if match else ("", text)
