"""The policy stage: newest /vla/image + /vla/task (+ /joint_states) → /vla/action_tokens or /vla/action_chunk.

When to infer is `vla_ros.core.scheduling.decide` (a task, a frame not used yet and younger than
`max_image_age`, at most `inference_rate` Hz). The output comes from a `PolicySource`: the built-in runners, a
recorded episode, or a remote server (`vla_ros.serving.client`). A source answers with a `SourceOutput`: action
tokens (published on /vla/action_tokens for the decoder) or a continuous chunk [H, 7] (published on
/vla/action_chunk as it is: no decoder in the path). Either way the stage stamps it with the frame's stamp, the
task and the source's identity. A driver calls `next_job` (cheap, under its lock), `run` (the inference, outside
it) and `publishable` (whether the task is still current).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from vla_ros.core.action_chunks import ACTION_SPACES, EE_DELTA
from vla_ros.core.action_tokens import pack_action_tokens, task_hash
from vla_ros.core.image_msgs import ImageRejected, image_to_rgb8
from vla_ros.core.messages import NS, MessageKit, stamp_ns
from vla_ros.core.preprocess import center_crop_resize
from vla_ros.core.settings import CONTROL_PERIOD_S, CONTROL_RATE_HZ, Settings, non_negative, one_of, positive, setting
from vla_ros.core import scheduling
from vla_ros.robot.wx250s import ARM_JOINTS, joint_values

# The policy runs in this process: torch, onnxruntime, or onnxruntime with int8 MatMul weights (docs/policy.md, "ONNX").
LOCAL_BACKENDS = ("builtin-torch", "builtin-onnx", "builtin-onnx-int8")
POLICY_BACKENDS = (*LOCAL_BACKENDS, "episode", "remote")
SERVED_BACKENDS = (*LOCAL_BACKENDS, "episode")  # what `vla-ros serve` can run (a server is never remote itself)
REMOTE_REPLIES = ("actions", "tokens")


def _percent(value) -> str | None:
    return None if 0 <= value <= 100 else f"must be 0 … 100, got {value}"


@dataclass(frozen=True)
class PolicySettings(Settings):
    """vla_policy's settings."""

    backend: str = setting("builtin-torch", "Policy source: builtin-torch, builtin-onnx (onnxruntime, CUDA when "
                           "present), builtin-onnx-int8 (onnxruntime with the MatMul weights quantized to int8 at "
                           "load; faster on CPU), episode (a recorded episode's actions through the tokenizer) or remote (an "
                           "openpi-compatible policy server at policy_url; no local model).",
                           check=one_of(*POLICY_BACKENDS))
    model_path: str = setting("models/policy/vla", "Policy directory from 'vla-ros train'; relative paths are "
                              "looked up in the package.")
    adapter_path: str = setting("", "LoRA adapter directory from 'vla-ros finetune', trained on model_path; merged "
                                "into the policy at load ('' = none). builtin-onnx runs its merged graphs.")
    tokenizer_path: str = setting("", "Tokenizer directory: required by the episode backend; for the builtin "
                                  "backends, when set, it must be the policy's own tokenizer (the policy carries a "
                                  "copy).")
    episode_data: str = setting("", "Data set directory the episode backend reads.")
    episode_index: int = setting(0, "Episode index the episode backend plays.", check=non_negative)
    inference_rate: float = setting(CONTROL_RATE_HZ, "Most chunks per second.", read_only=False, check=positive)
    max_image_age: float = setting(0.5, "Ignore frames whose stamp is older than this, seconds (0 = no limit).",
                                   read_only=False, check=non_negative)
    temperature: float = setting(0.1, "Sampling temperature of the builtin backends (0 = greedy).", read_only=False,
                                 check=non_negative)
    plan: bool = setting(False, "Generate the chain-of-thought plan before the actions and publish it on /vla/plan.",
                         read_only=False)
    threads: int = setting(1, "CPU threads for inference.", check=positive, node_only=True)
    # --- backend remote (docs/remote.md) ---
    policy_url: str = setting("", "Backend remote: the policy server, ws://host:port or wss://host:port (TLS).")
    api_key_file: str = setting("", "Backend remote: file holding the server's API key (sent as 'Authorization: "
                                "Api-Key <key>'); empty: the environment variable VLA_ROS_API_KEY, else no key.")
    action_space: str = setting(EE_DELTA, "Backend remote: what the server's actions are: ee_delta ([H, 7] Bridge "
                                "end-effector deltas + gripper, OpenVLA and the built-in policy) or joint_position "
                                "([H, 7] absolute targets of the 6 arm joints in rad + gripper opening); a reply that "
                                "is not is refused.", check=one_of(*ACTION_SPACES))
    action_dt: float = setting(CONTROL_PERIOD_S, "Backend remote: seconds between the steps of the server's chunks "
                               "(the control period its policy was trained at).", check=positive)
    request_timeout: float = setting(0.5, "Backend remote: seconds a request may take; a later reply is refused and "
                                     "the connection renewed.", check=positive)
    remote_image_size: int = setting(0, "Backend remote: square size (px) the image is resized to on the robot "
                                     "before sending; 0 = the size the server announces, else 224.",
                                     check=non_negative)
    jpeg_quality: int = setting(0, "Backend remote: send the image as JPEG of this quality (1-100; only a vla_ros "
                                "server reads it); 0 = a raw uint8 array, what openpi servers read.", check=_percent)
    remote_reply: str = setting("actions", "Backend remote: publish a vla_ros server's continuous actions on "
                                "/vla/action_chunk (actions) or its action tokens on /vla/action_tokens for the "
                                "action_decoder (tokens).", check=one_of(*REMOTE_REPLIES))
    tls_ca_file: str = setting("", "Backend remote: a CA certificate (PEM) to trust for wss:// besides the system's "
                               "(e.g. a server's self-signed certificate).")


