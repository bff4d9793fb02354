"""The interface every action tokenizer implements, and its save/load/identity machinery."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from vla_ros.tokenizers.configuration_tokenizers import TokenizerConfig
from vla_ros.tokenizers.normalization import ACTION_DIM, ActionNormalizer

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
IDENTITY_HEX_DIGITS = 16  # 64 bits: what the token message carries (vla_ros.core.action_tokens)


class Unnormalize(torch.nn.Module):
    """Normalized actions (dims 0–5 in [-1, 1], gripper in {0, 1}) → physical units, inside torch/ONNX graphs."""

    def __init__(self, normalizer: ActionNormalizer):
        super().__init__()
        self.register_buffer("centre", torch.from_numpy(normalizer.centre.copy()))
        self.register_buffer("half_range", torch.from_numpy(normalizer.half_range.copy()))

    def forward(self, continuous: torch.Tensor, gripper: torch.Tensor) -> torch.Tensor:
        return torch.cat([continuous * self.half_range + self.centre, gripper.unsqueeze(-1)], dim=-1)


class ActionTokenizer(ABC):
    """Turns chunks of 7-D actions [B, H, 7] into token ids [B, T] (int64) and back.

    The public API takes and returns numpy arrays in physical units (metres, radians, gripper
    in {0, 1}); normalization is part of the tokenizer and its statistics are saved with it.
    """

    config_class: ClassVar[type[TokenizerConfig]]

    def __init__(self, config: TokenizerConfig, normalizer: ActionNormalizer):
        if config.action_dim != ACTION_DIM:
            raise ValueError(f"tokenizers handle {ACTION_DIM}-D actions, config says {config.action_dim}")
        self.config = config
        self.normalizer = normalizer
        self._identity: str | None = None
        # The config exactly as read by `from_pretrained`: the identity hashes what the file says, so
        # a tokenizer saved before a config field was added keeps its identity (policies record it).
        self._loaded_config: dict | None = None

    # -- what each kind provides -------------------------------------------------------------
    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of distinct token ids; every id lies in [0, vocab_size)."""

    @property
    @abstractmethod
    def tokens_per_chunk(self) -> int:
        """T: tokens that encode one chunk of `chunk_size` steps."""

    @abstractmethod
    def encode_normalized(self, normalized: torch.Tensor) -> torch.Tensor:
        """Normalized chunks [B, H, 7] → token ids [B, T] (int64)."""

    @abstractmethod
    def decoder_module(self) -> torch.nn.Module:
        """A module mapping token ids [B, T] (int64) to physical actions [B, H, 7]; what ONNX exports."""

    @abstractmethod
    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every tensor needed to rebuild the tokenizer besides its config."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Inverse of `state_dict`."""

    def token_ranges(self) -> tuple[np.ndarray, np.ndarray]:
        """Valid ids per token position: `low[T]` ≤ token < `high[T]` (narrower than the vocabulary for residual VQ)."""
        return (np.zeros(self.tokens_per_chunk, np.int64), np.full(self.tokens_per_chunk, self.vocab_size, np.int64))

    def check_tokens(self, tokens: np.ndarray) -> np.ndarray:
        """Raise ValueError unless `tokens` is [B, T] with every id valid at its position; returns int64 ids."""
        tokens = np.asarray(tokens)
        if tokens.ndim != 2 or tokens.shape[1] != self.tokens_per_chunk:
            raise ValueError(f"tokens must have shape [B, {self.tokens_per_chunk}], got {list(tokens.shape)}")
        if not np.issubdtype(tokens.dtype, np.integer):
            raise ValueError(f"tokens must be integers, got {tokens.dtype}")
        low, high = self.token_ranges()
        bad = (tokens < low) | (tokens >= high)
        if bad.any():
            batch, position = map(int, np.argwhere(bad)[0])
            raise ValueError(f"token id {int(tokens[batch, position])} at position {position} is outside "
                             f"[{low[position]}, {high[position]}) for this {self.kind} tokenizer")
        return tokens.astype(np.int64)

    # -- shared behaviour ----------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def chunk_size(self) -> int:
        """H: action steps per chunk."""
        return self.config.horizon

    def _check_actions(self, actions: np.ndarray) -> np.ndarray:
        actions = np.asarray(actions, dtype=np.float32)
        if actions.ndim != 3 or actions.shape[1:] != (self.chunk_size, ACTION_DIM):
            raise ValueError(
                f"actions must have shape [B, {self.chunk_size}, {ACTION_DIM}], got {list(actions.shape)}"
            )
        return actions

    def encode(self, actions: np.ndarray) -> np.ndarray:
        """Physical action chunks [B, H, 7] → token ids [B, T] (int64)."""
        normalized = self.normalizer.normalize(self._check_actions(actions))
        with torch.inference_mode():
            tokens = self.encode_normalized(torch.from_numpy(normalized))
        return tokens.cpu().numpy().astype(np.int64)

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """Token ids [B, T] → physical action chunks [B, H, 7] (float32, gripper exactly 0 or 1)."""
        tokens = self.check_tokens(tokens)
        module = self.decoder_module().eval()
        with torch.inference_mode():
            actions = module(torch.from_numpy(tokens))
        return actions.cpu().numpy().astype(np.float32)

    def config_dict(self) -> dict:
        """`config.json` contents: kind, hyper-parameters and the normalization statistics."""
        if self._loaded_config is not None:
            return dict(self._loaded_config)
        return {**self.config.to_dict(), "normalization": self.normalizer.to_dict()}

    @property
    def identity(self) -> str:
        """16 hex digits of SHA-256 over the config JSON and every weight's name, dtype, shape and bytes."""
        if self._identity is None:
            digest = hashlib.sha256(json.dumps(self.config_dict(), sort_keys=True).encode())
            for name, tensor in sorted(self.state_dict().items()):
                tensor = tensor.detach().cpu().contiguous()
                digest.update(f"{name}|{tensor.dtype}|{list(tensor.shape)}".encode())
                digest.update(tensor.numpy().tobytes())
            self._identity = digest.hexdigest()[:IDENTITY_HEX_DIGITS]
        return self._identity

    def invalidate_identity(self) -> None:
        """Forget the cached identity; call after changing weights in place (training does)."""
        self._identity = None

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write `model.safetensors` and `config.json` (which also records the identity) into `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, str(directory / WEIGHTS_FILE), metadata={"kind": self.kind, "identity": self.identity})
        config = {**self.config_dict(), "identity": self.identity}
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "ActionTokenizer":
        """Rebuild a tokenizer written by `save_pretrained`."""
        config_values, state = read_pretrained(directory)
        if config_values.get("kind") != cls.config_class.kind:
            raise ValueError(f"{directory} holds a {config_values.get('kind')!r} tokenizer, not {cls.config_class.kind!r}")
        return cls._build(config_values, state)

    @classmethod
    def _build(cls, config_values: dict, state: dict[str, torch.Tensor]) -> "ActionTokenizer":
        values = dict(config_values)
        values.pop("identity", None)
        loaded = dict(values)
        normalizer = ActionNormalizer.from_dict(values.pop("normalization"))
        tokenizer = cls(cls.config_class.from_dict(values), normalizer)
        tokenizer.load_state_dict(state)
        tokenizer._loaded_config = loaded
        tokenizer.invalidate_identity()
        return tokenizer


def read_pretrained(directory: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """The config dict and tensors of a saved tokenizer directory."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise FileNotFoundError(f"{directory} is not a saved tokenizer (needs {CONFIG_FILE} and {WEIGHTS_FILE})")
    return json.loads(config_path.read_text()), load_file(str(weights_path))
