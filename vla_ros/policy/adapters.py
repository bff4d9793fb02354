"""LoRA adapters of the policy: a few low-rank matrices trained on a frozen base for a new set-up.

An adapter directory holds `adapter_config.json` (rank, alpha, the modules it adapts and the identity of the
base policy it was trained on) and `adapter_model.safetensors` (the LoRA matrices, peft's key names). It is
loaded onto its own base only: the base's weights digest is recorded and compared, and another base is refused
with one sentence. Loading merges the matrices into the base's weights (W + alpha/rank · B·A), so every backend
(torch, ONNX exported from the merged model, a remote server) runs the plain policy at its usual speed.

Targets name the modules that get LoRA matrices:

- `attention`: the Llama decoder's q, k, v and o projections (the design's choice);
- `attention+mlp`: also its gate, up and down projections;
- `all`: also the vision encoder's convolutions, its FiLM layers, the text and joint projections and the
  trained fusion layers of late and middle fusion (never the frozen MiniLM layers of middle fusion).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from vla_ros.policy.errors import PolicyLoadError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_FORMAT = "vla-ros-lora-1"
_LAYER = r"llama\.model\.layers\.\d+\."
TARGETS = {
    "attention": [_LAYER + r"self_attn\.(q|k|v|o)_proj"],
    "attention+mlp": [_LAYER + r"self_attn\.(q|k|v|o)_proj", _LAYER + r"mlp\.(gate|up|down)_proj"],
    "all": [_LAYER + r"self_attn\.(q|k|v|o)_proj", _LAYER + r"mlp\.(gate|up|down)_proj",
            r"vision\.features\.\d+\.0", r"vision\.film\.\d+", r"vision\.patchify", r"text_projection",
            r"proprio_projection", r"late_fusion\.(instruction|mix\.[02])", r"bridge\.image_in", r"image_projection"],
}


class AdapterMismatchError(PolicyLoadError):
    """The adapter was trained on another base policy, or is not an adapter this version reads."""


@dataclass(frozen=True)
class AdapterSpec:
    """What an adapter adapts and how; written to adapter_config.json with the base's identity."""

    rank: int = 8
    alpha: float = 16.0
    targets: str = "attention"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.targets not in TARGETS:
            raise ValueError(f"targets {self.targets!r} is not one of {', '.join(TARGETS)}")
        if self.rank < 1:
            raise ValueError(f"rank must be at least 1, got {self.rank}")
        if self.alpha <= 0:
            raise ValueError(f"alpha must be positive, got {self.alpha}")

    def lora_config(self):
        from peft import LoraConfig

        pattern = "^(" + "|".join(TARGETS[self.targets]) + ")$"
        return LoraConfig(r=self.rank, lora_alpha=self.alpha, lora_dropout=self.dropout, target_modules=pattern,
                          bias="none")


def base_identity(policy_dir: str | Path) -> str:
    """SHA-256 (16 hex digits) of a saved policy's weights file: the identity an adapter is tied to."""
    from vla_ros.policy.modeling_vla import WEIGHTS_FILE

    path = Path(policy_dir) / WEIGHTS_FILE
    if not path.is_file():
        raise PolicyLoadError(f"{policy_dir} is not a saved VLA policy (no {WEIGHTS_FILE})")
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def adapter_digest(adapter_dir: str | Path) -> str:
    """SHA-256 (16 hex digits) of an adapter's weights file."""
    return hashlib.sha256((Path(adapter_dir) / ADAPTER_WEIGHTS).read_bytes()).hexdigest()[:16]


def add_lora(policy, spec: AdapterSpec):
    """Freeze `policy` and inject LoRA matrices (peft) into the modules `spec.targets` names; returns it."""
    from peft import inject_adapter_in_model

    for parameter in policy.parameters():
        parameter.requires_grad_(False)
    inject_adapter_in_model(spec.lora_config(), policy)
    for name, parameter in policy.named_parameters():
        parameter.requires_grad_("lora_" in name)
    return policy


def trainable_parameters(policy) -> tuple[int, int]:
    """(trainable, total) parameter counts; the total excludes LoRA matrices (the base's size)."""
    trainable = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    base = sum(p.numel() for n, p in policy.named_parameters() if "lora_" not in n)
    return trainable, base


