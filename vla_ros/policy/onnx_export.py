"""ONNX export of the policy as two graphs (observation → first logits + cache; one token step) and their runtime.

`prefix.onnx`: images uint8 [B, H, W, 3], text_states [B, N, 384], text_mask [B, N] (0/1 float),
proprio [B, 6], proprio_present [B], start_ids [B, 1] → logits [B, V], key_0, value_0, key_1, …
(one [B, heads, P + 1, head_dim] tensor per layer and kind).
`step.onnx`: ids [B, 1], position [1], past_key_0, past_value_0, … → logits, key_0, value_0, …
(one position longer).

The `builtin-onnx-int8` backend runs the same two graphs with their MatMul weights quantized to int8 per output
channel at load (onnxruntime's dynamic quantization: activations are quantized per call, so no calibration
data is needed); the convolutions and everything else stay float32 (`quantized_graph`).

Both are traced from `KVCachedDecoder`, so ONNX and torch run the same arithmetic; the loop
around them (`generation.decode`) is shared too.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vla_ros.policy.generation import KVCachedDecoder
from vla_ros.policy.modeling_vla import WEIGHTS_FILE, PolicyLoadError, VLAPolicy

ONNX_DIR = "onnx"
PREFIX_FILE = "prefix.onnx"
STEP_FILE = "step.onnx"
OPSET = 17
PREFIX_INPUTS = ("images", "text_states", "text_mask", "proprio", "proprio_present", "start_ids")
STEP_INPUTS = ("ids", "position")
# The graphs' interface, stamped into their metadata: bumped whenever inputs or outputs change, so that an
# export of the same weights by an older version (before 2026-11-25: the cache stacked in one tensor)
# is refused at start-up instead of failing at its first step.
EXPORT_FORMAT = "cache-per-layer-1"


def cache_names(layers: int) -> list[str]:
    """key_0, value_0, key_1, value_1, …: the cache tensors in the order `KVCachedDecoder` keeps them."""
    return [f"{kind}_{layer}" for layer in range(layers) for kind in ("key", "value")]


class _PrefixGraph(nn.Module):
    def __init__(self, policy: VLAPolicy, decoder: KVCachedDecoder):
        super().__init__()
        self.policy, self.decoder = policy, decoder

    def forward(self, images, text_states, text_mask, proprio, proprio_present, start_ids):
        prefix = self.policy.prefix_embeddings(images, text_states, text_mask, proprio, proprio_present)
        logits, cache = self.decoder.prefill(torch.cat([prefix, self.decoder.embed(start_ids)], 1))
        return (logits, *cache)


class _StepGraph(nn.Module):
    def __init__(self, decoder: KVCachedDecoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, ids, position, *past):
        logits, cache = self.decoder.step(ids, position, list(past))
        return (logits, *cache)


def weights_digest(directory: str | Path) -> str:
    """SHA-256 (16 hex digits) of a saved policy's weights file: ties exported graphs to their weights."""
    return hashlib.sha256((Path(directory) / WEIGHTS_FILE).read_bytes()).hexdigest()[:16]


def export_digest(policy_dir: str | Path, adapter_dir: str | Path | None = None) -> str:
    """What the graphs are stamped with: the policy's weights digest, plus the adapter's when one is merged."""
    if adapter_dir is None:
        return weights_digest(policy_dir)
    from vla_ros.policy.adapters import adapter_digest

    return f"{weights_digest(policy_dir)}+{adapter_digest(adapter_dir)}"


def export_adapter_onnx(policy_dir: str | Path, adapter_dir: str | Path) -> Path:
    """The base in `policy_dir` with the adapter in `adapter_dir` merged, exported to ADAPTER_DIR/onnx."""
    from vla_ros.policy.adapters import load_policy

    policy = load_policy(policy_dir, adapter_dir)
    return export_policy_onnx(policy, policy_dir, adapter_dir=adapter_dir)


def export_policy_onnx(policy: VLAPolicy, policy_dir: str | Path, adapter_dir: str | Path | None = None) -> Path:
    """Write POLICY_DIR/onnx/{prefix,step}.onnx for a policy saved in `policy_dir` (ADAPTER_DIR/onnx when
    `policy` has the adapter in `adapter_dir` merged); returns the onnx folder."""
    import onnx

    out = Path(adapter_dir if adapter_dir is not None else policy_dir) / ONNX_DIR
    out.mkdir(parents=True, exist_ok=True)
    policy = policy.cpu().eval()
    decoder = KVCachedDecoder(policy).eval()
    config = policy.config
    batch = 1
    example_prefix = (
        torch.zeros(batch, config.image_size, config.image_width, 3, dtype=torch.uint8),
        torch.zeros(batch, config.text_tokens, config.text_dim),
        torch.ones(batch, config.text_tokens),
        torch.zeros(batch, 6),
        torch.ones(batch),
        torch.full((batch, 1), policy.vocab.start_actions, dtype=torch.long),
    )
    with torch.no_grad():
        _, cache = decoder.prefill(torch.zeros(batch, config.prefix_length + 1, config.hidden_size))
    example_step = (torch.zeros(batch, 1, dtype=torch.long), torch.tensor([config.prefix_length + 1]), *cache)
    outputs = ["logits", *cache_names(config.num_layers)]
    past = [f"past_{name}" for name in outputs[1:]]
    cache_axes = {0: "batch", 2: "length"}
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of the dynamo one, which needs onnxscript
        # (not a dependency); these graphs are plain tensor code, which the old exporter handles.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _PrefixGraph(policy, decoder), example_prefix, str(out / PREFIX_FILE), dynamo=False,
            input_names=list(PREFIX_INPUTS), output_names=outputs, opset_version=OPSET,
            dynamic_axes={**{name: {0: "batch"} for name in PREFIX_INPUTS}, "logits": {0: "batch"},
                          **{name: cache_axes for name in outputs[1:]}})
        torch.onnx.export(
            _StepGraph(decoder), example_step, str(out / STEP_FILE), dynamo=False,
            input_names=[*STEP_INPUTS, *past], output_names=outputs, opset_version=OPSET,
            dynamic_axes={"ids": {0: "batch"}, "logits": {0: "batch"},
                          **{name: cache_axes for name in past + outputs[1:]}})
    digest = export_digest(policy_dir, adapter_dir)
    for name in (PREFIX_FILE, STEP_FILE):
        model = onnx.load(str(out / name))
        for key, value in (("tokenizer_identity", config.tokenizer_identity), ("policy_weights", digest),
                           ("export_format", EXPORT_FORMAT)):
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(model, str(out / name))
    return out


