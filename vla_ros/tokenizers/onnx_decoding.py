"""ONNX export of a tokenizer's decoder and an onnxruntime decoding path that matches torch.

The exported graph maps token ids `tokens` [B, T] (int64) to **un-normalized** (physical)
actions `actions` [B, H, 7] (float32): codebook lookup or bin centres, the decoder network,
clamping, the gripper threshold and the q01/q99 un-normalization are all inside, so the
graph's output is what `ActionTokenizer.decode` returns. The batch axis is dynamic.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
INPUT_NAME = "tokens"
OUTPUT_NAME = "actions"
OPSET = 17


def export_decoder_onnx(tokenizer, path: str | Path) -> Path:
    """Write the decoder of `tokenizer` as an ONNX model whose metadata records kind and identity."""
    import onnx
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = tokenizer.decoder_module().eval()
    # A real encoding as the example input: every level of a residual tokenizer has its own id range.
    example = torch.from_numpy(tokenizer.encode(np.zeros((1, tokenizer.chunk_size, 7), np.float32)))
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of the dynamo one, which needs onnxscript
        # (not a dependency); the graphs here are small and static, which the old exporter handles.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (example,), str(path), dynamo=False, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}, opset_version=OPSET,
        )
    model = onnx.load(str(path))
    for key, value in (("kind", tokenizer.kind), ("identity", tokenizer.identity),
                       ("tokens_per_chunk", str(tokenizer.tokens_per_chunk)), ("vocab_size", str(tokenizer.vocab_size)),
                       ("chunk_size", str(tokenizer.chunk_size)), ("output", "un-normalized actions [B, H, 7]"),
                       ("token_low", json.dumps(tokenizer.token_ranges()[0].tolist())),
                       ("token_high", json.dumps(tokenizer.token_ranges()[1].tolist()))):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def _nvidia_device_present() -> bool:
    return Path("/dev/nvidiactl").exists()


def available_providers(preferred: Sequence[str] = PREFERRED_PROVIDERS) -> list[str]:
    """`preferred` in order, keeping only the providers this onnxruntime build offers (CPU as a last resort).

    onnxruntime-gpu offers CUDA even on hosts without a GPU and then logs an error while falling
    back, so GPU providers are kept only where an NVIDIA device node exists.
    """
    import onnxruntime

    offered = set(onnxruntime.get_available_providers())
    gpu = _nvidia_device_present()
    chosen = [p for p in preferred if p in offered and (gpu or p not in GPU_PROVIDERS)]
    return chosen or ["CPUExecutionProvider"]


class OnnxActionDecoder:
    """Decodes token ids with onnxruntime; the same contract as `ActionTokenizer.decode`."""

    def __init__(self, path: str | Path, providers: Sequence[str] = PREFERRED_PROVIDERS):
        import onnxruntime

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX decoder {path} does not exist")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 3  # a missing CUDA library is expected on CPU hosts; don't warn about it
        chosen = available_providers(providers)
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=chosen)
        except Exception:  # noqa: BLE001 - a GPU provider that fails to initialize must not stop decoding
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        self.identity = meta.get("identity", "")
        self.kind = meta.get("kind", "")
        self.tokens_per_chunk = int(meta.get("tokens_per_chunk", 0))
        self.vocab_size = int(meta.get("vocab_size", 0))
        self.chunk_size = int(meta.get("chunk_size", 0))
        self.token_low = np.asarray(json.loads(meta.get("token_low", "[]")), np.int64)
        self.token_high = np.asarray(json.loads(meta.get("token_high", "[]")), np.int64)
        if self.token_low.shape != (self.tokens_per_chunk,):
            raise ValueError(f"{path} lacks the vla_ros decoder metadata; export it with `vla-ros tokenizer export-onnx`")

    @classmethod
    def from_tokenizer(cls, tokenizer, path: str | Path | None = None,
                       providers: Sequence[str] = PREFERRED_PROVIDERS) -> "OnnxActionDecoder":
        """Export `tokenizer`'s decoder (to `path`, or a temporary file) and open it: what a node does at start-up."""
        import tempfile

        if path is None:
            path = Path(tempfile.mkdtemp(prefix="vla_ros_decoder_")) / f"{tokenizer.kind}_{tokenizer.identity}.onnx"
        return cls(export_decoder_onnx(tokenizer, path), providers)

    @property
    def providers(self) -> list[str]:
        """Providers the session actually uses, in priority order."""
        return self.session.get_providers()

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """Token ids [B, T] → physical actions [B, H, 7] (float32)."""
        tokens = np.asarray(tokens)
        if tokens.ndim != 2 or tokens.shape[1] != self.tokens_per_chunk:
            raise ValueError(f"tokens must have shape [B, {self.tokens_per_chunk}], got {list(tokens.shape)}")
        bad = (tokens < self.token_low) | (tokens >= self.token_high)
        if bad.any():
            batch, position = map(int, np.argwhere(bad)[0])
            raise ValueError(f"token id {int(tokens[batch, position])} at position {position} is outside "
                             f"[{self.token_low[position]}, {self.token_high[position]}) for this {self.kind} decoder")
        (actions,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: tokens.astype(np.int64)})
        return actions
