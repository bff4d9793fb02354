"""vla_policy: latest /vla/image + current /vla/task (+ /joint_states) → /vla/action_tokens (and /vla/plan).

Callbacks only store the newest inputs; one worker thread infers, so nothing in the executor
waits for the model. The worker infers whenever it has a task and a frame it has not used that
is younger than `max_image_age`, at most `inference_rate` Hz (vla_ros.policy.scheduling).
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Int32MultiArray, MultiArrayDimension, String

from vla_ros.core import topics
from vla_ros.core.action_tokens import pack_action_tokens
from vla_ros.core.image_msgs import ImageRejected, image_to_rgb8
from vla_ros.core.preprocess import center_crop_resize
from vla_ros.core.resources import resolve_resource
from vla_ros.core.timing import Peak
from vla_ros.nodes.diagnostics import ERROR, OK, WARN, DiagnosticsReporter
from vla_ros.nodes.parameters import ParameterError, ParameterSpec, declare_parameters, non_negative, positive
from vla_ros.nodes.qos import COMMANDS, DEFAULT, LATCHED, LEASED_COMMANDS, SENSOR_LATEST
from vla_ros.nodes.runtime import NodeThreads, run_node
from vla_ros.policy import scheduling

BACKENDS = ("builtin-torch", "builtin-onnx", "replay")
ARM_JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")


def _one_of(choices):
    return lambda value: None if value in choices else f"must be one of {', '.join(choices)}"


PARAMETERS = [
    ParameterSpec("backend", "builtin-torch", "Token generator: builtin-torch, builtin-onnx (onnxruntime, CUDA when "
                  "present) or replay (a recorded episode's actions through the tokenizer).", read_only=True,
                  check=_one_of(BACKENDS)),
    ParameterSpec("model_path", "models/policy/vla", "Policy directory from 'vla-ros train'; relative paths are "
                  "looked up in the package.", read_only=True),
    ParameterSpec("tokenizer_path", "", "Tokenizer directory: required by replay; for the builtin backends, when "
                  "set, it must be the policy's own tokenizer (the policy carries a copy).", read_only=True),
    ParameterSpec("replay_data", "", "Data set directory the replay backend reads.", read_only=True),
    ParameterSpec("replay_episode", 0, "Episode index the replay backend replays.", read_only=True,
                  check=non_negative),
    ParameterSpec("inference_rate", 5.0, "Most chunks per second.", check=positive),
    ParameterSpec("max_image_age", 0.5, "Ignore frames whose stamp is older than this, seconds (0 = no limit).",
                  check=non_negative),
    ParameterSpec("temperature", 0.1, "Sampling temperature of the builtin backends (0 = greedy).",
                  check=non_negative),
    ParameterSpec("plan", False, "Generate the chain-of-thought plan before the actions and publish it on /vla/plan."),
    ParameterSpec("threads", 1, "CPU threads for inference.", read_only=True, check=positive),
]


class VlaPolicy(Node):
    def __init__(self):
        super().__init__("vla_policy")
        self.threads = NodeThreads(self)
        self.lock = threading.Condition()  # before anything that can fail: destroy_node() uses it
        self.params = declare_parameters(self, PARAMETERS)
        self.backend = str(self.params["backend"])
        self.runner, self.replay = self._load_backend()
        self.identity = self.replay.identity if self.replay else self.runner.identity
        self.image_size = None if self.replay else self.runner.config.image_size
        self.image: Image | None = None
        self.image_sequence = 0
        self.used_sequence = 0
        self.task = ""
        self.task_started = self.get_clock().now().nanoseconds * 1e-9
        self.joints: np.ndarray | None = None
        self.counts = {"chunks_published": 0, "skipped_no_task": 0, "skipped_stale": 0, "discarded_task_changed": 0,
                       "rejected_frames": 0, "errors": 0}
        self.last_error = ""
        self.latency = scheduling.LatencyWindow()
        # The slowest inference and the oldest frame inferred on: where a late chunk can lose its time here.
        self.latency_peak, self.frame_age_peak = Peak(), Peak()
        # Leased: the safety monitor holds the arm within ~100 ms when this process dies.
        self.tokens_pub = self.create_publisher(Int32MultiArray, topics.ACTION_TOKENS, LEASED_COMMANDS)
        self.plan_pub = self.create_publisher(String, topics.PLAN, COMMANDS)
        self.create_subscription(Image, topics.MODEL_IMAGE, self.on_image, SENSOR_LATEST)
        self.create_subscription(String, topics.TASK, self.on_task, LATCHED)
        self.create_subscription(JointState, topics.JOINT_STATES, self.on_joint_states, DEFAULT)
        DiagnosticsReporter(self, self.report)
        self.threads.start(self._work, "vla_policy_inference")
        self.get_logger().info(f"backend {self.backend}, tokenizer {self.identity}; {topics.MODEL_IMAGE} + "
                               f"{topics.TASK} → {topics.ACTION_TOKENS} at ≤ {self.params['inference_rate']} Hz")

    def _load_backend(self):
        from vla_ros.policy.modeling_vla import PolicyLoadError

        try:
            if self.backend == "replay":
                from vla_ros.policy.replay import ReplayRunner

                if not self.params["replay_data"] or not self.params["tokenizer_path"]:
                    raise ParameterError("backend 'replay' needs the parameters replay_data and tokenizer_path")
                return None, ReplayRunner(resolve_resource(self.params["replay_data"]),
                                          int(self.params["replay_episode"]),
                                          resolve_resource(self.params["tokenizer_path"]))
            from vla_ros.policy.runners import PolicyRunner

            tokenizer = None
            if self.params["tokenizer_path"]:
                from vla_ros.tokenizers.loading import load_tokenizer

                tokenizer = load_tokenizer(resolve_resource(self.params["tokenizer_path"]))
            model = resolve_resource(self.params["model_path"])
            return PolicyRunner(model, self.backend, threads=int(self.params["threads"]), tokenizer=tokenizer), None
        except PolicyLoadError as exc:
            raise ParameterError(str(exc)) from None
        except (FileNotFoundError, ValueError) as exc:
            raise ParameterError(f"tokenizer_path={self.params['tokenizer_path']!r} is not a usable tokenizer: "
                                 f"{exc}") from None

    # --- inputs: store the newest, wake the worker ---------------------------------------------
    def on_image(self, msg: Image) -> None:
        with self.lock:
            self.image = msg
            self.image_sequence += 1
            if not self.task:
                self.counts["skipped_no_task"] += 1
            self.lock.notify()

    def on_task(self, msg: String) -> None:
        with self.lock:
            if msg.data != self.task:
                self.task = msg.data
                self.task_started = self.get_clock().now().nanoseconds * 1e-9  # the stamps' clock
                self.lock.notify()

    def on_joint_states(self, msg: JointState) -> None:
        index = {name: i for i, name in enumerate(msg.name)}
        if all(name in index for name in ARM_JOINTS) and len(msg.position) == len(msg.name):
            joints = np.array([msg.position[index[name]] for name in ARM_JOINTS], np.float32)
            with self.lock:
                self.joints = joints

    # --- the worker ---------------------------------------------------------------------------
    def _work(self) -> None:
        last_inference = -np.inf
        while not self.threads.stopping.is_set():
            with self.lock:
                image, sequence, task = self.image, self.image_sequence, self.task
                age = self._age(image) if image is not None else 0.0
                decision = scheduling.decide(task, sequence, self.used_sequence, age,
                                             self.get_parameter("max_image_age").value,
                                             time.monotonic() - last_inference,
                                             self.get_parameter("inference_rate").value)
                if decision.action == scheduling.STALE:
                    self.counts["skipped_stale"] += 1
                    self.used_sequence = sequence
                if decision.action == scheduling.NO_TASK:
                    self.used_sequence = sequence  # counted on arrival; a later task needs a newer frame
                if decision.action != scheduling.INFER:
                    self.lock.wait(timeout=decision.wait_s if decision.wait_s > 0 else 0.1)
                    continue
                self.used_sequence = sequence
                joints = self.joints
                started_at = self.task_started
            last_inference = time.monotonic()
            self.frame_age_peak.add(age, self.get_clock().now().nanoseconds * 1e-9)
            self._infer(image, task, joints, started_at)

    def _age(self, image: Image) -> float:
        return (self.get_clock().now() - Time.from_msg(image.header.stamp)).nanoseconds * 1e-9

    def _infer(self, image: Image, task: str, joints: np.ndarray | None, task_started: float) -> None:
        started = time.perf_counter()
        plan_text = ""
        try:
            if self.replay is not None:
                # Index by the frame's stamp, the time the executor aligns the chunk to.
                taken = Time.from_msg(image.header.stamp).nanoseconds * 1e-9
                tokens = self.replay.tokens_at(scheduling.replay_step(taken - task_started))
            else:
                rgb = image_to_rgb8(image)
                if rgb.shape[:2] != (self.image_size, self.image_size):
                    rgb = center_crop_resize(rgb, self.image_size)
                plan = bool(self.get_parameter("plan").value)
                generated = self.runner.infer(rgb[None], [task], None if joints is None else joints[None], plan=plan,
                                              temperature=self.get_parameter("temperature").value)
                tokens = generated.tokens[0]
                plan_text = self.runner.plan_text(generated.plans[0]) if generated.plans else ""
        except ImageRejected as exc:
            self.counts["rejected_frames"] += 1
            self.get_logger().warning(f"dropped frame: {exc}", throttle_duration_sec=2.0)
            return
        except Exception as exc:  # noqa: BLE001 - one bad inference must not stop the node
            self.counts["errors"] += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.get_logger().error(f"inference failed: {self.last_error}", throttle_duration_sec=2.0)
            return
        took = time.perf_counter() - started
        self.latency.add(took)
        self.latency_peak.add(took, self.get_clock().now().nanoseconds * 1e-9)
        with self.lock:
            if self.task != task:  # the task changed while inferring: this chunk belongs to no current task
                self.counts["discarded_task_changed"] += 1
                return
        stamp = Time.from_msg(image.header.stamp).nanoseconds
        fields = pack_action_tokens(np.asarray(tokens, np.int64), stamp, task, self.identity)
        msg = Int32MultiArray()
        msg.layout.dim = [MultiArrayDimension(label=label, size=size, stride=stride)
                          for label, size, stride in fields.dims]
        msg.layout.data_offset = fields.data_offset
        msg.data = fields.data.tolist()
        self.tokens_pub.publish(msg)
        if plan_text:
            self.plan_pub.publish(String(data=plan_text))
        self.counts["chunks_published"] += 1

    # --- health ---------------------------------------------------------------------------------
    def report(self):
        percentiles = self.latency.percentiles_ms()
        values = {**{k: str(v) for k, v in self.counts.items()}, "backend": self.backend,
                  "tokenizer_identity": self.identity, "task": self.task, "last_error": self.last_error}
        if percentiles:
            values["latency_p50_ms"], values["latency_p95_ms"] = f"{percentiles[0]:.1f}", f"{percentiles[1]:.1f}"
        values |= self.latency_peak.summary("latency") | self.frame_age_peak.summary("inferred_frame_age")
        if self.counts["errors"] and self.last_error:
            return ERROR, f"inference failing: {self.last_error}", values
        if not self.task:
            return OK, "idle (no task)", values
        if percentiles is None:
            return WARN, "task set, no chunk yet (waiting for a fresh /vla/image)", values
        return OK, f"{self.counts['chunks_published']} chunks, p50 {percentiles[0]:.1f} ms", values

    def destroy_node(self):
        self.threads.stopping.set()
        with self.lock:
            self.lock.notify_all()  # the worker may be waiting for a frame
        self.threads.stop(timeout_s=5.0)
        return super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node("vla_policy", VlaPolicy, args)


if __name__ == "__main__":
    sys.exit(main())
