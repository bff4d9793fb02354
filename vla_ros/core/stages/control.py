"""The control-loop stage: sliding window → EE integration → joint targets, or a hold, one tick at a time.

Every driver runs this one object: the `chunk_executor` node, offline replay (`vla-ros replay`) and the
in-process rollout (evaluation, tokenizer fidelity, data generation), so each takes the same decisions. Two clocks: `now_s` is the clock of the
observation stamps (ROS time), `now_mono` measures ages and hold durations (monotonic in the node; the
bag's clock offline).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vla_ros.core import topics
from vla_ros.core.action_chunks import ChunkError
from vla_ros.core.action_tokens import task_hash
from vla_ros.core.ee_delta import pose_delta
from vla_ros.core.messages import MessageKit, read_chunk
from vla_ros.core.ee_integration import EndEffectorIntegrator, JointTargets
from vla_ros.core.executor import ChunkExecutor, ExecutorSettings, Step
from vla_ros.robot.wx250s import ARM_JOINTS, GRIPPER_COMMAND_JOINT, joint_values


@dataclass(frozen=True)
class ControlOutput:
    """A command (`targets` with the stamp of the chunk's observation) or a hold (`targets` None, `reason`)."""

    targets: JointTargets | None
    step: Step
    reason: str = ""
    new_hold: bool = False  # this tick started a hold
    executed: np.ndarray | None = None  # the 7-D Bridge action this command carries out (/vla/executed_action)

    @property
    def stamp_ns(self) -> int:
        return int(round(self.step.chunk_stamp_s * 1e9))


# Chunk sources: the policy's chunks (/vla/action_chunk) or a human's (/vla/teleop/action_chunk). One is in
# control at a time; the other's chunks are refused, so the two never mix in a window.
POLICY, TELEOP = "policy", "teleop"
CONTROL_MODES = (POLICY, TELEOP)


class ControlLoop:
    def __init__(self, settings: ExecutorSettings, kinematics):
        self.settings = settings
        self.executor = ChunkExecutor(settings)
        self.integrator = EndEffectorIntegrator(kinematics)
        self.joint_positions: np.ndarray | None = None
        self.joint_mono: float = -np.inf
        self.hold_since: float | None = None
        self.mode = settings.control_mode

    @property
    def anchor_at_measured(self) -> bool:
        """Whether each adopted chunk starts from the measured joints (the policy's chunks; teleop integrates on)."""
        return self.settings.chunk_anchor == "measured" and self.mode == POLICY

    def set_mode(self, mode: str) -> bool:
        """Hand control to another chunk source; returns whether the mode changed.

        Every queued chunk is dropped and integration restarts from the measured joints, as at a task change, so
        a window never holds a chunk of the source that lost control.
        """
        if mode not in CONTROL_MODES:
            raise ValueError(f"control mode {mode!r} is not one of {', '.join(CONTROL_MODES)}")
        if mode == self.mode:
            return False
        self.mode = mode
        task = self.executor.task_hash
        self.executor.set_task(None)  # flushes every chunk, as a task change does
        self.executor.set_task(task)
        self.integrator.release()
        return True

    def set_task(self, task: str) -> None:
        """A new (or empty = idle) task: flush the chunks and integrate from the measured joints again."""
        self.executor.set_task(task_hash(task) if task else None)
        self.integrator.release()

    def vetoed(self) -> None:
        """The gate held the arm where it is: integrate from there, not from the vetoed target."""
        self.integrator.release()

    def update_joints(self, names, positions, now_mono: float) -> None:
        """Keep the arm joints of a JointState (ignored unless complete and finite)."""
        values = joint_values(names, positions, ARM_JOINTS)
        if values is not None:
            self.update_joint_positions(values, now_mono)

    def update_joint_positions(self, positions: np.ndarray, now_mono: float) -> None:
        """Keep measured arm joint positions (ARM_JOINTS order), unless some are not finite."""
        values = np.asarray(positions, dtype=np.float64)
        if np.all(np.isfinite(values)):
            self.joint_positions, self.joint_mono = values, now_mono

    def on_chunk(self, msg, received_s: float, source: str = POLICY) -> str | None:
        """Queue a chunk message from `source`; returns why it was refused, or None."""
        if source != self.mode:
            return f"a {source} chunk while {self.mode} is in control"
        try:
            return self.executor.add_chunk(read_chunk(msg), received_s=received_s)
        except ChunkError as exc:
            return str(exc)

    def command_messages(self, output: ControlOutput, messages: MessageKit) -> list:
        """The tick's /vla/arm_command and /vla/gripper_command (one point each, stamped with the observation)."""
        period = self.settings.control_period_s
        return [(topics.ARM_COMMAND, messages.joint_command(ARM_JOINTS, output.targets.arm, period, output.stamp_ns)),
                (topics.GRIPPER_COMMAND, messages.joint_command([GRIPPER_COMMAND_JOINT], [output.targets.gripper],
                                                                period, output.stamp_ns))]

    def tick(self, now_s: float, now_mono: float) -> ControlOutput:
        step = self.executor.tick(now_s)
        fresh = self.joint_positions is not None and now_mono - self.joint_mono < self.settings.joint_state_timeout
        if step.hold or not fresh:
            return self._hold(step, step.reason if step.hold else "no fresh /joint_states", now_mono)
        adopted = step.arrival_margin_s is not None or step.first_chunk_wait_s is not None
        if not self.integrator.anchored or (adopted and self.anchor_at_measured and not step.joint_targets):
            self.integrator.anchor(self.joint_positions)
        before = self.integrator.pose
        if step.joint_targets:  # absolute joint targets: no integration, the gate still checks every command
            targets = self.integrator.move_towards(step.action, step.share)
        else:
            targets = self.integrator.apply(step.action)
        self.hold_since = None
        executed = np.asarray(step.action, np.float64).copy()
        if step.joint_targets:  # the EE motion the joint targets make, in the Bridge convention
            executed = np.append(pose_delta(*before, *self.integrator.pose), targets.gripper)
        return ControlOutput(targets, step, executed=executed)

    def _hold(self, step: Step, reason: str, now_mono: float) -> ControlOutput:
        """Command nothing (the controllers keep the last target); re-anchor after a long hold."""
        new = self.hold_since is None
        if new:
            self.hold_since = now_mono
        elif now_mono - self.hold_since > self.settings.reanchor_after:
            self.integrator.release()
        return ControlOutput(None, step, reason, new)