def quantized_graph(path: str | Path) -> bytes:
    """The graph at `path` with its MatMul weights quantized to int8 per output channel (dynamic quantization:
    the activations are quantized at run time), as a serialized model; its metadata is kept. Deterministic, and
    fast enough to run at start-up (about 0.1 s for the shipped policy's two graphs)."""
    import logging
    import shutil
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs a pre-processing hint as a warning on every call
    try:
        # the quantizer writes a shape-inferred copy beside its input: work on a private copy, so that nothing is
        # written into the policy's folder (read-only when installed, shared by processes starting together)
        with tempfile.TemporaryDirectory(prefix="vla_int8_") as folder:
            source, out = Path(folder) / "float.onnx", Path(folder) / "int8.onnx"
            shutil.copyfile(path, source)
            quantize_dynamic(str(source), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                             per_channel=True)
            return out.read_bytes()
    finally:
        root.setLevel(level)


class OnnxPolicySession:
    """onnxruntime sessions of the two graphs (CUDA when present, else CPU), checked against the policy's weights;
    with `int8`, the graphs' MatMul weights are quantized at load (`quantized_graph`)."""

    def __init__(self, policy_dir: str | Path, tokenizer_identity: str, threads: int = 1,
                 adapter_dir: str | Path | None = None, int8: bool = False):
        import onnxruntime

        from vla_ros.tokenizers.onnx_decoding import available_providers

        folder = Path(adapter_dir if adapter_dir is not None else policy_dir) / ONNX_DIR
        paths = [folder / PREFIX_FILE, folder / STEP_FILE]
        missing = [str(p) for p in paths if not p.is_file()]
        export = f"vla-ros export-policy --policy {policy_dir}" + (f" --adapter {adapter_dir}" if adapter_dir else "")
        if missing:
            raise PolicyLoadError(f"{folder.parent} has no ONNX export ({missing[0]} is missing); run '{export}'")
        onnxruntime.set_default_logger_severity(3)  # CUDA libraries missing on a CPU host is expected, not an error
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3  # a missing CUDA library is expected on CPU hosts
        self.sessions = []
        digest = export_digest(policy_dir, adapter_dir)
        self.int8 = int8
        for path in paths:
            graph = quantized_graph(path) if int8 else str(path)
            try:
                session = onnxruntime.InferenceSession(graph, options, providers=available_providers())
            except Exception:  # noqa: BLE001 - a GPU provider that fails to start must not stop the policy
                session = onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
            meta = session.get_modelmeta().custom_metadata_map
            if meta.get("tokenizer_identity") != tokenizer_identity:
                raise PolicyLoadError(f"{path} was exported for tokenizer {meta.get('tokenizer_identity')}, the "
                                      f"policy uses {tokenizer_identity}; re-run '{export}'")
            if meta.get("export_format") != EXPORT_FORMAT:
                raise PolicyLoadError(f"{path} is an export of format {meta.get('export_format', 'unnamed (older)')}, "
                                      f"this version reads {EXPORT_FORMAT}; re-run '{export}'")
            if meta.get("policy_weights") != digest:
                what = f"{policy_dir}/{WEIGHTS_FILE}" + (f" with adapter {adapter_dir}" if adapter_dir else "")
                raise PolicyLoadError(f"{path} was exported from other weights than {what}; re-run '{export}'")
            self.sessions.append(session)
        self.prefix_session, self.step_session = self.sessions
        self.outputs = [node.name for node in self.step_session.get_outputs()]  # logits, key_0, value_0, …
        self.past = [node.name for node in self.step_session.get_inputs()][len(STEP_INPUTS):]

    @property
    def providers(self) -> list[str]:
        return self.prefix_session.get_providers()

    def prefill(self, images: np.ndarray, text_states: np.ndarray, text_mask: np.ndarray, proprio: np.ndarray,
                proprio_present: np.ndarray, start_ids: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """→ (logits [B, V], the cache: key_0, value_0, … each [B, heads, P + 1, head_dim])."""
        feeds = dict(zip(PREFIX_INPUTS, (
            np.ascontiguousarray(images, np.uint8), text_states.astype(np.float32), text_mask.astype(np.float32),
            proprio.astype(np.float32), proprio_present.astype(np.float32), start_ids.astype(np.int64))))
        logits, *cache = self.prefix_session.run(self.outputs, feeds)
        return logits, cache

    def step(self, ids: np.ndarray, position: int, cache: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        """One token per row at `position` → (logits [B, V], the cache one position longer)."""
        feeds = {"ids": ids.astype(np.int64), "position": np.array([position], np.int64), **dict(zip(self.past, cache))}
        logits, *cache = self.step_session.run(self.outputs, feeds)
        return logits, cache
