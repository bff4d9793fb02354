"""Uniform-bin tokenizer (RT-2 / OpenVLA): `num_bins` bins per dimension, 7 tokens per step."""

from __future__ import annotations

import torch

from vla_ros.tokenizers.base import ActionTokenizer, Unnormalize
from vla_ros.tokenizers.configuration_tokenizers import BinConfig
from vla_ros.tokenizers.normalization import ACTION_DIM, GRIPPER, ActionNormalizer


class BinDecoder(torch.nn.Module):
    """Bin ids [B, H·7] → physical actions [B, H, 7] (bin centres, un-normalized; gripper from the upper half)."""

    def __init__(self, num_bins: int, horizon: int, unnormalize: Unnormalize):
        super().__init__()
        self.num_bins = num_bins
        self.horizon = horizon
        self.unnormalize = unnormalize
        self.register_buffer("centres", (torch.arange(num_bins, dtype=torch.float32) + 0.5) * (2.0 / num_bins) - 1.0)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        bins = tokens.reshape(-1, self.horizon, ACTION_DIM)
        continuous = self.centres[bins[..., :GRIPPER]]
        gripper = (bins[..., GRIPPER] >= self.num_bins // 2).to(continuous.dtype)
        return self.unnormalize(continuous, gripper)


class BinTokenizer(ActionTokenizer):
    """Token t = step × 7 + dim; dims 0–5 binned uniformly over [-1, 1], the gripper as bin 0 (closed) or the last bin (open).

    Decoding returns bin centres, so an action that sits on a bin centre comes back exactly;
    elsewhere the error is at most half a bin (1/num_bins in normalized units).
    """

    config_class = BinConfig

    def __init__(self, config: BinConfig, normalizer: ActionNormalizer):
        super().__init__(config, normalizer)
        if config.num_bins < 2:
            raise ValueError(f"bins need num_bins ≥ 2, got {config.num_bins}")
        self._decoder = BinDecoder(config.num_bins, config.horizon, Unnormalize(normalizer))

    @property
    def vocab_size(self) -> int:
        return self.config.num_bins

    @property
    def tokens_per_chunk(self) -> int:
        return self.config.horizon * ACTION_DIM

    def encode_normalized(self, normalized: torch.Tensor) -> torch.Tensor:
        nb = self.config.num_bins
        bins = torch.floor((normalized + 1.0) * (nb / 2.0)).clamp(0, nb - 1).to(torch.long)
        bins[..., GRIPPER] = torch.where(normalized[..., GRIPPER] >= 0.5, nb - 1, 0)
        return bins.flatten(1)

    def bin_centres(self) -> torch.Tensor:
        """Normalized value each bin decodes to, [num_bins]."""
        return self._decoder.centres.clone()

    def decoder_module(self) -> torch.nn.Module:
        return self._decoder

    def state_dict(self) -> dict[str, torch.Tensor]:
        # Bins have no learned weights; saving the centres makes the file self-describing and the identity concrete.
        return {"bin_centres": self._decoder.centres}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if set(state) != {"bin_centres"} or not torch.equal(state["bin_centres"], self._decoder.centres):
            raise ValueError("bin tokenizer weights do not match its config (bin_centres differ)")
        self.invalidate_identity()
