"""The in-process driver: the pipeline's control loop and safety gate on the workcell, on simulated time.

Evaluation, tokenizer fidelity, `vla-ros sim run` and data generation all run episodes here, through the
same `ControlLoop` (sliding window or temporal ensembling, end-effector integration, holds) and `SafetyGate`
the graph's chunk_executor and safety_monitor run. What differs from the graph is only transport and timing:
a chunk source is asked for a chunk exactly when the executor is about to adopt one, from an observation
taken at that tick, and its answer arrives with no delay; the gate's forwarded target is applied at the tick
(the simulator node interpolates it over the command's reach time).

A chunk source maps an observation and an instruction to actions [H, 7] (and a plan text): a learned policy
with its tokenizer (`PolicyChunks`), any source of the policy stage — built-in, recorded episode or a remote
server (`StageSourceChunks`) —, the scripted expert one step at a time (`ExpertChunks`), or the expert's
look-ahead through a tokenizer (`vla_ros.tokenizers.fidelity`). A source whose `action_space` is
`joint_position` gives absolute joint targets, which the control loop takes as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Protocol

import numpy as np

from vla_ros.core.action_chunks import EE_DELTA, ActionChunk
from vla_ros.core.action_tokens import task_hash
from vla_ros.core.executor import ExecutorSettings
from vla_ros.core.preprocess import compose_views
from vla_ros.core.safety.gate import FORWARD, HOLD, JointSnapshot
from vla_ros.core.safety.rules import ArmCommand
from vla_ros.core.settings import CONTROL_PERIOD_S
from vla_ros.core.stages.control import ControlLoop
from vla_ros.core.stages.gate import POLICY_LEASE, SafetySettings, build_gate
from vla_ros.core.trajectory import TrajectoryFollower, TrajectoryPoint
from vla_ros.sim.expert import PHASES, ScriptedExpert
from vla_ros.sim.tasks import Task
from vla_ros.sim.workcell import Observation, Workcell, WorkcellState

MAX_EPISODE_STEPS = 80
NS = 1_000_000_000


class ChunkSource(Protocol):
    """Actions [H, 7] for an observation and an instruction, and the plan text ('' without one)."""

    def chunk(self, observation: Observation, instruction: str) -> tuple[np.ndarray, str]: ...


class ExpertChunks:
    """The scripted expert as a chunk source: one action per chunk (run with execute_steps 1)."""

    def __init__(self, workcell: Workcell, perturb: Callable[[np.ndarray], np.ndarray] | None = None):
        self.workcell, self.perturb = workcell, perturb
        self.expert = ScriptedExpert()
        self.label: np.ndarray | None = None  # the expert's own action, before any perturbation
        self.phase: str | None = None

    def chunk(self, observation: Observation, instruction: str) -> tuple[np.ndarray, str]:
        action, self.phase = self.expert.act(self.workcell)
        self.label = np.asarray(action, dtype=np.float32).reshape(7)
        executed = self.label if self.perturb is None else self.perturb(self.label)
        return np.asarray(executed, dtype=np.float64)[None], self.phase


def policy_frame(observation: Observation, config) -> np.ndarray:
    """The frame a policy with `config` reads from a workcell observation: the primary camera's image, or with
    `extra_cameras` every view side by side (`compose_views`; the workcell must render them)."""
    if not config.extra_cameras:
        return observation.image
    return compose_views(observation.image, observation.cameras, config.extra_cameras, config.image_size)


def policy_workcell(config, **kwargs):
    """A workcell that renders what a policy with `config` reads: its image size and extra cameras."""
    from vla_ros.sim.workcell import Workcell  # noqa: PLC0415 - MuJoCo

    return Workcell(image_size=config.image_size, extra_cameras=tuple(config.extra_cameras), **kwargs)


class PolicyChunks:
    """A learned policy (a `PolicyRunner`) and its tokenizer as a chunk source."""

    def __init__(self, runner, *, plan: bool = False, blank_instruction: bool = False,
                 temperature: float | None = None, seed: int = 0):
        self.runner, self.plan, self.blank, self.temperature = runner, plan, blank_instruction, temperature
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def reseed(self, episode_seed: int) -> None:
        """A sampling stream of the episode's own, so an episode samples the same whatever ran before it."""
        self.rng = np.random.default_rng([self.seed, episode_seed])

    def chunk(self, observation: Observation, instruction: str) -> tuple[np.ndarray, str]:
        text = "" if self.blank else instruction
        generated = self.runner.infer(policy_frame(observation, self.runner.config)[None], [text], observation.joint_pos[None], plan=self.plan,
                                      temperature=self.temperature, rng=self.rng)
        actions = self.runner.tokenizer.decode(generated.tokens)[0]
        return actions, (self.runner.plan_text(generated.plans[0]) if generated.plans else "")


