"""Fitting a tokenizer to demonstrations: normalization statistics, then (for VQ kinds) the autoencoder."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from vla_ros.tokenizers.base import ActionTokenizer
from vla_ros.tokenizers.chunking import chunks_from_episodes
from vla_ros.tokenizers.loading import new_tokenizer
from vla_ros.tokenizers.metrics import codebook_usage, reconstruction_errors
from vla_ros.tokenizers.modeling_vqvae import VQVAETokenizer
from vla_ros.tokenizers.normalization import GRIPPER, ActionNormalizer

DEFAULT_STEPS = 8000
LOG_EVERY = 25
# Dead-code restarts stop after this fraction of the steps: a restarted code moves the decoder's
# input, so the last stretch runs with a fixed set of live codes.
RESTARTS_UNTIL = 0.75


def train_tokenizer(
    kind: str,
    episodes: Sequence[np.ndarray],
    *,
    steps: int = DEFAULT_STEPS,
    seed: int = 0,
    batch_size: int = 512,
    learning_rate: float = 1e-3,
    progress: bool = True,
    **config_overrides,
) -> tuple[ActionTokenizer, dict]:
    """Fit a tokenizer of `kind` to episodes of actions [T, 7]; returns it and a training history/report.

    Normalization statistics come from every step of every episode; VQ kinds then train on all
    H-step chunks (`chunks_from_episode`) with Adam and a cosine learning-rate decay.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    all_steps = np.concatenate([np.asarray(e, np.float32) for e in episodes], axis=0)
    normalizer = ActionNormalizer.from_actions(all_steps)
    tokenizer = new_tokenizer(kind, normalizer, **config_overrides)
    chunks = chunks_from_episodes(episodes, tokenizer.chunk_size)
    history: dict = {"step": [], "loss": [], "reconstruction": [], "gripper_bce": [], "commitment": [],
                     "batch_usage": [], "batch_perplexity": []}
    started = time.perf_counter()
    if isinstance(tokenizer, VQVAETokenizer) and steps > 0:
        _fit_autoencoder(tokenizer, normalizer.normalize(chunks), steps, batch_size, learning_rate, rng, history,
                         progress)
    tokens = tokenizer.encode(chunks)
    report = {
        "kind": kind,
        "seed": seed,
        "steps": steps if isinstance(tokenizer, VQVAETokenizer) else 0,
        "episodes": len(episodes),
        "chunks": int(chunks.shape[0]),
        "train_seconds": round(time.perf_counter() - started, 1),
        "identity": tokenizer.identity,
        "vocab_size": tokenizer.vocab_size,
        "tokens_per_chunk": tokenizer.tokens_per_chunk,
        "train_reconstruction": reconstruction_errors(chunks, tokenizer.decode(tokens), normalizer),
        "train_codebook": token_usage(tokenizer, tokens),
    }
    if isinstance(tokenizer, VQVAETokenizer):
        report["codebook_restarts"] = tokenizer.model.quantizer.restarts
    return tokenizer, {"history": history, "report": report}


def token_usage(tokenizer: ActionTokenizer, tokens: np.ndarray) -> dict:
    """Codebook usage and perplexity: per level for VQ kinds, over all ids for bins."""
    if isinstance(tokenizer, VQVAETokenizer):
        size = tokenizer.config.codebook_size
        per_level = tokens.reshape(tokens.shape[0], tokenizer.levels, -1)
        levels = [codebook_usage(per_level[:, i] - i * size, size) for i in range(tokenizer.levels)]
        return levels[0] if len(levels) == 1 else {"levels": levels, "usage": min(l["usage"] for l in levels)}
    return codebook_usage(tokens, tokenizer.vocab_size)