@dataclass(frozen=True)
class SourceOutput:
    """A source's answer for one observation: action tokens, or a continuous chunk, and the plan text."""

    tokens: np.ndarray | None = None  # token ids [T] of `identity`'s tokenizer: the decoder makes the chunk
    actions: np.ndarray | None = None  # a continuous chunk [H, 7] in `action_space`, published as it is
    plan: str = ""
    action_space: str = EE_DELTA
    step_dt: float = CONTROL_PERIOD_S
    identity: str | None = None  # who produced it, when not the source's `identity` (16 hex digits at most)

    def __post_init__(self):
        if (self.tokens is None) == (self.actions is None):
            raise ValueError("a SourceOutput carries either tokens or actions")


def model_frame(rgb: np.ndarray, size: int, extra_cameras: tuple[str, ...] = ()) -> np.ndarray:
    """/vla/image's pixels → the frame a policy reads: one square view at `size`, or with `extra_cameras` the views
    side by side as camera_ingest composes them ([size, size × views], each view resized on its own).

    A frame with another number of views is rejected (ImageRejected) with what to set."""
    views = 1 + len(extra_cameras)
    height, width = rgb.shape[:2]
    if views == 1:
        return rgb if (height, width) == (size, size) else center_crop_resize(rgb, size)
    if width != views * height:
        raise ImageRejected(
            f"the policy reads {views} camera views side by side (the primary one, then "
            f"{', '.join(extra_cameras)}); /vla/image is {width}×{height}, not {views * height}×{height}: start "
            f"camera_ingest with extra_cameras:={','.join(extra_cameras)} (graph argument extra_cameras)")
    if height == size:
        return rgb
    return np.concatenate([center_crop_resize(view, size) for view in np.split(rgb, views, axis=1)], 1)


class PolicySource(Protocol):
    """Where a policy's output comes from. `image_size` is the square size it infers at (None: no image needed);
    a source with `extra_cameras` (names) reads those cameras' views beside the primary one (`model_frame`).

    `identity` names what the output belongs to: the tokenizer of token output (the decoder refuses others), the
    policy of continuous output; at most 16 hex digits (it travels in the chunk's frame_id).
    """

    identity: str
    image_size: int | None

    def generate(self, rgb: np.ndarray | None, task: str, joints: np.ndarray | None, *, frame_time_s: float,
                 temperature: float, plan: bool, rng: np.random.Generator, stamp_ns: int = 0) -> SourceOutput:
        """The output for one frame. `frame_time_s` is since the task started, `stamp_ns` the frame's stamp."""
        ...