class StageSourceChunks:
    """A policy-stage source (`vla_ros.core.stages.policy.PolicySource`: built-in, episode, remote) as a chunk
    source; token output is decoded with `tokenizer`, continuous output is used as it is."""

    def __init__(self, source, tokenizer=None, *, temperature: float = 0.1, plan: bool = False, seed: int = 0):
        self.source, self.tokenizer, self.temperature, self.plan = source, tokenizer, temperature, plan
        self.seed, self.rng = seed, np.random.default_rng(seed)
        self.action_space = getattr(source, "action_space", EE_DELTA)

    def reseed(self, episode_seed: int) -> None:
        self.rng = np.random.default_rng([self.seed, episode_seed])

    def chunk(self, observation: Observation, instruction: str) -> tuple[np.ndarray, str]:
        from vla_ros.core.preprocess import center_crop_resize

        rgb, size = observation.image, self.source.image_size
        if rgb is not None and size is not None and rgb.shape[:2] != (size, size):
            rgb = center_crop_resize(rgb, size)
        frame_time = observation.step * CONTROL_PERIOD_S
        out = self.source.generate(rgb, instruction, np.asarray(observation.joint_pos, np.float32),
                                   frame_time_s=frame_time, temperature=self.temperature, plan=self.plan, rng=self.rng,
                                   stamp_ns=int(round(frame_time * NS)) + 1)
        if out.actions is not None:
            return np.asarray(out.actions, np.float64), out.plan
        if self.tokenizer is None:
            raise ValueError("this source gives action tokens: StageSourceChunks needs the tokenizer to decode them")
        return self.tokenizer.decode(np.asarray(out.tokens, np.int64)[None])[0], out.plan


def expert_rollout(workcell: Workcell, seed: int, *, task: Task | None = None, family: str | None = None,
                   perturb: Callable[[np.ndarray], np.ndarray] | None = None, executor: ExecutorSettings | None = None,
                   safety: SafetySettings | None = None, max_steps: int = MAX_EPISODE_STEPS, record: bool = True,
                   on_step: Callable[[Observation, str], None] | None = None, watch=None,
                   interpolate_commands: bool = False) -> Rollout:
    """The scripted expert, one action per tick (its label recorded; with `perturb`, a perturbed copy executed).

    The expert's deltas move the commanded target (it reads `workcell.ee_target`), so they integrate on from it
    (`chunk_anchor="target"`): the recorded episodes do not depend on the executor's anchor for the policy.
    """
    executor = replace(executor or ExecutorSettings(), execute_steps=1, blend=False, chunk_anchor="target")
    return rollout(workcell, ExpertChunks(workcell, perturb), seed, task=task, family=family, executor=executor,
                   safety=safety, max_steps=max_steps, record=record, on_step=on_step, watch=watch,
                   interpolate_commands=interpolate_commands)


