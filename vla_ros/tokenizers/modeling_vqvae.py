"""VQ-VAE action tokenizer: an MLP encoder → `num_latents` quantized vectors → an MLP decoder.

How 8 tokens carry an 8×7 chunk: the encoder reads the whole flattened chunk and writes
`num_latents` (default 8) latent vectors; each is replaced by its nearest codebook entry, and
the token is that entry's index. Because the encoder sees the whole chunk, the 8 codes are
free to share the work (a slow drift needs fewer bits than a gripper switch), rather than
being tied one-to-one to time steps. The decoder predicts dims 0–5 in normalized units
(clamped to [-1, 1]) and one gripper logit per step; the gripper is thresholded at logit 0, so
it always decodes to exactly 0 or 1.

With `levels` > 1 (`ResidualVQTokenizer`) every latent is quantized by several codebooks in
turn; tokens are ordered level-major (all coarse codes, then all fine codes) and level l's ids
are offset by l × codebook_size, so one id names one code of one level.
"""

from __future__ import annotations

import numpy as np
import torch

from vla_ros.tokenizers.base import ActionTokenizer, Unnormalize
from vla_ros.tokenizers.configuration_tokenizers import ResidualVQConfig, VQVAEConfig
from vla_ros.tokenizers.normalization import ACTION_DIM, ActionNormalizer
from vla_ros.tokenizers.quantization import QuantizerOutput, ResidualQuantizer

CONTINUOUS_DIMS = ACTION_DIM - 1


def _mlp(inputs: int, hidden: int, outputs: int) -> torch.nn.Sequential:
    return torch.nn.Sequential(
        torch.nn.Linear(inputs, hidden),
        torch.nn.GELU(),
        torch.nn.Linear(hidden, hidden),
        torch.nn.GELU(),
        torch.nn.Linear(hidden, hidden),
        torch.nn.GELU(),
        torch.nn.Linear(hidden, outputs),
    )


class ChunkAutoencoder(torch.nn.Module):
    """Encoder, (residual) quantizer and decoder of one chunk; normalized units throughout."""

    def __init__(self, config: VQVAEConfig, levels: int):
        super().__init__()
        self.horizon = config.horizon
        self.num_latents = config.num_latents
        self.latent_dim = config.latent_dim
        self.encoder = _mlp(config.horizon * ACTION_DIM, config.hidden_dim, config.num_latents * config.latent_dim)
        self.quantizer = ResidualQuantizer(
            levels, config.codebook_size, config.latent_dim, config.ema_decay,
            config.dead_code_threshold, config.restart_every,
        )
        self.decoder = _mlp(config.num_latents * config.latent_dim, config.hidden_dim, config.horizon * ACTION_DIM)

    def encode(self, normalized: torch.Tensor) -> torch.Tensor:
        """Normalized chunks [B, H, 7] → latents [B, L, d]."""
        # The gripper enters as ±1 so that all inputs share one scale.
        inputs = torch.cat([normalized[..., :CONTINUOUS_DIMS], normalized[..., CONTINUOUS_DIMS:] * 2 - 1], dim=-1)
        return self.encoder(inputs.flatten(1)).reshape(-1, self.num_latents, self.latent_dim)

    def decode_latents(self, quantized: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantized latents [B, L, d] → (continuous dims [B, H, 6] normalized, gripper logits [B, H])."""
        out = self.decoder(quantized.flatten(1)).reshape(-1, self.horizon, ACTION_DIM)
        return out[..., :CONTINUOUS_DIMS], out[..., CONTINUOUS_DIMS]

    def forward(self, normalized: torch.Tensor, quantize: bool = True
                ) -> tuple[torch.Tensor, torch.Tensor, QuantizerOutput | None]:
        """Reconstruct; with `quantize=False` the latents bypass the codebook (autoencoder warm-up)."""
        latents = self.encode(normalized)
        if not quantize:
            return *self.decode_latents(latents), None
        quantized = self.quantizer(latents)
        continuous, gripper_logits = self.decode_latents(quantized.quantized)
        return continuous, gripper_logits, quantized


class TokenDecoder(torch.nn.Module):
    """Token ids [B, T] → physical actions [B, H, 7]: lookup, decoder, clamp, gripper threshold, un-normalize."""

    def __init__(self, autoencoder: ChunkAutoencoder, codebook_size: int, levels: int, unnormalize: Unnormalize):
        super().__init__()
        self.autoencoder = autoencoder
        self.levels = levels
        self.unnormalize = unnormalize
        self.register_buffer("offsets", torch.arange(levels, dtype=torch.long) * codebook_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        ae = self.autoencoder
        codes = tokens.reshape(-1, self.levels, ae.num_latents) - self.offsets[None, :, None]
        quantized = ae.quantizer.lookup(codes.permute(0, 2, 1))
        continuous, gripper_logits = ae.decode_latents(quantized)
        gripper = (gripper_logits > 0).to(continuous.dtype)
        return self.unnormalize(continuous.clamp(-1.0, 1.0), gripper)


class VQVAETokenizer(ActionTokenizer):
    """VQ-VAE tokenizer: `num_latents` tokens per chunk from one shared codebook of `codebook_size` codes."""

    config_class = VQVAEConfig

    def __init__(self, config: VQVAEConfig, normalizer: ActionNormalizer):
        super().__init__(config, normalizer)
        self.levels = getattr(config, "levels", 1)
        self.model = ChunkAutoencoder(config, self.levels).eval()
        self._decoder = TokenDecoder(self.model, config.codebook_size, self.levels, Unnormalize(normalizer))

    @property
    def vocab_size(self) -> int:
        return self.levels * self.config.codebook_size

    @property
    def tokens_per_chunk(self) -> int:
        return self.levels * self.config.num_latents

    def token_ranges(self) -> tuple[np.ndarray, np.ndarray]:
        size = self.config.codebook_size
        low = np.repeat(np.arange(self.levels, dtype=np.int64) * size, self.config.num_latents)
        return low, low + size

    def codes_to_tokens(self, codes: torch.Tensor) -> torch.Tensor:
        """Per-level codes [B, L, levels] → level-major token ids [B, levels × L]."""
        return (codes.permute(0, 2, 1) + self._decoder.offsets[None, :, None]).flatten(1)

    def encode_normalized(self, normalized: torch.Tensor) -> torch.Tensor:
        self.model.eval()
        return self.codes_to_tokens(self.model.quantizer(self.model.encode(normalized)).codes)

    def decoder_module(self) -> torch.nn.Module:
        return self._decoder

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.model.state_dict())

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
        self.invalidate_identity()


class ResidualVQTokenizer(VQVAETokenizer):
    """Residual VQ tokenizer: `levels` codebooks per latent, so `levels × num_latents` tokens per chunk."""

    config_class = ResidualVQConfig

    def __init__(self, config: ResidualVQConfig, normalizer: ActionNormalizer):
        if config.levels < 2:
            raise ValueError(f"a residual VQ tokenizer needs at least 2 levels, got {config.levels}")
        super().__init__(config, normalizer)
