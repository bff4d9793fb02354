"""`vla-ros replay`: the pipeline's stages on a bag, offline and deterministic, with the graph's settings.

One thread, virtual time: the bag's receive times are the clock (both the ROS clock and the monotonic clock
the nodes use for ages). The stages are the nodes' own objects (`vla_ros.core.stages`), built from the same
graph file (`vla_ros.graphs.pipeline`), with rosbags' message classes instead of rclpy's:

    camera frame        IngestStage.on_image (extra cameras: on_extra_image)           (camera_ingest)
    /vla/image          PolicyStage.next_job / run / publishable, at most inference_rate Hz (vla_policy)
    /vla/action_tokens  DecoderStage.on_tokens                                         (action_decoder)
    /vla/action_chunk   ControlLoop.on_chunk / tick / command_messages                 (chunk_executor)
    /vla/arm_command …  GateStage.on_arm / on_gripper / watchdog                       (safety_monitor)

Compute takes no virtual time: a stage's output carries the time of the input that caused it. Control
ticks fall every 1/control_rate s from the first camera frame; at equal times, bag messages come first,
then a due inference, then the tick. The gate's lease watchdog runs at every event.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from vla_ros.bags.errors import BagError
from vla_ros.bags.replay_messages import OUTPUT_TYPES, deserialize, rosbags_kit, serialize
from vla_ros.core import topics
from vla_ros.core.messages import NS, MessageKit
from vla_ros.core.settings import as_dict
from vla_ros.graphs.pipeline import PipelineError, PipelineSettings, pipeline_settings

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
    seed: int = 0  # the policy's sampling seed (temperature > 0)


class _Inputs:
    """Which bag topics feed the chain, checked before anything is loaded."""

    def __init__(self, reader, settings: PipelineSettings, task_override: str | None):
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
        # The cameras camera_ingest composes beside the primary one (its extra_cameras): topic → (camera, compressed).
        self.extra: dict[str, tuple[str, bool]] = {}
        for camera, raw in settings.extra_camera_topics.items():
            topic = next((t for t in (raw, raw + "/compressed") if t in bag_topics), None)
            if topic is None or bag_topics[topic].msgtype not in IMAGE_TYPES:
                raise BagError(f"bag {reader.path} has no image topic {raw} of the {camera} camera, which "
                               f"camera_ingest reads beside the primary one (extra_cameras="
                               f"{settings.ingest.extra_cameras!r})")
            self.extra[topic] = (camera, IMAGE_TYPES[bag_topics[topic].msgtype])
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
        self.topics = [self.camera, *self.extra, topics.JOINT_STATES, *self.task_topics]


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
    """The five stages on one virtual clock; `emit(topic, time_ns, message)` receives every output."""

    def __init__(self, settings: PipelineSettings, source, tokenizer, emit: Callable[[str, int, object], None],
                 messages: MessageKit, seed: int = 0):
        from vla_ros.core.stages.control import ControlLoop
        from vla_ros.core.stages.decoder import DecoderStage
        from vla_ros.core.stages.gate import GateStage
        from vla_ros.core.stages.ingest import IngestStage
        from vla_ros.core.stages.policy import PolicyStage
        from vla_ros.robot.kinematics import ArmKinematics

        self.settings, self.emit, self.m = settings, emit, messages
        kinematics = ArmKinematics()
        self.ingest = IngestStage(settings.ingest, messages)
        self.policy = PolicyStage(settings.policy, source, messages, rng=np.random.default_rng(seed))
        self.decoder = DecoderStage(settings.decoder, tokenizer, tokenizer.decode, messages)
        self.loop = ControlLoop(settings.executor, kinematics)
        self.gate = GateStage(settings.safety, kinematics, messages)
        if self.gate.problems:
            raise BagError(f"graph {settings.graph}: safety_monitor is misconfigured: {'; '.join(self.gate.problems)}")
        self.gate.gate.active = True  # autostart, as the live monitor configures and activates itself
        self.period_ns = int(round(NS * settings.executor.control_period_s))
        self.task = ""
        self.last_inference_ns: int | None = None
        self.policy_wake_ns: int | None = None
        self.next_tick_ns: int | None = None
        self.latency = _Latency()
        self.counts: Counter = Counter()
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
        self._publish(self.gate.watchdog(s, s, watching=bool(self.task)), now_ns)

    # ------------------------------------------------------------------------------------ inputs
    def on_task(self, text: str, now_ns: int) -> None:
        """The latched task reaches every node at once (the listener's normalized text)."""
        self._watchdog(now_ns)
        if text == self.task:
            return
        self.task = text
        self.policy.on_task(text, now_ns / NS)
        self.decoder.on_task(text)
        self.loop.set_task(text)
        self.gate.on_task(now_ns / NS)

    def on_joint_state(self, msg, now_ns: int) -> None:
        self._watchdog(now_ns)
        s = now_ns / NS
        self.loop.update_joints(msg.name, msg.position, s)
        self.gate.on_joint_state(msg, s)
        self.policy.on_joint_state(msg)

    def on_camera(self, msg, compressed: bool, now_ns: int) -> None:
        self._watchdog(now_ns)
        if self.next_tick_ns is None:
            self.next_tick_ns = now_ns  # control ticks are phased to the first frame
        started = time.perf_counter()
        result = self.ingest.on_image(msg, compressed, now_ns)
        if result.image is None:
            self.counts[f"frames_dropped_{result.drop}"] += 1
            if result.drop == "malformed" and self.counts["frames_dropped_malformed"] == 1:
                self.warnings.append(f"at bag time {now_ns / NS:.3f} s: {result.reason}")
            return
        self.latency.add("ingest", started)
        self.emit(topics.MODEL_IMAGE, now_ns, result.image)
        self.policy.on_image(result.image)
        self._policy(now_ns)

    def on_extra_camera(self, camera: str, compressed: bool, msg, now_ns: int) -> None:
        """A frame of a camera camera_ingest composes beside the primary one (its extra_cameras)."""
        self._watchdog(now_ns)
        problem = self.ingest.on_extra_image(camera, msg, compressed)
        if problem:
            self.counts["frames_dropped_malformed"] += 1
            if self.counts["frames_dropped_malformed"] == 1:
                self.warnings.append(f"at bag time {now_ns / NS:.3f} s: {problem}")

    # ------------------------------------------------------------------------------------ stages
    def _policy(self, now_ns: int) -> None:
        from vla_ros.core import scheduling
        from vla_ros.core.stages.policy import Job

        since = np.inf if self.last_inference_ns is None else (now_ns - self.last_inference_ns) / NS
        job = self.policy.next_job(now_ns / NS, since)
        if not isinstance(job, Job):
            if job.action in (scheduling.STALE, scheduling.NO_TASK):
                self.counts[f"policy_skipped_{job.action}"] += 1
            if job.action == scheduling.RATE_LIMITED:
                self.policy_wake_ns = now_ns + int(round(job.wait_s * NS))
            return
        self.last_inference_ns = now_ns
        started = time.perf_counter()
        generated = self.policy.run(job)
        self.latency.add("policy", started)
        if not self.policy.publishable(job):
            return
        if generated.chunk is not None:  # a continuous chunk (remote backend): no decoder in the path
            if generated.plan:
                self.emit(topics.PLAN, now_ns, self.m.string(generated.plan))
            self.emit(topics.ACTION_CHUNK, now_ns, generated.chunk)
            self.gate.on_chunk(now_ns / NS)
            reason = self.loop.on_chunk(generated.chunk, received_s=now_ns / NS)
            self.counts["chunks_refused" if reason else "chunks_accepted"] += 1
            return
        self.emit(topics.ACTION_TOKENS, now_ns, generated.tokens)
        if generated.plan:
            self.emit(topics.PLAN, now_ns, self.m.string(generated.plan))
        self.gate.on_tokens(now_ns / NS)
        self._decode(generated.tokens, now_ns)

    def _decode(self, message, now_ns: int) -> None:
        started = time.perf_counter()
        decoded = self.decoder.on_tokens(message)
        if decoded.chunk is None:
            if sum(self.decoder.rejected.values()) == 1:
                self.warnings.append(f"action_decoder rejected tokens at bag time {now_ns / NS:.3f} s: "
                                     f"{decoded.verdict.reason}")
            return
        self.latency.add("decoder", started)
        self.tokens_per_chunk.append(int(decoded.verdict.tokens.tokens.size))
        self.emit(topics.ACTION_CHUNK, now_ns, decoded.chunk)
        reason = self.loop.on_chunk(decoded.chunk, received_s=now_ns / NS)
        self.counts["chunks_refused" if reason else "chunks_accepted"] += 1

    def _tick(self, now_ns: int) -> None:
        started = time.perf_counter()
        s = now_ns / NS
        output = self.loop.tick(s, s)
        self.latency.add("executor", started)
        if output.targets is None:
            self.counts["holds"] += output.new_hold
            return
        self.counts["commands"] += 1
        commands = self.loop.command_messages(output, self.m)
        for topic, message in commands:
            self.emit(topic, now_ns, message)
        (_, arm), (_, gripper) = commands
        started = time.perf_counter()
        self._publish(self.gate.on_arm(arm, s, s), now_ns)
        self.latency.add("safety", started)
        self._publish(self.gate.on_gripper(gripper, s, s), now_ns)

    def _publish(self, outputs: list, now_ns: int) -> None:
        """The gate's outputs go to the bag; the executor hears a veto (it integrates from the held position)."""
        for topic, message in outputs:
            self.emit(topic, now_ns, message)
            if topic == topics.ARM_CONTROLLER:
                self.arm_forwarded.append(np.asarray(message.points[0].positions, np.float64))
            elif topic == topics.GRIPPER_CONTROLLER:
                self.gripper_forwarded.append(float(message.points[0].positions[0]))
            elif topic == topics.SAFETY_VETO:
                self.loop.vetoed()

    # ------------------------------------------------------------------------------------ summary
    def summary(self) -> dict:
        from vla_ros.robot.wx250s import ARM_JOINTS

        arm = np.array(self.arm_forwarded) if self.arm_forwarded else np.zeros((0, 6))
        steps = np.abs(np.diff(arm, axis=0)) if len(arm) > 1 else np.zeros((0, 6))
        counts = self.counts + Counter({f"policy_{k}": v for k, v in self.policy.counts.items()
                                        if k == "discarded_task_changed"})
        return {
            "latency_ms": self.latency.summary(),
            "chunks": len(self.tokens_per_chunk),
            "tokens_per_chunk": sorted(set(self.tokens_per_chunk)),
            "rejected_tokens": dict(self.decoder.rejected),
            "vetoes_by_rule": dict(sorted(self.gate.vetoes.items())),
            "counts": dict(sorted(counts.items())),
            "controller_commands": {
                "arm_count": int(len(arm)), "gripper_count": len(self.gripper_forwarded),
                "per_joint_min": dict(zip(ARM_JOINTS, arm.min(0).tolist())) if len(arm) else {},
                "per_joint_max": dict(zip(ARM_JOINTS, arm.max(0).tolist())) if len(arm) else {},
                "max_step_rad": dict(zip(ARM_JOINTS, steps.max(0).tolist())) if len(steps) else {},
                "gripper_min_m": min(self.gripper_forwarded, default=None),
                "gripper_max_m": max(self.gripper_forwarded, default=None),
            },
        }


def _load_models(settings: PipelineSettings, options: ReplayOptions):
    """The policy stage's token source (the graph's backend, one thread) and the decoder's tokenizer."""
    from vla_ros.core.resources import resolve_resource
    from vla_ros.policy.modeling_vla import PolicyLoadError
    from vla_ros.policy.sources import load_token_source
    from vla_ros.tokenizers.loading import load_tokenizer

    policy_path = Path(options.policy) if options.policy else resolve_resource(settings.policy.model_path)
    if settings.policy.backend != "episode" and not policy_path.exists():
        raise BagError(f"policy {policy_path} does not exist; give a policy directory from `vla-ros train` with "
                       "--policy (or set the graph's policy_path)")
    policy_settings = settings.policy
    if options.policy is not None:  # --policy brings its own tokenizer; the graph's tokenizer_path is for its model
        policy_settings = replace(policy_settings, tokenizer_path="")
    try:
        # One thread: the same bag and model give the same bytes.
        source = load_token_source(policy_settings, threads=1, model_path=policy_path)
    except PolicyLoadError as exc:
        raise BagError(f"policy {policy_path}: {exc}") from None
    if options.tokenizer is not None:
        tokenizer_path = Path(options.tokenizer)
    elif options.policy is not None:
        tokenizer_path = policy_path / "tokenizer"  # the policy's own tokenizer
    else:
        tokenizer_path = resolve_resource(settings.decoder.tokenizer_path)
    try:
        tokenizer = load_tokenizer(tokenizer_path)
    except (FileNotFoundError, ValueError, KeyError, OSError) as exc:
        raise BagError(f"tokenizer {tokenizer_path} is not a usable tokenizer directory ({exc})") from None
    return source, tokenizer, policy_path, tokenizer_path


def run_replay(options: ReplayOptions, progress: bool = False, warn: Callable[[str], None] = lambda m: None) -> dict:
    """Replay `options.bag` into OUT/replay (a bag) and OUT/summary.json; returns the summary.

    Everything is written under OUT.partial and moved to OUT at the end, so an error leaves no output that
    looks complete.
    """
    from vla_ros.bags.reading import BagReader
    from vla_ros.bags.writing import BagWriter, partial_path

    out = Path(options.out)
    if out.exists() or partial_path(out).exists():
        raise BagError(f"replay output {out} (or {partial_path(out)}) already exists; choose a new --out")
    if not out.parent.is_dir():
        raise BagError(f"replay output {out}: folder {out.parent} does not exist")
    try:
        settings = pipeline_settings(options.graph, options.graph_args)
    except PipelineError as exc:
        raise BagError(f"--graph {options.graph}: {exc}") from None
    if settings.ingest.source != "topic":
        raise BagError(f"graph {options.graph}: camera_ingest reads source={settings.ingest.source!r}, not a topic; "
                       "replay feeds camera frames from the bag")
    with BagReader(options.bag, on_warning=warn) as reader:
        inputs = _Inputs(reader, settings, options.task)
        source, tokenizer, policy_path, tokenizer_path = _load_models(settings, options)
        messages = rosbags_kit()
        staging = partial_path(out)
        staging.mkdir()
        try:
            custom = {"replayed_bag": str(options.bag), "graph": settings.graph,
                      "policy_tokenizer": source.identity, "decoder_tokenizer": tokenizer.identity}
            with BagWriter(staging / OUTPUT_BAG, custom_data=custom) as writer:
                for topic, msgtype in OUTPUT_TYPES.items():
                    writer.add_topic(topic, msgtype)

                def emit(topic: str, at_ns: int, message) -> None:
                    writer.write(topic, at_ns, serialize(message, OUTPUT_TYPES[topic]))

                pipeline = ReplayPipeline(settings, source, tokenizer, emit, messages, seed=options.seed)
                started = time.perf_counter()
                drive(pipeline, reader, inputs, options.task, deserialize, progress)
                seconds = time.perf_counter() - started
                counts = dict(writer.counts)
            for message in pipeline.warnings:
                warn(message)
            bag_s = reader.info.duration_ns / NS
            summary = {
                "bag": str(options.bag), "graph": settings.graph, "graph_args": list(options.graph_args),
                "policy": str(policy_path), "tokenizer": str(tokenizer_path),
                "policy_tokenizer_identity": source.identity, "decoder_tokenizer_identity": tokenizer.identity,
                "camera_topic": inputs.camera, "task_source": options.task and "--task" or inputs.task_topics[0],
                "settings": {name: as_dict(values) for name, values in settings.by_node().items()},
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


def drive(pipeline: ReplayPipeline, reader, inputs: _Inputs, task: str | None,
          deserialize_message: Callable[[bytes, str], object], progress: bool = False) -> None:
    """Feed the bag's input topics to `pipeline` in receive order, each message made by `deserialize_message`."""
    from tqdm import tqdm

    from vla_ros.core.instruction import interpret_instruction

    if task is not None:
        pipeline.on_task(task, reader.info.start_ns)
    total = sum(reader.info.topics[t].count for t in inputs.topics)
    for item in tqdm(reader.messages(inputs.topics), total=total, desc="replay", unit="msg", disable=not progress):
        pipeline.advance_to(item.timestamp_ns, inclusive=False)
        message = deserialize_message(item.data, item.msgtype)
        if item.topic == inputs.camera:
            pipeline.on_camera(message, inputs.compressed, item.timestamp_ns)
        elif item.topic in inputs.extra:
            pipeline.on_extra_camera(*inputs.extra[item.topic], message, item.timestamp_ns)
        elif item.topic == topics.JOINT_STATES:
            pipeline.on_joint_state(message, item.timestamp_ns)
        elif item.topic == topics.TASK:
            pipeline.on_task(message.data, item.timestamp_ns)
        else:  # /vla/instruction through the listener's rules; a rejected one changes nothing
            decision = interpret_instruction(message.data)
            if decision.accepted:
                pipeline.on_task(decision.task, item.timestamp_ns)
    pipeline.advance_to(reader.info.end_ns, inclusive=True)


def output_bag(path: Path) -> Path:
    """A replay output folder's bag, or the path itself when it is a bag."""
    path = Path(path)
    return path / OUTPUT_BAG if (path / OUTPUT_BAG / "metadata.yaml").exists() else path
