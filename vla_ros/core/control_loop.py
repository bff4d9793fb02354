"""One control tick of the chunk executor: sliding window → EE integration → joint targets, or a hold.

The `chunk_executor` node and the offline replay (`vla-ros replay`) both run this, so a bag replayed
offline takes exactly the decisions the live node takes. Two clocks: `now_s` is the clock of the
observation stamps (ROS time), `now_mono` measures ages and hold durations (monotonic in the node; the
bag's clock offline).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vla_ros.core.action_tokens import task_hash
from vla_ros.core.ee_integration import EndEffectorIntegrator, JointTargets
from vla_ros.core.executor import ChunkExecutor, ExecutorConfig, Step


@dataclass(frozen=True)
class ControlSettings:
    executor: ExecutorConfig
    joint_state_timeout_s: float = 0.5  # hold when the newest joint state is older
    reanchor_after_s: float = 1.0  # after holding this long, integrate from the measured joints again


@dataclass(frozen=True)
class ControlOutput:
    """A command (`targets` with the stamp of the chunk's observation) or a hold (`targets` None, `reason`)."""

    targets: JointTargets | None
    step: Step
    reason: str = ""
    new_hold: bool = False  # this tick started a hold

    @property
    def stamp_ns(self) -> int:
        return int(round(self.step.chunk_stamp_s * 1e9))


class ControlLoop:
    def __init__(self, settings: ControlSettings, integrator: EndEffectorIntegrator | None = None):
        self.settings = settings
        self.executor = ChunkExecutor(settings.executor)
        self.integrator = integrator or EndEffectorIntegrator()
        self.joint_positions: np.ndarray | None = None
        self.joint_mono: float = -np.inf
        self.hold_since: float | None = None

    def set_task(self, task: str) -> None:
        """A new (or empty = idle) task: flush the chunks and integrate from the measured joints again."""
        self.executor.set_task(task_hash(task) if task else None)
        self.integrator.release()

    def vetoed(self) -> None:
        """The gate held the arm where it is: integrate from there, not from the vetoed target."""
        self.integrator.release()

    def update_joints(self, names, positions, now_mono: float, arm_joints) -> None:
        """Keep the arm joints of a JointState (ignored unless complete and finite)."""
        index = {name: i for i, name in enumerate(names)}
        if not all(name in index for name in arm_joints) or len(positions) < len(names):
            return
        values = np.array([positions[index[name]] for name in arm_joints], dtype=np.float64)
        if np.all(np.isfinite(values)):
            self.joint_positions, self.joint_mono = values, now_mono

    def tick(self, now_s: float, now_mono: float) -> ControlOutput:
        step = self.executor.tick(now_s)
        fresh = self.joint_positions is not None and now_mono - self.joint_mono < self.settings.joint_state_timeout_s
        if step.hold or not fresh:
            return self._hold(step, step.reason if step.hold else "no fresh /joint_states", now_mono)
        if not self.integrator.anchored:
            self.integrator.anchor(self.joint_positions)
        targets = self.integrator.apply(step.action)
        self.hold_since = None
        return ControlOutput(targets, step)

    def _hold(self, step: Step, reason: str, now_mono: float) -> ControlOutput:
        """Command nothing (the controllers keep the last target); re-anchor after a long hold."""
        new = self.hold_since is None
        if new:
            self.hold_since = now_mono
        elif now_mono - self.hold_since > self.settings.reanchor_after_s:
            self.integrator.release()
        return ControlOutput(None, step, reason, new)
