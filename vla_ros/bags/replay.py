"""`vla-ros replay`: the perception → policy → decoder → executor → safety chain on a bag, offline and deterministic.

One thread, virtual time: the bag's receive times are the clock (both the ROS clock and the monotonic
clock the nodes use for ages). Each stage calls the same core functions as its node:

    camera frame      frame_age_problem, image_to_rgb8 / compressed_to_rgb8, center_crop_resize  (camera_ingest)
    /vla/image        scheduling.decide at most inference_rate Hz, PolicyRunner.infer greedy, pack_action_tokens
    /vla/action_tokens  check_token_message, tokenizer.decode, chunk layout                    (action_decoder)
    /vla/action_chunk   parse_chunk, ControlLoop (sliding window + EE integration)             (chunk_executor)
    /vla/arm_command …  single_point, SafetyGate from the safety_monitor's parameters          (safety_monitor)

Compute takes no virtual time: a stage's output carries the time of the input that caused it. Control
ticks fall every 1/control_rate s from the first camera frame; at equal times, bag messages come first,
then a due inference, then the tick. The gate's lease watchdog runs at every event.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from vla_ros.bags.errors import BagError
from vla_ros.bags.replay_messages import NS, OUTPUT_TYPES, OutputMessages
from vla_ros.bags.replay_settings import ReplaySettings, load_replay_settings
from vla_ros.core import topics

OUTPUT_BAG = "replay"
SUMMARY = "summary.json"
IMAGE_TYPES = {"sensor_msgs/msg/Image": False, "sensor_msgs/msg/CompressedImage": True}
STAGES = ("ingest", "policy", "decoder", "executor", "safety")


@dataclass
class ReplayOptions:
    bag: Path
    out: Path
    graph: str = "widowx"
    graph_args: list[str] = field(default_factory=list)
    policy: Path | None = None  # default: the graph's vla_policy model_path
    tokenizer: Path | None = None  # the decoder's tokenizer; default: the graph's action_decoder tokenizer_path
    task: str | None = None  # instead of the bag's /vla/task or /vla/instruction


class _Inputs:
    """Which bag topics feed the chain, checked before anything is loaded."""

    def __init__(self, reader, settings: ReplaySettings, task_override: str | None):
        bag_topics = reader.info.topics
        raw, compressed = settings.camera_topic, settings.camera_topic + "/compressed"
        self.camera = next((t for t in (raw, compressed) if t in bag_topics), None)
        if self.camera is None:
            have = ", ".join(bag_topics) or "no topics"
            raise BagError(f"bag {reader.path} has no camera topic: expected {raw} (sensor_msgs/msg/Image) or "
                           f"{compressed} (sensor_msgs/msg/CompressedImage); it has {have}")
        camera_type = bag_topics[self.camera].msgtype
        if camera_type not in IMAGE_TYPES:
            raise BagError(f"topic {self.camera} in bag {reader.path} carries {camera_type}, not a "
                           "sensor_msgs/msg/Image or CompressedImage")
        self.compressed = IMAGE_TYPES[camera_type]
        if topics.JOINT_STATES not in bag_topics:
            raise BagError(f"bag {reader.path} has no {topics.JOINT_STATES} topic; the executor and the safety gate "
                           "need the arm's joint states")
        self.task_topics = [t for t in (topics.TASK, topics.INSTRUCTION) if t in bag_topics]
        if task_override is None and not self.task_topics:
            raise BagError(f"bag {reader.path} has neither {topics.TASK} nor {topics.INSTRUCTION}; give the task "
                           "with --task")
        if task_override is not None:
            self.task_topics = []
        # /vla/task wins over /vla/instruction when a bag has both (it is what the nodes subscribe to).
        self.task_topics = self.task_topics[:1]
        for topic, msgtype in ((topics.JOINT_STATES, "sensor_msgs/msg/JointState"),
                               *((t, "std_msgs/msg/String") for t in self.task_topics)):
            if bag_topics[topic].msgtype != msgtype:
                raise BagError(f"topic {topic} in bag {reader.path} carries {bag_topics[topic].msgtype}, not {msgtype}")
        self.topics = [self.camera, topics.JOINT_STATES, *self.task_topics]


class _Latency:
    def __init__(self):
        self.samples = {stage: [] for stage in STAGES}

    def add(self, stage: str, started: float) -> None:
        self.samples[stage].append(time.perf_counter() - started)

    def summary(self) -> dict:
        return {stage: ({"count": len(v), "p50_ms": float(np.percentile(v, 50) * 1e3),
                         "p95_ms": float(np.percentile(v, 95) * 1e3)} if v else {"count": 0})
                for stage, v in self.samples.items()}


class ReplayPipeline:
    """The five nodes' logic on one virtual clock; `emit(topic, time_ns, message)` receives every output."""

    def __init__(self, settings: ReplaySettings, runner, tokenizer, emit: Callable[[str, int, object], None],
                 messages: OutputMessages):
        from vla_ros.core.control_loop import ControlLoop, ControlSettings
        from vla_ros.core.executor import ExecutorConfig
        from vla_ros.core.safety.configuration import gate_from_parameters
        from vla_ros.sim.kinematics import ArmKinematics

        self.settings, self.runner, self.tokenizer, self.emit, self.m = settings, runner, tokenizer, emit, messages
        ingest, policy, executor = settings["camera_ingest"], settings["vla_policy"], settings["chunk_executor"]
        self.image_size = int(ingest["image_size"])
        self.max_age = float(ingest["max_age"])
        self.inference_rate = float(policy["inference_rate"])
        self.max_image_age = float(policy["max_image_age"])
        self.step_dt = float(settings["action_decoder"]["step_dt"])
        self.period_ns = int(round(NS / float(executor["control_rate"])))
        self.period = self.period_ns / NS
        self.loop = ControlLoop(ControlSettings(
            ExecutorConfig(execute_steps=int(executor["execute_steps"]), control_period_s=self.period,
                           blend=bool(executor["blend"]), blend_decay=float(executor["blend_decay"])),
            joint_state_timeout_s=float(executor["joint_state_timeout"]),
            reanchor_after_s=float(executor["reanchor_after"])))
        self.gate = gate_from_parameters(settings["safety_monitor"], ArmKinematics())
        if self.gate.problems:
            raise BagError(f"graph {settings.graph}: safety_monitor is misconfigured: {'; '.join(self.gate.problems)}")
        self.gate.active = True  # autostart, as the live monitor configures and activates itself
        self.task = ""
        self.policy_joints: np.ndarray | None = None
        self.image = None
        self.image_sequence = self.used_sequence = 0
        self.last_inference_ns: int | None = None
        self.policy_wake_ns: int | None = None
        self.next_tick_ns: int | None = None
        self.latency = _Latency()
        self.counts: Counter = Counter()
        self.rejected_tokens: Counter = Counter()
        self.rejected_chunks: Counter = Counter()
        self.vetoes: Counter = Counter()
        self.tokens_per_chunk: list[int] = []
        self.arm_forwarded: list[np.ndarray] = []
        self.gripper_forwarded: list[float] = []
        self.warnings: list[str] = []

    # ------------------------------------------------------------------------------------ clock
    def advance_to(self, until_ns: int, inclusive: bool) -> None:
        """Run the inferences and control ticks due before `until_ns` (or at it, when `inclusive`)."""
        while True:
            due = [t for t in (self.policy_wake_ns, self.next_tick_ns) if t is not None
                   and (t < until_ns or (inclusive and t == until_ns))]
            if not due:
                return
            now = min(due)
            if self.policy_wake_ns == now:
                self.policy_wake_ns = None
                self._watchdog(now)
                self._policy(now)
            else:
                self.next_tick_ns = now + self.period_ns
                self._watchdog(now)
                self._tick(now)

    def _watchdog(self, now_ns: int) -> None:
        s = now_ns / NS
        decision = self.gate.check_leases(s, s, watching=bool(self.task))
        if decision is not None:
            self._act(decision, now_ns)

    # ------------------------------------------------------------------------------------ inputs
    def on_task(self, text: str, now_ns: int) -> None:
        """The latched task reaches every node at once (the listener's normalized text)."""
        self._watchdog(now_ns)
        if text == self.task:
            return
        self.task = text
        self.loop.set_task(text)
        self.gate.touch("vla_policy", now_ns / NS)

    def on_joint_state(self, msg, now_ns: int) -> None:
        from vla_ros.core.safety.configuration import joint_snapshot
        from vla_ros.sim.kinematics import JOINT_NAMES

        self._watchdog(now_ns)
        s = now_ns / NS
        self.loop.update_joints(msg.name, msg.position, s, JOINT_NAMES)
        snapshot = joint_snapshot(msg, s)
        if snapshot is not None:
            self.gate.update_joints(snapshot)
        index = {name: i for i, name in enumerate(msg.name)}
        arm = JOINT_NAMES
        if all(name in index for name in arm) and len(msg.position) == len(msg.name):
            self.policy_joints = np.array([msg.position[index[name]] for name in arm], np.float32)

    def on_camera(self, msg, compressed: bool, now_ns: int) -> None:
        from vla_ros.core.image_msgs import ImageRejected, compressed_to_rgb8, image_to_rgb8
        from vla_ros.core.preprocess import center_crop_resize, frame_age_problem

        self._watchdog(now_ns)
        if self.next_tick_ns is None:
            self.next_tick_ns = now_ns  # control ticks are phased to the first frame
        started = time.perf_counter()
        problem = frame_age_problem((now_ns - _stamp_ns(msg.header.stamp)) / NS, self.max_age)
        if problem:
            self.counts["frames_dropped_stale"] += 1
            return
        try:
            rgb = compressed_to_rgb8(msg) if compressed else image_to_rgb8(msg)
        except ImageRejected as exc:
            self.counts["frames_dropped_malformed"] += 1
            if self.counts["frames_dropped_malformed"] == 1:
                self.warnings.append(f"dropped malformed frame at bag time {now_ns / NS:.3f} s: {exc}")
            return
        image = self.m.model_image(msg.header, center_crop_resize(rgb, self.image_size))
        self.latency.add("ingest", started)
        self.emit(topics.MODEL_IMAGE, now_ns, image)
        self.image, self.image_sequence = image, self.image_sequence + 1
        self._policy(now_ns)

    # ------------------------------------------------------------------------------------ stages
    def _policy(self, now_ns: int) -> None:
        from vla_ros.core.action_tokens import pack_action_tokens
        from vla_ros.core.image_msgs import image_to_rgb8
        from vla_ros.core.preprocess import center_crop_resize
        from vla_ros.policy import scheduling

        if self.image is None:
            return
        age = (now_ns - _stamp_ns(self.image.header.stamp)) / NS
        since = np.inf if self.last_inference_ns is None else (now_ns - self.last_inference_ns) / NS
        decision = scheduling.decide(self.task, self.image_sequence, self.used_sequence, age, self.max_image_age,
                                     since, self.inference_rate)
        if decision.action in (scheduling.STALE, scheduling.NO_TASK):
            self.counts[f"policy_skipped_{decision.action}"] += 1
            self.used_sequence = self.image_sequence
        if decision.action == scheduling.RATE_LIMITED:
            self.policy_wake_ns = now_ns + int(round(decision.wait_s * NS))
        if decision.action != scheduling.INFER:
            return
        self.used_sequence = self.image_sequence
        self.last_inference_ns = now_ns
        started = time.perf_counter()
        rgb = image_to_rgb8(self.image)
        size = self.runner.config.image_size
        if rgb.shape[:2] != (size, size):
            rgb = center_crop_resize(rgb, size)
        joints = None if self.policy_joints is None else self.policy_joints[None]
        tokens = self.runner.infer(np.array(rgb[None]), [self.task], joints, temperature=0.0).tokens[0]
        stamp = _stamp_ns(self.image.header.stamp)
        fields = pack_action_tokens(np.asarray(tokens, np.int64), stamp, self.task, self.runner.identity)
        message = self.m.action_tokens(fields)
        self.latency.add("policy", started)
        self.emit(topics.ACTION_TOKENS, now_ns, message)
        self.gate.touch("vla_policy", now_ns / NS)
        self._decode(message, now_ns)

    def _decode(self, message, now_ns: int) -> None:
        from vla_ros.core.token_checks import check_token_message

        started = time.perf_counter()
        verdict = check_token_message(
            [(d.label, d.size, d.stride) for d in message.layout.dim], message.layout.data_offset, message.data,
            vocab_size=self.tokenizer.vocab_size, tokens_per_chunk=self.tokenizer.tokens_per_chunk,
            identity=self.tokenizer.identity, task=self.task, token_ranges=self.tokenizer.token_ranges())
        if verdict.tokens is None:
            self.rejected_tokens[verdict.reason_key] += 1
            if sum(self.rejected_tokens.values()) == 1:
                self.warnings.append(f"action_decoder rejected tokens at bag time {now_ns / NS:.3f} s: {verdict.reason}")
            return
        actions = self.tokenizer.decode(verdict.tokens.tokens[None, :])[0]
        chunk = self.m.action_chunk(actions, verdict.tokens.stamp_ns, self.step_dt, verdict.tokens.task_hash,
                                    verdict.tokens.identity)
        self.latency.add("decoder", started)
        self.tokens_per_chunk.append(int(verdict.tokens.tokens.size))
        self.emit(topics.ACTION_CHUNK, now_ns, chunk)
        self._receive_chunk(chunk, now_ns)

    def _receive_chunk(self, msg, now_ns: int) -> None:
        from vla_ros.core.action_chunks import ChunkError, parse_chunk

        try:
            chunk = parse_chunk(msg.joint_names,
                                [(p.positions, p.time_from_start.sec * NS + p.time_from_start.nanosec) for p in msg.points],
                                _stamp_ns(msg.header.stamp), msg.header.frame_id)
            reason = self.loop.executor.add_chunk(chunk, received_s=now_ns / NS)
        except ChunkError as exc:
            reason = str(exc)
        self.counts["chunks_refused" if reason else "chunks_accepted"] += 1

    def _tick(self, now_ns: int) -> None:
        from vla_ros.sim.kinematics import JOINT_NAMES

        started = time.perf_counter()
        s = now_ns / NS
        output = self.loop.tick(s, s)
        self.latency.add("executor", started)
        if output.targets is None:
            self.counts["holds"] += output.new_hold
            return
        arm = self.m.joint_command(JOINT_NAMES, output.targets.arm, self.period, output.stamp_ns)
        gripper = self.m.joint_command(["gripper"], [output.targets.gripper], self.period, output.stamp_ns)
        self.counts["commands"] += 1
        self.emit(topics.ARM_COMMAND, now_ns, arm)
        self.emit(topics.GRIPPER_COMMAND, now_ns, gripper)
        self._gate_arm(arm, now_ns)
        self._gate_gripper(gripper, now_ns)

    def _gate_arm(self, msg, now_ns: int) -> None:
        from vla_ros.core.joint_commands import single_point
        from vla_ros.core.safety.rules import ArmCommand
        from vla_ros.sim.kinematics import JOINT_NAMES

        started = time.perf_counter()
        command = single_point(msg, list(JOINT_NAMES))
        if isinstance(command, str):
            self._veto(f"arm command refused: {command}", "malformed", now_ns)
            return
        positions, reach = command
        s = now_ns / NS
        decision = self.gate.evaluate_arm(ArmCommand(positions, reach, _stamp_ns(msg.header.stamp) / NS), s, s)
        self.latency.add("safety", started)
        self._act(decision, now_ns)

    def _gate_gripper(self, msg, now_ns: int) -> None:
        from vla_ros.core.joint_commands import single_point
        from vla_ros.core.safety.gate import FORWARD
        from vla_ros.sim.workcell import finger_position

        command = single_point(msg, ["gripper"])
        if isinstance(command, str):
            self._veto(f"gripper command refused: {command}", "malformed", now_ns)
            return
        positions, reach = command
        s = now_ns / NS
        decision = self.gate.evaluate_gripper(float(positions[0]), reach, _stamp_ns(msg.header.stamp) / NS, s, s)
        if decision.kind == FORWARD:
            # Controllers take the Interbotix finger joint in metres; the executor speaks 0 (closed) .. 1 (open).
            finger = finger_position(float(decision.positions[0]))
            self.gripper_forwarded.append(finger)
            self.emit(topics.GRIPPER_CONTROLLER, now_ns, self.m.joint_command(["left_finger"], [finger],
                                                                                 decision.reach_s))
        elif decision.rule:
            self._veto(decision.reason, decision.rule, now_ns)

    def _act(self, decision, now_ns: int) -> None:
        from vla_ros.core.safety.gate import FORWARD, HOLD
        from vla_ros.sim.kinematics import JOINT_NAMES

        if decision.kind in (FORWARD, HOLD):
            self.emit(topics.ARM_CONTROLLER, now_ns,
                      self.m.joint_command(list(JOINT_NAMES), decision.positions, decision.reach_s))
            self.arm_forwarded.append(np.asarray(decision.positions, np.float64))
        if decision.kind == HOLD:
            self._veto(decision.reason, decision.rule, now_ns)

    def _veto(self, reason: str, rule: str, now_ns: int) -> None:
        self.vetoes[rule or "unspecified"] += 1
        self.emit(topics.SAFETY_VETO, now_ns, self.m.string(reason))
        self.loop.vetoed()  # the executor hears the veto and integrates from the held position

    # ------------------------------------------------------------------------------------ summary
    def summary(self) -> dict:
        from vla_ros.sim.kinematics import JOINT_NAMES

        arm = np.array(self.arm_forwarded) if self.arm_forwarded else np.zeros((0, 6))
        steps = np.abs(np.diff(arm, axis=0)) if len(arm) > 1 else np.zeros((0, 6))
        return {
            "latency_ms": self.latency.summary(),
            "chunks": len(self.tokens_per_chunk),
            "tokens_per_chunk": sorted(set(self.tokens_per_chunk)),
            "rejected_tokens": dict(self.rejected_tokens),
            "vetoes_by_rule": dict(sorted(self.vetoes.items())),
            "counts": dict(sorted(self.counts.items())),
            "controller_commands": {
                "arm_count": int(len(arm)), "gripper_count": len(self.gripper_forwarded),
                "per_joint_min": dict(zip(JOINT_NAMES, arm.min(0).tolist())) if len(arm) else {},
                "per_joint_max": dict(zip(JOINT_NAMES, arm.max(0).tolist())) if len(arm) else {},
                "max_step_rad": dict(zip(JOINT_NAMES, steps.max(0).tolist())) if len(steps) else {},
                "gripper_min_m": min(self.gripper_forwarded, default=None),
                "gripper_max_m": max(self.gripper_forwarded, default=None),
            },
        }


