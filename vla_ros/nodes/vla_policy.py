"""vla_policy: latest /vla/image + current /vla/task (+ /joint_states) → /vla/action_tokens (and /vla/plan).

Callbacks only store the newest inputs; one worker thread infers, so nothing in the executor
waits for the model. The worker infers whenever it has a task and a frame it has not used that
is younger than `max_image_age`, at most `inference_rate` Hz (vla_ros.core.scheduling).

With `backend:=remote` the model runs on a policy server (docs/remote.md): no model is loaded here, and a
continuous reply goes straight to /vla/action_chunk with the observation's stamp (no decoder in the path).
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Int32MultiArray, String
from trajectory_msgs.msg import JointTrajectory

from vla_ros.core import topics
from vla_ros.core.image_msgs import ImageRejected
from vla_ros.core.scheduling import LatencyWindow
from vla_ros.core.stages.policy import Job, PolicySettings, PolicyStage
from vla_ros.core.timing import Peak
from vla_ros.nodes.diagnostics import ERROR, OK, WARN, DiagnosticsReporter
from vla_ros.nodes.messages import RCLPY
from vla_ros.nodes.parameters import ParameterError, SettingsParameters
from vla_ros.nodes.qos import COMMANDS, DEFAULT, LATCHED, LEASED_COMMANDS, SENSOR_LATEST
from vla_ros.nodes.runtime import NodeThreads, run_node


class VlaPolicy(Node):
    def __init__(self):
        super().__init__("vla_policy")
        self.threads = NodeThreads(self)
        self.lock = threading.Condition()  # before anything that can fail: destroy_node() uses it
        self.settings = SettingsParameters(self, PolicySettings, on_change=self._settings_changed).value
        self.stage = PolicyStage(self.settings, self._load_source(), RCLPY)
        self.identity = self.stage.source.identity
        self.last_error = ""
        self.errors = self.rejected_frames = 0
        self.failing = False  # the latest inference failed (a remote server's refusal, a timeout, …)
        self.latency = LatencyWindow()
        # The slowest inference and the oldest frame inferred on: where a late chunk can lose its time here.
        self.latency_peak, self.frame_age_peak = Peak(), Peak()
        # Leased: the safety monitor holds the arm within ~100 ms when this process dies.
        self.tokens_pub = self.create_publisher(Int32MultiArray, topics.ACTION_TOKENS, LEASED_COMMANDS)
        # A remote policy's continuous chunks (the safety monitor renews the policy's lease on them too; the token
        # writer above exists in every backend, so its liveliness tells the monitor when this process is gone).
        self.chunk_pub = self.create_publisher(JointTrajectory, topics.ACTION_CHUNK, COMMANDS)
        self.plan_pub = self.create_publisher(String, topics.PLAN, COMMANDS)
        self.create_subscription(Image, topics.MODEL_IMAGE, self.on_image, SENSOR_LATEST)
        self.create_subscription(String, topics.TASK, self.on_task, LATCHED)
        self.create_subscription(JointState, topics.JOINT_STATES, self.on_joint_states, DEFAULT)
        DiagnosticsReporter(self, self.report)
        self.threads.start(self._work, "vla_policy_inference")
        output = (f"{topics.ACTION_CHUNK} (or {topics.ACTION_TOKENS})" if self.settings.backend == "remote"
                  else topics.ACTION_TOKENS)
        where = f" at {self.settings.policy_url}" if self.settings.backend == "remote" else f", tokenizer {self.identity}"
        self.get_logger().info(f"backend {self.settings.backend}{where}; {topics.MODEL_IMAGE} + {topics.TASK} → "
                               f"{output} at ≤ {self.settings.inference_rate} Hz")

    def _load_source(self):
        from vla_ros.policy.errors import PolicyLoadError
        from vla_ros.policy.sources import load_token_source

        try:
            return load_token_source(self.settings, threads=self.settings.threads)
        except PolicyLoadError as exc:
            raise ParameterError(str(exc)) from None

    def _settings_changed(self, settings: PolicySettings) -> None:
        with self.lock:
            self.stage.settings = settings
            self.lock.notify()

    def now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9  # the stamps' clock

    # --- inputs: store the newest, wake the worker ---------------------------------------------
    def on_image(self, msg: Image) -> None:
        with self.lock:
            self.stage.on_image(msg)
            self.lock.notify()

    def on_task(self, msg: String) -> None:
        with self.lock:
            if self.stage.on_task(msg.data, self.now_s()):
                self.lock.notify()

    def on_joint_states(self, msg: JointState) -> None:
        with self.lock:
            self.stage.on_joint_state(msg)

    # --- the worker ---------------------------------------------------------------------------
    def _work(self) -> None:
        last_inference = -np.inf
        while not self.threads.stopping.is_set():
            with self.lock:
                job = self.stage.next_job(self.now_s(), time.monotonic() - last_inference)
                if not isinstance(job, Job):  # a scheduling decision: nothing to infer now
                    self.lock.wait(timeout=job.wait_s if job.wait_s > 0 else 0.1)
                    continue
            last_inference = time.monotonic()
            self.frame_age_peak.add(job.age_s, self.now_s())
            self._infer(job)

    def _infer(self, job) -> None:
        started = time.perf_counter()
        try:
            generated = self.stage.run(job)
        except ImageRejected as exc:
            self.rejected_frames += 1
            self.get_logger().warning(f"dropped frame: {exc}", throttle_duration_sec=2.0)
            return
        except Exception as exc:  # noqa: BLE001 - one bad inference must not stop the node
            self.errors += 1
            self.failing = True
            reason = getattr(exc, "reason", "")  # a remote refusal names its reason
            self.last_error = f"{reason or type(exc).__name__}: {exc}"
            self.get_logger().error(f"inference failed: {self.last_error}", throttle_duration_sec=2.0)
            return
        self.failing = False
        took = time.perf_counter() - started
        self.latency.add(took)
        self.latency_peak.add(took, self.now_s())
        with self.lock:
            if not self.stage.publishable(job):
                return
        if generated.chunk is not None:
            self.chunk_pub.publish(generated.chunk)
        else:
            self.tokens_pub.publish(generated.tokens)
        if generated.plan:
            self.plan_pub.publish(String(data=generated.plan))

    # --- health ---------------------------------------------------------------------------------
    def report(self):
        percentiles = self.latency.percentiles_ms()
        counts = {key: self.stage.counts[key] for key in ("chunks_published", "skipped_no_task", "skipped_stale",
                                                          "discarded_task_changed")}
        counts.update(rejected_frames=self.rejected_frames, errors=self.errors)
        values = {**{k: str(v) for k, v in counts.items()}, "backend": self.settings.backend,
                  "tokenizer_identity": self.identity, "task": self.stage.task, "last_error": self.last_error}
        if percentiles:
            values["latency_p50_ms"], values["latency_p95_ms"] = f"{percentiles[0]:.1f}", f"{percentiles[1]:.1f}"
        values |= self.latency_peak.summary("latency") | self.frame_age_peak.summary("inferred_frame_age")
        if hasattr(self.stage.source, "diagnostics"):  # the remote source: round trips, reconnects, refusals
            values |= self.stage.source.diagnostics()
        if self.failing:
            return ERROR, f"inference failing: {self.last_error}", values
        if not self.stage.task:
            return OK, "idle (no task)", values
        if percentiles is None:
            return WARN, "task set, no chunk yet (waiting for a fresh /vla/image)", values
        return OK, f"{counts['chunks_published']} chunks, p50 {percentiles[0]:.1f} ms", values

    def destroy_node(self):
        self.threads.stopping.set()
        with self.lock:
            self.lock.notify_all()  # the worker may be waiting for a frame
        self.threads.stop(timeout_s=3.0)  # inside the launchers' 5 s grace, with time left to tear down the node
        source = getattr(getattr(self, "stage", None), "source", None)
        if hasattr(source, "close"):
            source.close()
        return super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node("vla_policy", VlaPolicy, args)


if __name__ == "__main__":
    sys.exit(main())
