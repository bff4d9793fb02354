"""Policy sources for the policy stage (`vla_ros.core.stages.policy.PolicySource`), chosen by `backend`.

builtin-torch / builtin-onnx and episode give action tokens; remote (`vla_ros.serving.client`) gives what an
openpi-compatible server answers: a continuous chunk, or a vla_ros server's tokens. Only the builtin backends
import torch.
"""

from __future__ import annotations

from pathlib import Path


import numpy as np

from vla_ros.core.resources import resolve_resource
from vla_ros.core.stages.policy import PolicySettings, SourceOutput
from vla_ros.policy.errors import PolicyLoadError


class RunnerTokenSource:
    """A built-in policy (`PolicyRunner`, torch or onnxruntime)."""

    def __init__(self, runner):
        self.runner = runner
        self.identity = runner.identity
        self.image_size = runner.config.image_size
        self.extra_cameras = tuple(runner.config.extra_cameras)  # read side by side with the primary view

    def generate(self, rgb, task, joints, *, frame_time_s, temperature, plan, rng, stamp_ns=0) -> SourceOutput:
        return self.generate_batch(rgb[None], [task], None if joints is None else joints[None],
                                   temperature=temperature, plan=plan, rng=rng)[0]

    def generate_batch(self, rgbs: np.ndarray, tasks: list[str], joints: np.ndarray | None, *, temperature, plan,
                       rng) -> list[SourceOutput]:
        """One forward pass for B observations (images [B, S, S × views, 3] at the model's size, joints [B, 6] or
        None)."""
        generated = self.runner.infer(rgbs, tasks, joints, plan=plan, temperature=temperature, rng=rng)
        plans = [self.runner.plan_text(p) for p in generated.plans] if generated.plans else [""] * len(tasks)
        return [SourceOutput(tokens=tokens, plan=text) for tokens, text in zip(generated.tokens, plans)]

    @property
    def tokenizer(self):
        return self.runner.tokenizer


def load_token_source(settings: PolicySettings, *, threads: int = 1, model_path: Path | None = None,
                      device: str = "cpu"):
    """The source `settings.backend` names; PolicyLoadError names the setting that is wrong.

    `device` is where builtin-torch runs ("cuda" on a GPU host); builtin-onnx takes CUDA by itself when present.
    """
    if settings.backend == "remote":
        from vla_ros.serving.client import RemotePolicySource

        return RemotePolicySource.from_settings(settings)
    if settings.backend == "episode":
        from vla_ros.policy.episode_source import EpisodeTokenSource

        if not settings.episode_data or not settings.tokenizer_path:
            raise PolicyLoadError("backend 'episode' needs the settings episode_data and tokenizer_path")
        return EpisodeTokenSource(resolve_resource(settings.episode_data), settings.episode_index,
                                  resolve_resource(settings.tokenizer_path))
    from vla_ros.policy.runners import PolicyRunner

    tokenizer = None
    if settings.tokenizer_path:
        from vla_ros.tokenizers.loading import load_tokenizer

        try:
            tokenizer = load_tokenizer(resolve_resource(settings.tokenizer_path))
        except (FileNotFoundError, ValueError, KeyError, OSError) as exc:
            raise PolicyLoadError(f"tokenizer_path={settings.tokenizer_path!r} is not a usable tokenizer: "
                                  f"{exc}") from None
    model = Path(model_path) if model_path is not None else resolve_resource(settings.model_path)
    adapter = resolve_resource(settings.adapter_path) if settings.adapter_path else None
    return RunnerTokenSource(PolicyRunner(model, settings.backend, threads=threads, tokenizer=tokenizer,
                                          device=device if settings.backend == "builtin-torch" else "cpu",
                                          adapter=adapter))
