"""Hyper-parameters of each tokenizer kind, kept apart from the models (LeRobot style).

A config plus the normalization statistics is everything `from_pretrained` needs to rebuild a
tokenizer; both go into `config.json`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from vla_ros.core.executor import ExecutorSettings


@dataclass
class TokenizerConfig:
    """Fields every tokenizer has."""

    kind: ClassVar[str] = ""
    horizon: int = 8
    action_dim: int = 7

    def to_dict(self) -> dict:
        return {"kind": self.kind, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, values: dict) -> "TokenizerConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names - {"kind"}
        if unknown:
            raise ValueError(f"unknown {cls.kind} config fields: {sorted(unknown)}")
        return cls(**{k: v for k, v in values.items() if k in names})


@dataclass
class VQVAEConfig(TokenizerConfig):
    """Encoder → `num_latents` vectors of size `latent_dim` → shared codebook → decoder."""

    kind: ClassVar[str] = "vqvae"
    num_latents: int = 8
    codebook_size: int = 1024
    latent_dim: int = 4
    hidden_dim: int = 256
    commitment_weight: float = 0.25
    gripper_loss_weight: float = 1.0
    ema_decay: float = 0.99
    # A code whose EMA usage falls below this many assignments per batch is restarted on an encoder output.
    dead_code_threshold: float = 0.03
    restart_every: int = 50
    # Training only. The first `warmup_fraction` of the steps trains a plain autoencoder (no
    # quantization); the codebook then starts from its latents, which avoids early collapse.
    warmup_fraction: float = 0.2
    # Reconstruction weight of steps ≥ `executed_steps` relative to the first ones: the executor runs
    # the first 3 steps of a chunk and replans, so those are the ones whose precision matters.
    executed_steps: int = ExecutorSettings.execute_steps
    later_steps_weight: float = 0.1
    # Training-time augmentation, as the fraction of each batch it applies to. Closed-loop execution
    # meets chunks a successful demonstration never contains (a correction, then a retreat, then a
    # descent), so chunks are spliced from two demonstrations at a random step; and motions are
    # rotated about the vertical, since the arm's xy directions are not special.
    splice_fraction: float = 0.5
    rotate_fraction: float = 0.5


@dataclass
class ResidualVQConfig(VQVAEConfig):
    """VQ-VAE whose latents are quantized by `levels` codebooks in turn, each coding the previous residual."""

    kind: ClassVar[str] = "rvq"
    levels: int = 2


@dataclass
class BinConfig(TokenizerConfig):
    """`num_bins` uniform bins per dimension over the normalized range [-1, 1]."""

    kind: ClassVar[str] = "bins"
    num_bins: int = 256


CONFIG_CLASSES: dict[str, type[TokenizerConfig]] = {
    c.kind: c for c in (VQVAEConfig, ResidualVQConfig, BinConfig)
}
