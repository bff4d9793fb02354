"""action_decoder: /vla/action_tokens → VQ-VAE (or RVQ, bins) decode → /vla/action_chunk (JointTrajectory)."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from rclpy.node import Node
from std_msgs.msg import Int32MultiArray, String
from trajectory_msgs.msg import JointTrajectory

from vla_ros.core import topics
from vla_ros.core.resources import resolve_resource
from vla_ros.core.stages.decoder import DecoderSettings, DecoderStage
from vla_ros.core.stream_stats import StreamStats
from vla_ros.core.token_checks import REASON_KEYS
from vla_ros.nodes.diagnostics import OK, WARN, DiagnosticsReporter
from vla_ros.nodes.messages import RCLPY
from vla_ros.nodes.parameters import ParameterError, SettingsParameters
from vla_ros.nodes.qos import COMMANDS, LATCHED
from vla_ros.nodes.runtime import run_node


class ActionDecoder(Node):
    def __init__(self):
        super().__init__("action_decoder")
        self.settings = SettingsParameters(self, DecoderSettings).value
        self.tokenizer, decode, self.backend_label = self._load_decoder()
        self.stage = DecoderStage(self.settings, self.tokenizer, decode, RCLPY)
        self.stats = StreamStats()
        self.last_rejection = ""
        self.chunk_pub = self.create_publisher(JointTrajectory, topics.ACTION_CHUNK, COMMANDS)
        self.create_subscription(String, topics.TASK, self.on_task, LATCHED)
        self.create_subscription(Int32MultiArray, topics.ACTION_TOKENS, self.on_tokens, COMMANDS)
        DiagnosticsReporter(self, self.report)
        self.get_logger().info(
            f"decoding {self.tokenizer.kind} tokens ({self.tokenizer.tokens_per_chunk} per chunk, vocab "
            f"{self.tokenizer.vocab_size}, identity {self.tokenizer.identity}) with {self.backend_label}"
        )

    def _load_decoder(self):
        from vla_ros.tokenizers import load_tokenizer  # noqa: PLC0415 - torch import after parameters

        path = resolve_resource(self.settings.tokenizer_path)
        try:
            tokenizer = load_tokenizer(path)
        except (FileNotFoundError, ValueError, KeyError, OSError) as exc:
            raise ParameterError(f"tokenizer_path={self.settings.tokenizer_path!r} is not a usable tokenizer "
                                 f"directory ({exc})") from None
        if self.settings.backend == "torch":
            return tokenizer, tokenizer.decode, "torch"
        from vla_ros.tokenizers.onnx_decoding import OnnxActionDecoder, export_decoder_onnx  # noqa: PLC0415

        onnx_path = Path(self.settings.onnx_path) if self.settings.onnx_path else path / "decoder.onnx"
        if not onnx_path.is_file():
            onnx_path = export_decoder_onnx(tokenizer, Path(tempfile.mkdtemp(prefix="vla_ros_decoder_")) / "decoder.onnx")
        decoder = OnnxActionDecoder(onnx_path)
        if decoder.identity != tokenizer.identity:
            raise ParameterError(f"onnx_path={str(onnx_path)!r} was exported from tokenizer {decoder.identity}, "
                                 f"not {tokenizer.identity} at tokenizer_path")
        return tokenizer, decoder.decode, f"onnxruntime ({', '.join(decoder.providers)})"

    def on_task(self, msg: String) -> None:
        self.stage.on_task(msg.data)

    def on_tokens(self, msg: Int32MultiArray) -> None:
        started = time.perf_counter()
        decoded = self.stage.on_tokens(msg)
        if decoded.chunk is None:
            self.stats.drop(decoded.verdict.reason_key, decoded.verdict.reason)
            self.get_logger().warning(f"rejected action tokens: {decoded.verdict.reason}", throttle_duration_sec=2.0)
            return
        self.chunk_pub.publish(decoded.chunk)
        self.stats.accept(time.monotonic(), time.perf_counter() - started)

    def report(self):
        summary = self.stats.summary(time.monotonic())
        summary.update({f"rejected_{key}": str(self.stage.rejected[key]) for key in REASON_KEYS})
        summary.update(backend=self.backend_label, tokenizer=self.tokenizer.identity, task=self.stage.task)
        level = WARN if self.stats.last_error and self.stats.rate_hz(time.monotonic()) == 0 and self.stage.task else OK
        return level, f"{summary['rate_hz']} chunks/s", summary


def main(args: list[str] | None = None) -> int:
    return run_node("action_decoder", ActionDecoder, args)


if __name__ == "__main__":
    sys.exit(main())