def _fit_autoencoder(tokenizer: VQVAETokenizer, normalized: np.ndarray, steps: int, batch_size: int,
                     learning_rate: float, rng: np.random.Generator, history: dict, progress: bool) -> None:
    config = tokenizer.config
    model = tokenizer.model.train()
    data = torch.from_numpy(normalized)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    step_weights = torch.full((config.horizon,), config.later_steps_weight)
    step_weights[: config.executed_steps] = 1.0
    step_weights = step_weights / step_weights.mean()
    warmup = int(config.warmup_fraction * steps)
    bar = tqdm(range(steps), desc=f"train {tokenizer.kind}", disable=not progress, unit="step")
    for step in bar:
        if step == int(RESTARTS_UNTIL * steps):
            for level in model.quantizer.levels:
                level.restarts_enabled = False
        batch = _augment(data, rng, batch_size, config.splice_fraction, config.rotate_fraction)
        continuous, gripper_logits, quantized = model(batch, quantize=step >= warmup)
        squared = (continuous - batch[..., :GRIPPER]).pow(2).mean(dim=-1)
        reconstruction = (squared * step_weights).mean()
        gripper_bce = (F.binary_cross_entropy_with_logits(gripper_logits, batch[..., GRIPPER], reduction="none")
                       * step_weights).mean()
        commitment = quantized.commitment_loss if quantized is not None else torch.zeros(())
        loss = reconstruction + config.gripper_loss_weight * gripper_bce + config.commitment_weight * commitment
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if quantized is not None and (step % LOG_EVERY == 0 or step == steps - 1):
            usage = codebook_usage(quantized.codes[..., 0].numpy(), config.codebook_size)
            for key, value in (("step", step), ("loss", loss.item()), ("reconstruction", reconstruction.item()),
                               ("gripper_bce", gripper_bce.item()),
                               ("commitment", commitment.item()),
                               ("batch_usage", usage["usage"]), ("batch_perplexity", usage["perplexity"])):
                history[key].append(value)
            bar.set_postfix(loss=f"{loss.item():.4f}", used=usage["used_codes"])
    model.eval()
    tokenizer.invalidate_identity()


def _augment(data: torch.Tensor, rng: np.random.Generator, batch_size: int, splice_fraction: float,
             rotate_fraction: float) -> torch.Tensor:
    """A batch of normalized chunks, part spliced from two chunks at a random step, part rotated about z."""
    batch = data[torch.from_numpy(rng.integers(0, data.shape[0], batch_size))].clone()
    horizon = batch.shape[1]
    spliced = rng.random(batch_size) < splice_fraction
    if spliced.any():
        donors = data[torch.from_numpy(rng.integers(0, data.shape[0], int(spliced.sum())))]
        cut = torch.from_numpy(rng.integers(1, horizon, int(spliced.sum())))
        later = torch.arange(horizon)[None, :] >= cut[:, None]
        rows = torch.from_numpy(np.flatnonzero(spliced))
        batch[rows] = torch.where(later[..., None], donors, batch[rows])
    rotated = torch.from_numpy(np.flatnonzero(rng.random(batch_size) < rotate_fraction))
    if len(rotated):
        angle = torch.from_numpy(rng.uniform(-np.pi, np.pi, len(rotated))).float()[:, None]
        x, y = batch[rotated, :, 0], batch[rotated, :, 1]
        # Normalized x and y share a scale only approximately; the clamp keeps rotated values in range.
        batch[rotated, :, 0] = (x * torch.cos(angle) - y * torch.sin(angle)).clamp(-1, 1)
        batch[rotated, :, 1] = (x * torch.sin(angle) + y * torch.cos(angle)).clamp(-1, 1)
    return batch


def write_training_outputs(out_dir: Path, tokenizer: ActionTokenizer, result: dict) -> None:
    """Save the tokenizer plus `training_report.json` and `loss_curve.png` in `out_dir`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tokenizer.save_pretrained(out_dir)
    (out_dir / "training_report.json").write_text(json.dumps(result["report"], indent=2) + "\n")
    history = result["history"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    if history["step"]:
        for key in ("loss", "reconstruction", "gripper_bce", "commitment"):
            axes[0].semilogy(history["step"], history[key], label=key)
        axes[0].set_xlabel("step")
        axes[0].set_title(f"{tokenizer.kind} training loss")
        axes[0].legend()
        axes[1].plot(history["step"], history["batch_perplexity"], label="perplexity (batch, level 0)")
        axes[1].set_xlabel("step")
        axes[1].set_title("codebook perplexity per batch")
        axes[1].legend()
    else:
        recon = result["report"]["train_reconstruction"]["nrmse_per_dim"]
        axes[0].bar(range(6), recon)
        axes[0].set_title(f"{tokenizer.kind}: no training (normalization only); nRMSE per dim")
        axes[1].axis("off")
    fig.tight_layout()
    fig.savefig(out_dir / "loss_curve.png", dpi=100)
    plt.close(fig)
