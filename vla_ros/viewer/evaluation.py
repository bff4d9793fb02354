"""`vla-ros eval --view`: evaluation episodes in the viewer, one after another on a simulated-time timeline.

The in-process rollout has no topics; this logs the same things the live view shows from what the rollout
hands out: each chunk the policy returns (with the frame it saw), the arm and the camera after every control
step, the instruction and plan, and each episode's outcome.
"""

from __future__ import annotations

import numpy as np

from vla_ros.core.action_chunks import ActionChunk
from vla_ros.core.settings import CONTROL_PERIOD_S
from vla_ros.robot.urdf import RobotModel
from vla_ros.robot.wx250s import ARM_JOINTS, FINGER_JOINTS, finger_position
from vla_ros.viewer.recording import ViewerRecording

NS = 1_000_000_000
EPISODE_GAP_S = 1.0  # blank time between episodes on the timeline
JOINT_NAMES = (*ARM_JOINTS, *FINGER_JOINTS)


class EvaluationView:
    def __init__(self, stream, robot: RobotModel):
        self.recording = ViewerRecording(stream, robot, timeline="sim_time", clock="duration", joint_period_s=0.0,
                                         chunk_period_s=0.0)
        self.offset_s = 0.0
        self.workcell = None
        self.task = None

    def episode(self, workcell, index: int, source):
        """Start watching episode `index`; returns `source` wrapped so its chunks are shown (None stays None)."""
        self.workcell, self.index, self.task = workcell, index, None
        return None if source is None else _WatchedSource(source, self)

    def now(self, step: int) -> float:
        return self.offset_s + step * CONTROL_PERIOD_S

    def _begin_if_new(self, step: int) -> None:
        instruction = self.workcell.task.instruction if self.workcell.task is not None else ""
        if instruction != self.task:
            self.task = instruction
            self.recording.task(self.now(step), instruction)
            self.recording.instruction(self.now(step), f"episode {self.index}: {instruction}")

    def on_chunk(self, observation, actions: np.ndarray, plan: str) -> None:
        self._begin_if_new(observation.step)
        t = self.now(observation.step)
        self._joints(t, observation)
        if observation.image is not None:
            self.recording.camera(t, observation.image)
        if plan:
            self.recording.plan(t, plan)
        chunk = ActionChunk(np.asarray(actions, np.float64), int(round(t * NS)), CONTROL_PERIOD_S, 0, "evaluation")
        self.recording.chunk(t, chunk, t)

    def on_step(self, observation, plan: str) -> None:
        """The rollout's per-step hook: the arm, and the camera rendered at the policy's view."""
        self._begin_if_new(observation.step)
        t = self.now(observation.step)
        self._joints(t, observation)
        self.recording.camera(t, self.workcell.render())

    def end_episode(self, result) -> None:
        t = self.now(result.steps)
        outcome = "success" if result.success else f"failed ({result.failure or 'timeout'})"
        self.recording.instruction(t, f"episode {self.index}: {outcome} after {result.steps} steps")
        self.offset_s = t + EPISODE_GAP_S

    def _joints(self, t: float, observation) -> None:
        finger = finger_position(observation.gripper)
        self.recording.joints(t, JOINT_NAMES, [*observation.joint_pos, finger, finger])


class _WatchedSource:
    """A chunk source whose chunks also go to the view."""

    def __init__(self, source, view: EvaluationView):
        self.source, self.view = source, view

    def chunk(self, observation, instruction: str):
        actions, plan = self.source.chunk(observation, instruction)
        self.view.on_chunk(observation, actions, plan)
        return actions, plan

    def __getattr__(self, name):  # label, phase … of the wrapped source
        return getattr(self.source, name)
