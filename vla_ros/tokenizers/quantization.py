"""Vector quantizers with EMA codebook updates and dead-code restarts, single-level and residual."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

EMA_EPSILON = 1e-5


@dataclass
class QuantizerOutput:
    quantized: torch.Tensor  # [B, L, d], straight-through: gradients flow to the encoder output
    codes: torch.Tensor  # [B, L, levels] int64, per-level code indices
    commitment_loss: torch.Tensor  # scalar, ||z_e - sg(z_q)||²


class VectorQuantizer(torch.nn.Module):
    """A codebook of `codebook_size` vectors learned by exponential moving averages, not by gradients.

    EMA updates (van den Oord et al. 2017, appendix) are steadier than a codebook loss, and codes
    that stop being chosen are restarted on current encoder outputs: codebook collapse is the
    known failure of VQ-VAEs, and restarts are the usual cure.
    """

    def __init__(self, codebook_size: int, dim: int, decay: float, dead_code_threshold: float, restart_every: int):
        super().__init__()
        self.codebook_size = codebook_size
        self.decay = decay
        self.dead_code_threshold = dead_code_threshold
        self.restart_every = restart_every
        self.register_buffer("codebook", torch.zeros(codebook_size, dim))
        self.register_buffer("cluster_size", torch.zeros(codebook_size))
        self.register_buffer("embed_sum", torch.zeros(codebook_size, dim))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self.restarts = 0  # codes restarted since construction, for the training report
        self.restarts_enabled = True  # training turns them off for its last stretch so the decoder can settle

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code for each row of `flat` [N, d]."""
        # ||z||² is the same for every code, so argmin(||c||² - 2 z·c) suffices; addmm fuses it.
        return torch.addmm(self.codebook.pow(2).sum(1), flat, self.codebook.t(), alpha=-2.0).argmin(dim=1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        return F.embedding(codes, self.codebook)

    def _random_rows(self, flat: torch.Tensor, count: int) -> torch.Tensor:
        index = torch.randint(0, flat.shape[0], (count,), device=flat.device)
        return flat[index] + 1e-3 * torch.randn(count, flat.shape[1], device=flat.device)

    @torch.no_grad()
    def _update(self, flat: torch.Tensor, codes: torch.Tensor) -> None:
        if not bool(self.initialized):
            self.codebook.copy_(self._random_rows(flat, self.codebook_size))
            self.embed_sum.copy_(self.codebook)
            self.cluster_size.fill_(1.0)
            self.initialized.fill_(True)
            return
        counts = torch.bincount(codes, minlength=self.codebook_size).to(flat.dtype)
        sums = torch.zeros_like(self.embed_sum).index_add_(0, codes, flat)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        # Laplace smoothing keeps unused codes from dividing by zero.
        smoothed = (self.cluster_size + EMA_EPSILON) / (total + self.codebook_size * EMA_EPSILON) * total
        self.codebook.copy_(self.embed_sum / smoothed[:, None])
        self.updates.add_(1)
        if self.restarts_enabled and int(self.updates) % self.restart_every == 0:
            dead = self.cluster_size < self.dead_code_threshold
            count = int(dead.sum())
            if count:
                fresh = self._random_rows(flat, count)
                self.codebook[dead] = fresh
                self.embed_sum[dead] = fresh
                self.cluster_size[dead] = 1.0
                self.restarts += count

    def forward(self, latents: torch.Tensor) -> QuantizerOutput:
        shape = latents.shape
        flat = latents.reshape(-1, shape[-1])
        codes = self.nearest(flat.detach())
        if self.training:
            self._update(flat.detach(), codes)
            if self.updates == 0:  # the codebook was just initialized from this batch
                codes = self.nearest(flat.detach())
        quantized = self.lookup(codes).reshape(shape)
        commitment = F.mse_loss(latents, quantized.detach())
        straight_through = latents + (quantized - latents).detach()
        return QuantizerOutput(straight_through, codes.reshape(*shape[:-1], 1), commitment)


class ResidualQuantizer(torch.nn.Module):
    """`levels` quantizers in turn, each coding what the previous ones left (coarse, then finer)."""

    def __init__(self, levels: int, codebook_size: int, dim: int, decay: float, dead_code_threshold: float,
                 restart_every: int):
        super().__init__()
        if levels < 1:
            raise ValueError(f"a residual quantizer needs at least one level, got {levels}")
        self.levels = torch.nn.ModuleList(
            VectorQuantizer(codebook_size, dim, decay, dead_code_threshold, restart_every) for _ in range(levels)
        )

    @property
    def restarts(self) -> int:
        return sum(level.restarts for level in self.levels)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Per-level codes [..., levels] → summed code vectors [..., d]."""
        return sum(level.lookup(codes[..., i]) for i, level in enumerate(self.levels))

    def forward(self, latents: torch.Tensor) -> QuantizerOutput:
        residual = latents.detach()
        total = torch.zeros_like(latents)
        codes = []
        for level in self.levels:
            out = level(residual)
            step = out.quantized.detach()
            codes.append(out.codes[..., 0])
            total = total + step
            residual = residual - step
        commitment = F.mse_loss(latents, total)
        straight_through = latents + (total - latents).detach()
        return QuantizerOutput(straight_through, torch.stack(codes, dim=-1), commitment)
