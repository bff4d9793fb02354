"""Aligning the policy to safety preferences: a LoRA adapter trained by preference optimisation on action tokens.

`align_policy` freezes the base policy, adds LoRA matrices (as `vla-ros finetune` does) and trains them on the
pairs of a preferences file. Two objectives:

- `dpo`: direct preference optimisation (Rafailov et al. 2023) on whole chunks,
  -log σ(β · [(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))]), the reference the frozen base; safety pairs and progress pairs weighted by `safety_weight` and `progress_weight` (progress pairs are
  off by default: they rank by a hand-made progress score, and training on them cost success);
- `constrained`: a Lagrange multiplier λ on the constraint P(unsafe) ≤ ε, where P(unsafe) is the policy's
  probability of choosing an unsafe candidate among the candidates of a state (states with both safe and
  unsafe candidates); λ rises by dual ascent while the constraint is broken and falls back to 0 once it holds
  (plus DPO on the progress pairs when `progress_weight` > 0).

Both add `anchor_weight` × the negative log-likelihood of the base's own choice (candidate 0) wherever it was
safe: the adapted policy keeps doing what the base did where nothing went wrong, and only moves where the
look-ahead found a safer choice. The adapter is saved like any other (`adapters.save_adapter`), tied to its
base, and the merged ONNX graphs are written to OUT/onnx: it runs in every backend.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vla_ros.alignment.preferences import check_base, load_many, prefs_names

METHODS = ("dpo", "constrained")
REPORT = "align_report.json"


@dataclass(frozen=True)
class AlignRecipe:
    method: str = "dpo"
    steps: int = 300
    batch_size: int = 64
    learning_rate: float = 3e-4
    beta: float = 0.5
    anchor_weight: float = 1.0
    safety_weight: float = 1.0
    progress_weight: float = 0.0
    epsilon: float = 0.02  # constrained: the allowed P(unsafe) among a state's candidates
    dual_learning_rate: float = 0.5
    held_out: float = 0.2
    seed: int = 0
    threads: int = 2

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method {self.method!r} is not one of {', '.join(METHODS)}")


def align_policy(base_dir: str | Path, prefs_path: str | Path, out_dir: str | Path, spec=None,
                 recipe: AlignRecipe | None = None, progress: bool = True, export_onnx: bool = True) -> dict:
    """Train a LoRA adapter on `base_dir` from the preference pairs in `prefs_path`; write it and a report to OUT."""
    from tqdm import tqdm

    from vla_ros.alignment.scoring import held_out_states, per_candidate, sequence_logps, state_prefixes
    from vla_ros.policy.adapters import ADAPTER_WEIGHTS, AdapterSpec, add_lora, save_adapter, trainable_parameters
    from vla_ros.policy.modeling_vla import VLAPolicy

    recipe = recipe or AlignRecipe()
    spec = spec or AdapterSpec()
    if spec.targets == "all":
        raise ValueError("alignment adapts the decoder (targets attention or attention+mlp): the observation "
                         "encoding stays the base's, so that the preferences' prefixes are computed once")
    base_dir, out_dir = Path(base_dir), Path(out_dir)
    if out_dir.resolve() == base_dir.resolve():
        raise ValueError(f"--out {out_dir} is the base policy's directory; give a new one")
    started = time.perf_counter()
    torch.manual_seed(recipe.seed)
    torch.set_num_threads(recipe.threads)
    prefs = load_many(prefs_path)
    identity = check_base(prefs, prefs_path, base_dir)
    policy = VLAPolicy.from_pretrained(base_dir).eval()
    prefixes = state_prefixes(policy, prefs)
    reference = per_candidate(lambda prefix, ids: sequence_logps(policy, prefix, ids), prefixes,
                              torch.from_numpy(prefs.tokens))  # log π_ref [S, K] under the frozen base
    add_lora(policy, spec)
    trainable, total = trainable_parameters(policy)

    kinds = np.array(prefs.pair_kind)
    valid_states = held_out_states(prefs, recipe.held_out, recipe.seed)
    in_valid = valid_states[prefs.pairs[:, 0]]
    pair_weight = np.where(kinds == "safety", recipe.safety_weight, recipe.progress_weight).astype(np.float32)
    if recipe.method == "constrained":
        pair_weight = np.where(kinds == "safety", 0.0, pair_weight).astype(np.float32)
    train_pairs = np.flatnonzero(~in_valid & (pair_weight > 0))
    unsafe = prefs.events.sum(-1) > 0  # [S, K]
    mixed = np.flatnonzero(unsafe.any(1) & (~unsafe).any(1) & ~valid_states)  # states the constraint speaks about
    anchors = np.flatnonzero(~unsafe[:, 0] & ~valid_states)  # the base's own choice was safe there
    if recipe.method == "dpo" and len(train_pairs) == 0:
        raise ValueError(f"{prefs_names(prefs_path)} has no pairs this method trains on")
    if recipe.method == "constrained" and len(mixed) == 0:
        raise ValueError(f"{prefs_names(prefs_path)} has no state with both safe and unsafe candidates")
    tokens = torch.from_numpy(prefs.tokens)
    trainable_params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable_params, lr=recipe.learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + np.cos(np.pi * min(1.0, s / recipe.steps))))
    rng = np.random.default_rng(recipe.seed)
    multiplier = 0.0
    history: dict = {"step": [], "loss": [], "margin": [], "accuracy": [], "p_unsafe": [], "multiplier": []}
    policy.train()
    window: dict[str, list[float]] = {"loss": [], "margin": [], "accuracy": [], "p_unsafe": []}
    for step in tqdm(range(recipe.steps), desc=f"align ({recipe.method})", unit="step", disable=not progress):
        loss = torch.zeros(())
        margin = torch.full((1,), float("nan"))
        if len(train_pairs):
            chosen = train_pairs[rng.integers(0, len(train_pairs), recipe.batch_size)]
            s, w, l = (torch.from_numpy(prefs.pairs[chosen, i]) for i in range(3))
            both = torch.cat([tokens[s, w], tokens[s, l]])
            logps = sequence_logps(policy, torch.cat([prefixes[s], prefixes[s]]), both)
            policy_w, policy_l = logps[:len(s)], logps[len(s):]
            margin = (policy_w - reference[s, w]) - (policy_l - reference[s, l])
            weights = torch.from_numpy(pair_weight[chosen])
            loss = (weights * -F.logsigmoid(recipe.beta * margin)).sum() / weights.sum().clamp(min=1e-6)
        if recipe.anchor_weight > 0 and len(anchors):
            rows = torch.from_numpy(anchors[rng.integers(0, len(anchors), recipe.batch_size)])
            anchor = sequence_logps(policy, prefixes[rows], tokens[rows, 0]) / tokens.shape[-1]
            loss = loss + recipe.anchor_weight * -anchor.mean()
        p_unsafe = torch.tensor(float("nan"))
        if recipe.method == "constrained" and len(mixed):
            rows = torch.from_numpy(mixed[rng.integers(0, len(mixed), max(8, recipe.batch_size // 4))])
            k = tokens.shape[1]
            cand = sequence_logps(policy, prefixes[rows].repeat_interleave(k, 0),
                                  tokens[rows].reshape(len(rows) * k, -1)).reshape(len(rows), k)
            share = torch.softmax(cand, -1)
            p_unsafe = (share * torch.from_numpy(unsafe[rows.numpy()]).float()).sum(-1).mean()
            loss = loss + multiplier * p_unsafe
            multiplier = max(0.0, multiplier + recipe.dual_learning_rate * (float(p_unsafe.detach()) - recipe.epsilon))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable_params, 1.0)
        optimizer.step()
        schedule.step()
        window["loss"].append(float(loss.detach()))
        window["margin"].append(float(margin.detach().mean()))
        window["accuracy"].append(float((margin > 0).float().mean()) if not torch.isnan(margin).any()
                                  else float("nan"))
        window["p_unsafe"].append(float(p_unsafe.detach()))
        if (step + 1) % 20 == 0 or step + 1 == recipe.steps:
            history["step"].append(step + 1)
            for key, values in window.items():
                history[key].append(float(np.nanmean(values)) if not all(np.isnan(values)) else None)
            history["multiplier"].append(multiplier)
            window = {key: [] for key in window}
    policy.eval()
    validation = _validate(policy, prefs, prefixes, reference, np.flatnonzero(in_valid), kinds, recipe.beta)
    report = {
        "base": str(base_dir), "base_identity": identity, "prefs": prefs_names(prefs_path), "method": recipe.method,
        "recipe": dataclasses.asdict(recipe), "adapter": dataclasses.asdict(spec),
        "trainable_parameters": trainable, "base_parameters": total,
        "trainable_percent": round(100.0 * trainable / total, 3),
        "train_pairs": int(len(train_pairs)), "valid_pairs": int(in_valid.sum()), "validation": validation,
        "final_multiplier": multiplier, "train_seconds": round(time.perf_counter() - started, 1),
    }
    save_adapter(policy, spec, out_dir, base_dir, extra={"alignment": recipe.method, "prefs": prefs_names(prefs_path),
                                                         "train_pairs": int(len(train_pairs))})
    report["adapter_bytes"] = (out_dir / ADAPTER_WEIGHTS).stat().st_size
    if export_onnx:
        from vla_ros.policy.onnx_export import export_adapter_onnx

        export_adapter_onnx(base_dir, out_dir)
    (out_dir / REPORT).write_text(json.dumps({**report, "history": history}, indent=2) + "\n")
    _plot(out_dir / "align_curve.png", history, recipe.method)
    return report


def _validate(policy, prefs, prefixes, reference, pairs, kinds, beta: float) -> dict:
    """On held-out episodes' pairs: how often the adapted policy's implicit reward orders a pair as the judge
    did, by kind, and the mean log-probability change of preferred and other chunks."""
    from vla_ros.alignment.scoring import sequence_logps

    if len(pairs) == 0:
        return {}
    tokens = torch.from_numpy(prefs.tokens)
    s, w, l = (torch.from_numpy(prefs.pairs[pairs, i]) for i in range(3))
    with torch.no_grad():
        policy_w = torch.cat([sequence_logps(policy, prefixes[s[i:i + 128]], tokens[s[i:i + 128], w[i:i + 128]])
                              for i in range(0, len(s), 128)])
        policy_l = torch.cat([sequence_logps(policy, prefixes[s[i:i + 128]], tokens[s[i:i + 128], l[i:i + 128]])
                              for i in range(0, len(s), 128)])
    change_w, change_l = policy_w - reference[s, w], policy_l - reference[s, l]
    right = (change_w - change_l > 0).numpy()
    out = {"pairs": int(len(pairs)), "accuracy": float(right.mean()),
           "preferred_logp_change": float(change_w.mean()), "other_logp_change": float(change_l.mean())}
    for kind in ("safety", "progress"):
        mask = kinds[pairs] == kind
        if mask.any():
            out[f"accuracy_{kind}"] = float(right[mask].mean())
    return out


def _plot(path: Path, history: dict, method: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    axes[0].plot(history["step"], history["loss"])
    axes[0].set_ylabel("loss")
    axes[1].plot(history["step"], history["accuracy"], label="pairs ordered as judged")
    axes[1].set_ylabel("train pair accuracy")
    if method == "constrained":
        axes[2].plot(history["step"], history["p_unsafe"], label="P(unsafe candidate)")
        axes[2].plot(history["step"], history["multiplier"], label="Lagrange multiplier")
        axes[2].legend(fontsize=8)
    else:
        axes[2].plot(history["step"], history["margin"])
        axes[2].set_ylabel("log-ratio margin")
    for ax in axes:
        ax.set_xlabel("step")
    fig.suptitle(f"alignment ({method})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