TokenSource = PolicySource  # its name while every source gave tokens


@dataclass(frozen=True)
class Job:
    image: object  # the /vla/image message
    task: str
    joints: np.ndarray | None
    task_started_s: float
    age_s: float


@dataclass(frozen=True)
class Generated:
    tokens: object | None  # the /vla/action_tokens message, or None
    plan: str
    chunk: object | None = None  # the /vla/action_chunk message of a continuous output, or None


class PolicyStage:
    def __init__(self, settings: PolicySettings, source: TokenSource, messages: MessageKit,
                 rng: np.random.Generator | None = None):
        self.settings, self.source, self.m = settings, source, messages
        self.rng = rng if rng is not None else np.random.default_rng()
        self.image = None
        self.image_sequence = self.used_sequence = 0
        self.task = ""
        self.task_started_s = 0.0
        self.joints: np.ndarray | None = None
        self.counts: Counter = Counter()

    # ------------------------------------------------------------------------------------ inputs
    def on_image(self, msg) -> None:
        self.image = msg
        self.image_sequence += 1
        if not self.task:
            self.counts["skipped_no_task"] += 1

    def on_task(self, task: str, now_s: float) -> bool:
        """A task change (True) restarts the task's clock (the episode backend indexes by it)."""
        if task == self.task:
            return False
        self.task, self.task_started_s = task, now_s
        return True

    def on_joint_state(self, msg) -> None:
        joints = joint_values(msg.name, msg.position, ARM_JOINTS)
        if joints is not None:
            self.joints = joints.astype(np.float32)

    # ------------------------------------------------------------------------------------ inference
    def next_job(self, now_s: float, since_last_inference_s: float) -> Job | scheduling.Decision:
        """A job to run now, or the scheduling decision saying why not (and how long to wait)."""
        age = (now_s - stamp_ns(self.image.header.stamp) / NS) if self.image is not None else 0.0
        decision = scheduling.decide(self.task, self.image_sequence, self.used_sequence, age,
                                     self.settings.max_image_age, since_last_inference_s, self.settings.inference_rate)
        if decision.action == scheduling.STALE:
            self.counts["skipped_stale"] += 1
            self.used_sequence = self.image_sequence
        if decision.action == scheduling.NO_TASK:
            self.used_sequence = self.image_sequence  # counted on arrival; a later task needs a newer frame
        if decision.action != scheduling.INFER:
            return decision
        self.used_sequence = self.image_sequence
        return Job(self.image, self.task, self.joints, self.task_started_s, age)

    def run(self, job: Job) -> Generated:
        """Infer on the job's frame (may raise ImageRejected for a malformed frame)."""
        stamp = stamp_ns(job.image.header.stamp)
        rgb = None
        if self.source.image_size is not None:
            rgb = model_frame(image_to_rgb8(job.image), self.source.image_size,
                              tuple(getattr(self.source, "extra_cameras", ())))
        out = self.source.generate(rgb, job.task, job.joints, frame_time_s=stamp / NS - job.task_started_s,
                                   temperature=self.settings.temperature, plan=self.settings.plan, rng=self.rng,
                                   stamp_ns=stamp)
        identity = out.identity or self.source.identity
        if out.actions is not None:
            chunk = self.m.action_chunk(np.asarray(out.actions, np.float64), stamp, out.step_dt, task_hash(job.task),
                                        identity, out.action_space)
            return Generated(None, out.plan, chunk)
        fields = pack_action_tokens(np.asarray(out.tokens, np.int64), stamp, job.task, identity)
        return Generated(self.m.action_tokens(fields), out.plan)

    def publishable(self, job: Job) -> bool:
        """False when the task changed while inferring: the chunk belongs to no current task."""
        if self.task != job.task:
            self.counts["discarded_task_changed"] += 1
            return False
        self.counts["chunks_published"] += 1
        return True
