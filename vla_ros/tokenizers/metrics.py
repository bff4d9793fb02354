"""Reconstruction and codebook metrics shared by training reports and `vla-ros tokenizer compare`."""

from __future__ import annotations

import numpy as np

from vla_ros.tokenizers.normalization import ActionNormalizer


def codebook_usage(codes: np.ndarray, codebook_size: int) -> dict:
    """Fraction of the `codebook_size` codes that occur in `codes`, and the perplexity of their frequencies.

    Perplexity is exp(entropy) of the empirical code distribution: it equals k when k codes
    are used equally often, so it reads as "effective number of codes".
    """
    codes = np.asarray(codes).reshape(-1)
    if codes.size == 0:
        return {"used_codes": 0, "usage": 0.0, "perplexity": 0.0}
    if codes.min() < 0 or codes.max() >= codebook_size:
        raise ValueError(f"codes must lie in [0, {codebook_size})")
    counts = np.bincount(codes, minlength=codebook_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    used = int((counts > 0).sum())
    return {"used_codes": used, "usage": used / codebook_size, "perplexity": float(np.exp(-(p * np.log(p)).sum()))}


def reconstruction_errors(original: np.ndarray, reconstructed: np.ndarray, normalizer: ActionNormalizer) -> dict:
    """Per-dimension RMSE in normalized units (dims 0–5 over q01/q99 half-range), max errors, gripper accuracy.

    Normalized RMSE divides by the data's q01–q99 half-range, *without* clipping the original,
    so tail actions that a tokenizer clips count against it.
    """
    original = np.asarray(original, np.float32).reshape(-1, 7)
    reconstructed = np.asarray(reconstructed, np.float32).reshape(-1, 7)
    error = (reconstructed[:, :6] - original[:, :6]) / normalizer.half_range
    gripper_ok = (reconstructed[:, 6] >= 0.5) == (original[:, 6] >= 0.5)
    return {
        "nrmse_per_dim": [float(v) for v in np.sqrt((error**2).mean(axis=0))],
        "nrmse_mean": float(np.sqrt((error**2).mean())),
        "max_abs_error_normalized": float(np.abs(error).max()),
        "max_abs_error_per_dim": [float(v) for v in np.abs(reconstructed[:, :6] - original[:, :6]).max(axis=0)],
        "gripper_accuracy": float(gripper_ok.mean()),
    }