def _stamp_ns(stamp) -> int:
    return int(stamp.sec) * NS + int(stamp.nanosec)


def _load_models(settings: ReplaySettings, options: ReplayOptions):
    from vla_ros.core.resources import resolve_resource
    from vla_ros.policy.modeling_vla import PolicyLoadError
    from vla_ros.policy.runners import PolicyRunner
    from vla_ros.tokenizers.loading import load_tokenizer

    policy_settings = settings["vla_policy"]
    if policy_settings["backend"] not in ("builtin-torch", "builtin-onnx"):
        raise BagError(f"graph {settings.graph}: vla_policy backend {policy_settings['backend']!r} cannot be "
                       "replayed; replay runs a learned policy (builtin-torch)")
    policy_path = Path(options.policy) if options.policy else resolve_resource(policy_settings["model_path"])
    if not policy_path.exists():
        raise BagError(f"policy {policy_path} does not exist; give a policy directory from `vla-ros train` with "
                       "--policy (or set the graph's policy_path)")
    try:
        # torch on one thread: the same bag and model give the same bytes.
        runner = PolicyRunner(policy_path, "builtin-torch", threads=1)
    except PolicyLoadError as exc:
        raise BagError(f"policy {policy_path}: {exc}") from None
    if options.tokenizer is not None:
        tokenizer_path = Path(options.tokenizer)
    elif options.policy is not None:
        tokenizer_path = policy_path / "tokenizer"  # the policy's own tokenizer
    else:
        tokenizer_path = resolve_resource(settings["action_decoder"]["tokenizer_path"])
    try:
        tokenizer = load_tokenizer(tokenizer_path)
    except (FileNotFoundError, ValueError, KeyError, OSError) as exc:
        raise BagError(f"tokenizer {tokenizer_path} is not a usable tokenizer directory ({exc})") from None
    return runner, tokenizer, policy_path, tokenizer_path


