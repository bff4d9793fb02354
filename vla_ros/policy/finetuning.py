"""Adapting a trained policy to a changed set-up: LoRA (the default) or full fine-tuning of every weight.

`finetune_policy` loads the base policy with its tokenizer, builds training samples from the new
demonstrations exactly as `vla-ros train` does, and runs the shared loop (`training.fit`: accelerate, lazy
frames, validation, resumable checkpoints). With an `AdapterSpec` the base stays frozen and only the LoRA
matrices train; the output is an adapter directory (`adapters.py`) tied to its base. Without one (full
fine-tuning, the comparison the benchmark makes) every weight trains and the output is a whole policy.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from vla_ros.policy.adapters import (
    ADAPTER_WEIGHTS, AdapterSpec, add_lora, base_identity, save_adapter, trainable_parameters)
from vla_ros.policy.recipe import TrainRecipe


@dataclass
class FinetuneRecipe(TrainRecipe):
    """A short schedule on few demonstrations; LoRA takes a higher learning rate than training from scratch."""

    steps: int = 1500
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 50
    eval_every: int = 250
    checkpoint_every: int = 250


def finetune_policy(base_dir: str | Path, data_dir, out_dir: str | Path,
                    spec: AdapterSpec | None = None, recipe: FinetuneRecipe | None = None,
                    episodes: int | None = None, resume: bool = True, progress: bool = True,
                    workers: int = 1, export_onnx: bool = False, add_cameras: tuple[str, ...] = ()) -> dict:
    """Adapt the policy saved in `base_dir` on the demonstrations in `data_dir` (any kind `vla-ros train` reads,
    or a list of data sets pooled);
    LoRA with `spec`, full fine-tuning without. `add_cameras` (full fine-tuning only) gives the policy more views
    (`modeling_vla.with_views`), read from the data's recorded cameras of those names.
    Writes OUT (adapter or policy), its report and loss curve."""
    from vla_ros.policy.modeling_vla import VLAPolicy, with_views
    from vla_ros.policy.training import (
        _run_summary, _write_outputs, data_names, fit, load_training_episodes, training_sets)

    recipe = recipe or FinetuneRecipe()
    base_dir, out_dir = Path(base_dir), Path(out_dir)
    if out_dir.resolve() == base_dir.resolve():
        raise ValueError(f"--out {out_dir} is the base policy's directory; give a new one")
    add_cameras = tuple(add_cameras)
    if add_cameras and spec is not None:
        raise ValueError("a camera can only be added with full fine-tuning (--full): LoRA keeps the base's "
                         "position embeddings, and a new view needs its own")
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(recipe.seed)
    torch.set_num_threads(recipe.threads)
    started = time.perf_counter()
    policy = VLAPolicy.from_pretrained(base_dir)
    if policy.tokenizer is None:
        raise ValueError(f"{base_dir} has no tokenizer/ folder; a policy is saved together with its tokenizer")
    tokenizer = policy.tokenizer
    policy = with_views(policy, add_cameras)
    data = load_training_episodes(data_dir, limit=episodes, extra_cameras=tuple(policy.config.extra_cameras))
    if spec is not None:
        add_lora(policy, spec)
    trainable, total = trainable_parameters(policy)
    train_set, valid_set = training_sets(data, tokenizer, policy.vocab, recipe)
    setup_seconds = time.perf_counter() - started
    identity = {"kind": "lora" if spec else "full", "base": base_identity(base_dir), "data": data_names(data_dir),
                "episodes": episodes, "spec": dataclasses.asdict(spec) if spec else None,
                **({"add_cameras": list(add_cameras)} if add_cameras else {})}
    result = fit(policy, train_set, valid_set, recipe, out_dir, identity=identity, resume=resume,
                 progress=progress, workers=workers, description="finetune (LoRA)" if spec else "finetune (full)")
    report = {
        "base": str(base_dir), "base_identity": identity["base"], "base_version": policy.config.version,
        "data": data_names(data_dir), "method": identity["kind"], "adapter": dataclasses.asdict(spec) if spec else None,
        "device": result.device, "processes": result.processes, "threads": recipe.threads, "workers": workers,
        "added_cameras": list(add_cameras), "extra_cameras": list(policy.config.extra_cameras),
        "recipe": dataclasses.asdict(recipe), "trainable_parameters": trainable, "base_parameters": total,
        "trainable_percent": round(100.0 * trainable / total, 3),
        "train_episodes": len(data.train), "valid_episodes": len(data.valid), "train_samples": len(train_set),
        **_run_summary(result, recipe, setup_seconds),
    }
    report["written"] = result.main  # under DDP only the main process writes OUT
    if not result.main:
        return report
    if spec is not None:
        save_adapter(policy, spec, out_dir, base_dir, extra={
            "train_episodes": len(data.train), "data": data_names(data_dir), "selected_step": report["selected_step"]})
        report["adapter_bytes"] = (out_dir / ADAPTER_WEIGHTS).stat().st_size
        if export_onnx:
            from vla_ros.policy.onnx_export import export_adapter_onnx

            export_adapter_onnx(base_dir, out_dir)
    else:
        policy.tokenizer = tokenizer
        policy.config.version = ""  # no longer the shipped release it started from
        policy.save_pretrained(out_dir)
        if export_onnx:
            from vla_ros.policy.onnx_export import export_policy_onnx

            export_policy_onnx(policy, out_dir)
    _write_outputs(out_dir, report, result.history)
    return report
