"""Token sources for the policy stage (`vla_ros.core.stages.policy.TokenSource`), chosen by `backend`."""

from __future__ import annotations

from pathlib import Path


from vla_ros.core.resources import resolve_resource
from vla_ros.core.stages.policy import PolicySettings
from vla_ros.policy.modeling_vla import PolicyLoadError


class RunnerTokenSource:
    """A built-in policy (`PolicyRunner`, torch or onnxruntime)."""

    def __init__(self, runner):
        self.runner = runner
        self.identity = runner.identity
        self.image_size = runner.config.image_size

    def generate(self, rgb, task, joints, *, frame_time_s, temperature, plan, rng):
        generated = self.runner.infer(rgb[None], [task], None if joints is None else joints[None], plan=plan,
                                      temperature=temperature, rng=rng)
        return generated.tokens[0], (self.runner.plan_text(generated.plans[0]) if generated.plans else "")


def load_token_source(settings: PolicySettings, *, threads: int = 1, model_path: Path | None = None):
    """The token source `settings.backend` names; PolicyLoadError names the setting that is wrong."""
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
    return RunnerTokenSource(PolicyRunner(model, settings.backend, threads=threads, tokenizer=tokenizer))



