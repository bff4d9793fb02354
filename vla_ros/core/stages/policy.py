"""The policy stage: newest /vla/image + /vla/task (+ /joint_states) → /vla/action_tokens (vla_policy).

When to infer is `vla_ros.core.scheduling.decide` (a task, a frame not used yet and younger than
`max_image_age`, at most `inference_rate` Hz). The tokens come from a `TokenSource`: the built-in runners, a
recorded episode, or a remote server; the stage stamps them with the frame's stamp, the task and the source's
tokenizer identity. A driver calls `next_job` (cheap, under its lock), `run` (the inference, outside it) and
`publishable` (whether the task is still current).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from vla_ros.core.action_tokens import pack_action_tokens
from vla_ros.core.image_msgs import image_to_rgb8
from vla_ros.core.messages import NS, MessageKit, stamp_ns
from vla_ros.core.preprocess import center_crop_resize
from vla_ros.core.settings import CONTROL_RATE_HZ, Settings, non_negative, one_of, positive, setting
from vla_ros.core import scheduling
from vla_ros.robot.wx250s import ARM_JOINTS, joint_values

POLICY_BACKENDS = ("builtin-torch", "builtin-onnx", "episode")


@dataclass(frozen=True)
class PolicySettings(Settings):
    """vla_policy's settings."""

    backend: str = setting("builtin-torch", "Token source: builtin-torch, builtin-onnx (onnxruntime, CUDA when "
                           "present) or episode (a recorded episode's actions through the tokenizer).",
                           check=one_of(*POLICY_BACKENDS))
    model_path: str = setting("models/policy/vla", "Policy directory from 'vla-ros train'; relative paths are "
                              "looked up in the package.")
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


class TokenSource(Protocol):
    """Where action tokens come from. `image_size` is the square size it infers at (None: it needs no image)."""

    identity: str
    image_size: int | None

    def generate(self, rgb: np.ndarray | None, task: str, joints: np.ndarray | None, *, frame_time_s: float,
                 temperature: float, plan: bool, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        """Token ids [T] and the plan text ('' when none). `frame_time_s` is since the task started."""
        ...


@dataclass(frozen=True)
class Job:
    image: object  # the /vla/image message
    task: str
    joints: np.ndarray | None
    task_started_s: float
    age_s: float


@dataclass(frozen=True)
class Generated:
    tokens: object  # the /vla/action_tokens message
    plan: str


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
            rgb = image_to_rgb8(job.image)
            size = self.source.image_size
            if rgb.shape[:2] != (size, size):
                rgb = center_crop_resize(rgb, size)
        tokens, plan = self.source.generate(rgb, job.task, job.joints, frame_time_s=stamp / NS - job.task_started_s,
                                            temperature=self.settings.temperature, plan=self.settings.plan,
                                            rng=self.rng)
        fields = pack_action_tokens(np.asarray(tokens, np.int64), stamp, job.task, self.source.identity)
        return Generated(self.m.action_tokens(fields), plan)

    def publishable(self, job: Job) -> bool:
        """False when the task changed while inferring: the chunk belongs to no current task."""
        if self.task != job.task:
            self.counts["discarded_task_changed"] += 1
            return False
        self.counts["chunks_published"] += 1
        return True
