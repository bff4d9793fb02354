"""Action tokenizers: continuous 7-D action chunks ⇄ discrete token ids (VQ-VAE, residual VQ, uniform bins).

Names are imported lazily so that importing the package (or one light module of it) does not load torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ActionTokenizer": "vla_ros.tokenizers.base",
    "ActionNormalizer": "vla_ros.tokenizers.normalization",
    "VQVAETokenizer": "vla_ros.tokenizers.modeling_vqvae",
    "ResidualVQTokenizer": "vla_ros.tokenizers.modeling_vqvae",
    "BinTokenizer": "vla_ros.tokenizers.modeling_bins",
    "VQVAEConfig": "vla_ros.tokenizers.configuration_tokenizers",
    "ResidualVQConfig": "vla_ros.tokenizers.configuration_tokenizers",
    "BinConfig": "vla_ros.tokenizers.configuration_tokenizers",
    "load_tokenizer": "vla_ros.tokenizers.loading",
    "new_tokenizer": "vla_ros.tokenizers.loading",
    "chunks_from_episode": "vla_ros.tokenizers.chunking",
    "chunks_from_episodes": "vla_ros.tokenizers.chunking",
    "OnnxActionDecoder": "vla_ros.tokenizers.onnx_decoding",
    "export_decoder_onnx": "vla_ros.tokenizers.onnx_decoding",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vla_ros.tokenizers' has no attribute {name!r}")