def run_replay(options: ReplayOptions, progress: bool = False, warn: Callable[[str], None] = lambda m: None) -> dict:
    """Replay `options.bag` into OUT/replay (a bag) and OUT/summary.json; returns the summary.

    Everything is written under OUT.partial and moved to OUT at the end, so an error leaves no output that
    looks complete.
    """
    from tqdm import tqdm

    from vla_ros.bags.reading import BagReader
    from vla_ros.bags.writing import BagWriter, partial_path
    from vla_ros.core.instruction import interpret_instruction

    out = Path(options.out)
    if out.exists() or partial_path(out).exists():
        raise BagError(f"replay output {out} (or {partial_path(out)}) already exists; choose a new --out")
    if not out.parent.is_dir():
        raise BagError(f"replay output {out}: folder {out.parent} does not exist")
    settings = load_replay_settings(options.graph, options.graph_args)
    with BagReader(options.bag, on_warning=warn) as reader:
        inputs = _Inputs(reader, settings, options.task)
        runner, tokenizer, policy_path, tokenizer_path = _load_models(settings, options)
        messages = OutputMessages()
        staging = partial_path(out)
        staging.mkdir()
        try:
            custom = {"replayed_bag": str(options.bag), "graph": settings.graph,
                      "policy_tokenizer": runner.identity, "decoder_tokenizer": tokenizer.identity}
            with BagWriter(staging / OUTPUT_BAG, custom_data=custom) as writer:
                for topic, msgtype in OUTPUT_TYPES.items():
                    writer.add_topic(topic, msgtype)

                def emit(topic: str, at_ns: int, message) -> None:
                    writer.write(topic, at_ns, messages.serialize(message, OUTPUT_TYPES[topic]))

                pipeline = ReplayPipeline(settings, runner, tokenizer, emit, messages)
                if options.task is not None:
                    pipeline.on_task(options.task, reader.info.start_ns)
                started = time.perf_counter()
                total = sum(reader.info.topics[t].count for t in inputs.topics)
                for item in tqdm(reader.messages(inputs.topics), total=total, desc="replay", unit="msg",
                                 disable=not progress):
                    pipeline.advance_to(item.timestamp_ns, inclusive=False)
                    message = messages.deserialize(item.data, item.msgtype)
                    if item.topic == inputs.camera:
                        pipeline.on_camera(message, inputs.compressed, item.timestamp_ns)
                    elif item.topic == topics.JOINT_STATES:
                        pipeline.on_joint_state(message, item.timestamp_ns)
                    elif item.topic == topics.TASK:
                        pipeline.on_task(message.data, item.timestamp_ns)
                    else:  # /vla/instruction through the listener's rules; a rejected one changes nothing
                        decision = interpret_instruction(message.data)
                        if decision.accepted:
                            pipeline.on_task(decision.task, item.timestamp_ns)
                pipeline.advance_to(reader.info.end_ns, inclusive=True)
                seconds = time.perf_counter() - started
                counts = dict(writer.counts)
            for message in pipeline.warnings:
                warn(message)
            bag_s = reader.info.duration_ns / NS
            summary = {
                "bag": str(options.bag), "graph": settings.graph, "graph_args": list(options.graph_args),
                "policy": str(policy_path), "tokenizer": str(tokenizer_path),
                "policy_tokenizer_identity": runner.identity, "decoder_tokenizer_identity": tokenizer.identity,
                "camera_topic": inputs.camera, "task_source": options.task and "--task" or inputs.task_topics[0],
                "settings": {name: {k: v for k, v in values.items()} for name, values in settings.nodes.items()},
                "bag_seconds": bag_s, "wall_seconds": seconds,
                "speed_vs_real_time": bag_s / seconds if seconds > 0 else None,
                "output_messages": counts, **pipeline.summary(),
            }
            (staging / SUMMARY).write_text(json.dumps(summary, indent=2, default=str) + "\n")
            staging.rename(out)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return summary


def output_bag(path: Path) -> Path:
    """A replay output folder's bag, or the path itself when it is a bag."""
    path = Path(path)
    return path / OUTPUT_BAG if (path / OUTPUT_BAG / "metadata.yaml").exists() else path