def save_adapter(policy, spec: AdapterSpec, out_dir: str | Path, base_dir: str | Path, extra: dict | None = None
                 ) -> Path:
    """Write the LoRA matrices of `policy` and adapter_config.json (with the base's identity) to `out_dir`."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(policy).items()}
    if not state:
        raise ValueError("the policy carries no LoRA matrices to save (add_lora was not applied)")
    save_file(state, str(out_dir / ADAPTER_WEIGHTS), metadata={"format": "pt", "adapter_format": ADAPTER_FORMAT})
    trainable, total = trainable_parameters(policy)
    config = {
        "format": ADAPTER_FORMAT, "peft_type": "LORA", **asdict(spec),
        "target_modules": TARGETS[spec.targets],
        "base_identity": base_identity(base_dir), "base_version": policy.config.version,
        "base_path": str(base_dir), "tokenizer_identity": policy.config.tokenizer_identity,
        "parameters": sum(v.numel() for v in state.values()), "base_parameters": total,
        **(extra or {}),
    }
    (out_dir / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    return out_dir


def read_adapter_config(adapter_dir: str | Path) -> dict:
    """adapter_config.json of an adapter directory; PolicyLoadError in one sentence when it is none."""
    adapter_dir = Path(adapter_dir)
    path = adapter_dir / ADAPTER_CONFIG
    if not path.is_file() or not (adapter_dir / ADAPTER_WEIGHTS).is_file():
        raise PolicyLoadError(f"{adapter_dir} is not a policy adapter (it needs {ADAPTER_CONFIG} and "
                              f"{ADAPTER_WEIGHTS}; train one with 'vla-ros finetune')")
    try:
        config = json.loads(path.read_text())
    except ValueError as exc:
        raise PolicyLoadError(f"{path} is not valid JSON ({exc})") from None
    if config.get("format") != ADAPTER_FORMAT:
        raise AdapterMismatchError(f"{path} is of format {config.get('format')!r}; this version reads "
                                   f"{ADAPTER_FORMAT}")
    return config


def check_adapter_base(adapter_dir: str | Path, base_dir: str | Path) -> dict:
    """The adapter's config, after checking that it was trained on the policy saved in `base_dir`."""
    config = read_adapter_config(adapter_dir)
    identity = base_identity(base_dir)
    if config.get("base_identity") != identity:
        raise AdapterMismatchError(
            f"adapter {adapter_dir} was trained on base policy {config.get('base_identity')} "
            f"({config.get('base_path', '?')}), not on {base_dir} ({identity}); load it onto its own base")
    return config


def apply_adapter(policy, adapter_dir: str | Path, base_dir: str | Path, merge: bool = True):
    """Load the adapter in `adapter_dir` onto `policy` (loaded from `base_dir`); merged into the weights by default."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    config = check_adapter_base(adapter_dir, base_dir)
    try:
        spec = AdapterSpec(rank=int(config["rank"]), alpha=float(config["alpha"]), targets=str(config["targets"]))
    except (KeyError, ValueError, TypeError) as exc:
        raise AdapterMismatchError(f"{Path(adapter_dir) / ADAPTER_CONFIG} does not describe a LoRA adapter "
                                   f"({exc})") from None
    add_lora(policy, spec)
    state = load_file(str(Path(adapter_dir) / ADAPTER_WEIGHTS), device=str(policy.device))
    result = set_peft_model_state_dict(policy, state)
    unexpected = getattr(result, "unexpected_keys", [])
    missing = [k for k in getattr(result, "missing_keys", []) if "lora_" in k]
    if unexpected or missing:
        raise AdapterMismatchError(f"{adapter_dir}'s matrices do not fit the base's modules "
                                   f"({(unexpected or missing)[0]})")
    for parameter in policy.parameters():
        parameter.requires_grad_(False)
    return merge_lora(policy) if merge else policy


def merge_lora(policy):
    """Fold every LoRA layer into its base layer (W + scale · B·A) and put the plain layer back in its place."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    wrapped = [(name, module) for name, module in policy.named_modules() if isinstance(module, BaseTunerLayer)]
    for name, module in wrapped:
        module.merge()
        parent_name, _, child = name.rpartition(".")
        parent = policy.get_submodule(parent_name) if parent_name else policy
        setattr(parent, child, module.get_base_layer())
    return policy


def load_policy(policy_dir: str | Path, adapter_dir: str | Path | None = None, tokenizer=None,
                map_location: str = "cpu"):
    """A saved policy, with the adapter in `adapter_dir` merged into it when one is given."""
    from vla_ros.policy.modeling_vla import VLAPolicy

    policy = VLAPolicy.from_pretrained(policy_dir, tokenizer=tokenizer, map_location=map_location)
    if adapter_dir:
        policy = apply_adapter(policy, adapter_dir, policy_dir).eval()
    return policy
