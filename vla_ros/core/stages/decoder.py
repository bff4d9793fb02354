"""The decoder stage: /vla/action_tokens → checks → tokenizer decode → /vla/action_chunk (action_decoder)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable

import numpy as np

from vla_ros.core.messages import MessageKit, read_token_layout
from vla_ros.core.settings import CONTROL_PERIOD_S, Settings, one_of, positive, setting
from vla_ros.core.token_checks import TokenVerdict, check_token_message

DECODER_BACKENDS = ("torch", "onnx")


@dataclass(frozen=True)
class DecoderSettings(Settings):
    """action_decoder's settings."""

    tokenizer_path: str = setting("models/tokenizers/vqvae", "Tokenizer directory (config.json + model.safetensors); "
                                  "relative paths are looked up in the package.")
    backend: str = setting("torch", "Decoder backend: 'torch' or 'onnx' (onnxruntime, CUDA provider when present, "
                           "else CPU).", check=one_of(*DECODER_BACKENDS))
    onnx_path: str = setting("", "ONNX decoder for backend 'onnx'; empty = <tokenizer_path>/decoder.onnx, exported "
                             "at start-up when absent.")
    step_dt: float = setting(CONTROL_PERIOD_S, "Seconds between the steps of a chunk (the data's control period).",
                             check=positive)


@dataclass(frozen=True)
class Decoded:
    chunk: object | None  # the /vla/action_chunk message, or None when the tokens were rejected
    verdict: TokenVerdict


class DecoderStage:
    """Checks token messages against the tokenizer and the current task, decodes the accepted ones."""

    def __init__(self, settings: DecoderSettings, tokenizer, decode: Callable[[np.ndarray], np.ndarray],
                 messages: MessageKit):
        self.settings, self.tokenizer, self.decode, self.m = settings, tokenizer, decode, messages
        self.task = ""
        self.rejected: Counter = Counter()  # by reason key

    def on_task(self, task: str) -> None:
        self.task = task

    def on_tokens(self, msg) -> Decoded:
        dims, offset, data = read_token_layout(msg)
        t = self.tokenizer
        verdict = check_token_message(dims, offset, data, vocab_size=t.vocab_size, tokens_per_chunk=t.tokens_per_chunk,
                                      identity=t.identity, task=self.task, token_ranges=t.token_ranges())
        if verdict.tokens is None:
            self.rejected[verdict.reason_key] += 1
            return Decoded(None, verdict)
        actions = self.decode(verdict.tokens.tokens[None, :])[0]
        chunk = self.m.action_chunk(actions, verdict.tokens.stamp_ns, self.settings.step_dt, verdict.tokens.task_hash,
                                    verdict.tokens.identity)
        return Decoded(chunk, verdict)