@dataclass
class Rollout:
    """One episode: its outcome, and (with `record`) the observation before each executed action."""

    seed: int
    task: Task
    success: bool = False
    steps: int = 0
    inferences: int = 0
    holds: int = 0
    vetoes: dict[str, int] = field(default_factory=dict)
    slowdowns: dict[str, int] = field(default_factory=dict)  # commands the gate forwarded slowed down, by rule
    events: dict[str, int] = field(default_factory=dict)  # unsafe events by kind (with a `watch`)
    plans: list[str] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)  # what the source chose (the expert's label)
    phases: list[int] = field(default_factory=list)  # index into PHASES, -1 when the source has none


class CommandRamp:
    """Joint targets following each command over its reach time, sampled every 10 ms, as widowx_sim's
    trajectory followers (and ros2_control's JointTrajectoryController) do, instead of jumping at the tick."""

    STEP_S = 0.01  # widowx_sim's physics_period

    def __init__(self, workcell: Workcell):
        self.workcell, self.time_s = workcell, 0.0
        self._arm = TrajectoryFollower(workcell.q_target)
        self._gripper = TrajectoryFollower(np.array([workcell.gripper_command]))

    def arm(self, positions: np.ndarray, reach_s: float) -> None:
        self._arm.command(self.time_s, [TrajectoryPoint(np.asarray(positions, np.float64), reach_s)])

    def gripper(self, opening: float, reach_s: float) -> None:
        self._gripper.command(self.time_s, [TrajectoryPoint(np.array([opening]), reach_s)])

    def advance(self, duration_s: float, render: bool | None = None, count_step: bool = False,
                monitor: Callable[[], None] | None = None) -> Observation:
        pieces = max(1, int(round(duration_s / self.STEP_S)))
        for piece in range(pieces):
            self.workcell.set_joint_targets(self._arm.sample(self.time_s), float(self._gripper.sample(self.time_s)[0]))
            self.time_s += self.STEP_S
            last = piece == pieces - 1
            observation = self.workcell.advance(self.STEP_S, render=render if last else False,
                                                count_step=count_step and last, monitor=monitor)
        return observation


def _snapshot(workcell: Workcell, now: float) -> JointSnapshot:
    return JointSnapshot(workcell.joint_positions(), workcell.joint_velocities(), workcell.gripper_state(), None, now)


