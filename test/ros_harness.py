"""Test helpers for talking to real nodes over DDS (see vla_ros.graphs.probe and .processes) and running the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from vla_ros.graphs.probe import ProbeNode as RosProbe  # noqa: F401 - re-exported for the tests
from vla_ros.graphs.processes import LaunchedGraph  # noqa: F401

REPO = Path(__file__).resolve().parents[1]


def run_cli(*arguments: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vla_ros.cli", *arguments],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def save_tiny_policy(path: Path, image_size: int, **overrides):
    """An untrained tiny policy and its (untrained) VQ-VAE tokenizer saved at `path`: enough to exercise a node's
    wiring. Returns (path, tokenizer)."""
    import numpy as np
    import torch

    from vla_ros.policy.modeling_vla import new_policy
    from vla_ros.tokenizers.loading import new_tokenizer
    from vla_ros.tokenizers.normalization import ActionNormalizer

    torch.manual_seed(0)
    actions = np.random.default_rng(0).normal(0, 0.01, (200, 7)).astype(np.float32)
    tokenizer = new_tokenizer("vqvae", ActionNormalizer.from_actions(actions), codebook_size=32, hidden_dim=32)
    policy = new_policy(tokenizer, image_size=image_size, image_grid=2, cnn_channels=[8, 16, 16, 16], hidden_size=32,
                        num_layers=1, num_heads=2, intermediate_size=64, **overrides)
    policy.save_pretrained(path)
    return path, tokenizer