def rollout(workcell: Workcell, source: ChunkSource, seed: int, *, task: Task | None = None,
            family: str | None = None, executor: ExecutorSettings | None = None,
            safety: SafetySettings | None = None, max_steps: int = MAX_EPISODE_STEPS, record: bool = False,
            on_step: Callable[[Observation, str], None] | None = None, watch=None,
            start: WorkcellState | None = None, observation_age_s: float = 0.0,
            interpolate_commands: bool = False) -> Rollout:
    """Reset the workcell with `seed` (and `task` or a task `family`), run until success or `max_steps` ticks.

    With `watch` (a `safety_events.SafetyWatch` of this workcell) the episode's unsafe events are counted.
    With `start` (a `Workcell.get_state()` snapshot) the run continues from that state instead of a reset, with
    a fresh control loop and gate: the look-ahead of preference data (`vla_ros.alignment.preferences`).

    Tick k happens at simulated time k·period. Before it, when the executor is about to adopt a chunk, the
    source is asked for one from the observation at that instant; the control loop's command then passes the
    gate (the graph's settings unless given) and the forwarded targets drive the workcell for one period.

    With `observation_age_s` > 0 the graph's timing is modelled: the frame a chunk is computed from is taken that
    long before the tick that adopts it (through ROS: the camera's phase against the control ticks, inference and
    transport), while the arm keeps moving under the previous window; the chunk carries the frame's stamp, as the
    policy node's chunks do. A task's first chunk comes from the frame at its first tick.
    With `interpolate_commands` each forwarded command is followed as the graph's simulator (and a trajectory
    controller) follows it: the joint targets move linearly from where they stand to the command over its reach
    time, every 10 ms, instead of jumping to it at the tick.
    """
    executor = executor or ExecutorSettings()
    safety = safety or SafetySettings()
    period = executor.control_period_s
    if not 0.0 <= observation_age_s < period:
        raise ValueError(f"observation_age_s must be in [0, {period:g}) s (one control period), got {observation_age_s}")
    if start is None:
        observation = workcell.reset(seed, task, family=family)
    else:
        workcell.set_state(start)
        observation = workcell.observe()
    result = Rollout(seed=seed, task=workcell.task)
    if watch is not None:
        watch.start()
    loop = ControlLoop(executor, workcell.kinematics)
    loop.set_task(workcell.task.instruction)
    chunk_task = task_hash(workcell.task.instruction)
    gate = build_gate(safety, workcell.kinematics)
    gate.active = True
    gate.task_changed()
    vetoes: dict[str, int] = {}
    slowdowns: dict[str, int] = {}
    plan = ""
    observed = 0  # the tick `observation` was taken at
    early = None  # with observation_age_s: the frame for the next tick's chunk, taken that long before it
    ramp = CommandRamp(workcell) if interpolate_commands else None
    for k in range(max_steps):
        now = k * period
        gate.update_joints(_snapshot(workcell, now))
        loop.update_joint_positions(workcell.joint_positions(), now)
        if loop.executor.wants_chunk():
            if early is not None:
                frame, frame_s = early
            else:
                if observed != k or observation.image is None:
                    observation, observed = workcell.observe(), k
                frame, frame_s = observation, now
            actions, plan = source.chunk(frame, workcell.task.instruction)
            loop.executor.add_chunk(ActionChunk(np.asarray(actions, np.float64), int(round(frame_s * NS)),
                                                CONTROL_PERIOD_S, chunk_task, "rollout",
                                                getattr(source, "action_space", EE_DELTA)), received_s=now)
            gate.touch(POLICY_LEASE, now)
            result.inferences += 1
            result.plans.append(plan)
        output = loop.tick(now, now)
        if output.targets is None:
            result.holds += output.new_hold
        else:
            if record:
                if observed != k:
                    observation, observed = workcell.observe(), k
                label = getattr(source, "label", None)
                result.observations.append(observation)
                result.actions.append(np.asarray(label if label is not None else output.step.action, np.float32))
                phase = getattr(source, "phase", None)
                result.phases.append(PHASES.index(phase) if phase in PHASES else -1)
            stamp = output.step.chunk_stamp_s
            decision = gate.evaluate_arm(ArmCommand(output.targets.arm, period, stamp), now, now)
            if decision.kind in (FORWARD, HOLD):
                if ramp is not None:
                    ramp.arm(decision.positions, decision.reach_s or period)
                else:
                    workcell.set_arm_target(decision.positions)
            if decision.kind == FORWARD and decision.rule:
                slowdowns[decision.rule] = slowdowns.get(decision.rule, 0) + 1
            if decision.kind == HOLD:
                vetoes[decision.rule] = vetoes.get(decision.rule, 0) + 1
                loop.vetoed()
            gripper = gate.evaluate_gripper(output.targets.gripper, period, stamp, now, now)
            if gripper.kind == FORWARD:
                if ramp is not None:
                    ramp.gripper(float(gripper.positions[0]), gripper.reach_s or period)
                else:
                    workcell.set_gripper_target(float(gripper.positions[0]))
        advance = workcell.advance if ramp is None else ramp.advance
        early = None
        if observation_age_s > 0 and loop.executor.wants_chunk():  # the next tick adopts a chunk: its frame now
            advance(period - observation_age_s, render=False, monitor=watch)
            early = (workcell.observe(), now + period - observation_age_s)
            observation = advance(observation_age_s, render=False, count_step=True, monitor=watch)
        else:
            observation = advance(period, render=False, count_step=True, monitor=watch)
        result.steps += 1
        if on_step is not None:
            on_step(observation, plan)
        if workcell.success():
            result.success = True
            break
    if record:
        result.observations.append(workcell.observe())  # the final observation, after the last action
    result.vetoes, result.slowdowns = vetoes, slowdowns
    if watch is not None:
        result.events = dict(watch.record.events)
    return result
