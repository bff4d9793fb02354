"""A reward model of safety preferences: a small head on the frozen policy's features of (observation, chunk).

The features are the policy decoder's hidden state where it has read the observation prefix (before any action
id), its hidden states after reading a candidate chunk's action ids (`scoring.candidate_features`) and the
chunk's actions decoded by the policy's tokenizer: what the policy makes of the scene and of that chunk, and
what the chunk does. Each feature is standardised with the statistics of the file's candidates.
The head is trained with the Bradley–Terry loss, -log σ(r(preferred) − r(other)), on the pairs of a
preferences file; accuracy is reported on the pairs of held-out episodes. Saved as reward_model.safetensors
plus reward_model.json (the base policy's identity, the feature size, the figures).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vla_ros.alignment.preferences import PAIR_KINDS, Preferences, check_base, load_many, prefs_names

WEIGHTS = "reward_model.safetensors"
CONFIG = "reward_model.json"


@dataclass(frozen=True)
class RewardRecipe:
    epochs: int = 300
    learning_rate: float = 3e-3
    weight_decay: float = 0.05
    hidden: int = 64
    held_out: float = 0.2
    seed: int = 0


class RewardHead(nn.Module):
    """Features [B, F] → reward [B]."""

    def __init__(self, features: int, hidden: int = 128, dropout: float = 0.2):
        super().__init__()
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("std", torch.ones(features))
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(features, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net((features - self.mean) / self.std).squeeze(-1)


def all_candidate_features(policy, prefs: Preferences, batch: int = 64) -> torch.Tensor:
    """Features [S, K, F] of every candidate of every state (the policy frozen): prefix state, chunk states,
    decoded actions."""
    from vla_ros.alignment.scoring import candidate_features, per_candidate, state_prefixes

    def features(prefix: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        actions = torch.from_numpy(policy.tokenizer.decode(ids.numpy())).float().reshape(len(ids), -1)
        return torch.cat([candidate_features(policy, prefix, ids), actions], -1)

    return per_candidate(features, state_prefixes(policy, prefs), torch.from_numpy(prefs.tokens), batch)


def pair_accuracy(rewards: torch.Tensor, pairs: np.ndarray) -> float:
    """Share of pairs whose preferred candidate gets the higher reward; rewards [S, K], pairs [N, 3]."""
    if len(pairs) == 0:
        return float("nan")
    s, w, l = (torch.from_numpy(pairs[:, i]) for i in range(3))
    return float((rewards[s, w] > rewards[s, l]).float().mean())


def train_reward_model(policy_dir: str | Path, prefs_path: str | Path, out_dir: str | Path,
                       recipe: RewardRecipe | None = None, progress: bool = True) -> dict:
    """Fit the Bradley–Terry head on the pairs of `prefs_path`; write the model and a report to `out_dir`."""
    from safetensors.torch import save_file
    from tqdm import tqdm

    from vla_ros.alignment.scoring import held_out_states
    from vla_ros.policy.modeling_vla import VLAPolicy

    recipe = recipe or RewardRecipe()
    started = time.perf_counter()
    torch.manual_seed(recipe.seed)
    prefs = load_many(prefs_path)
    if len(prefs.pairs) == 0:
        raise ValueError(f"{prefs_names(prefs_path)} holds no preference pairs")
    identity = check_base(prefs, prefs_path, policy_dir)
    policy = VLAPolicy.from_pretrained(policy_dir).eval()
    features = all_candidate_features(policy, prefs)
    valid_states = held_out_states(prefs, recipe.held_out, recipe.seed)
    in_valid = valid_states[prefs.pairs[:, 0]]
    train_pairs, valid_pairs = prefs.pairs[~in_valid], prefs.pairs[in_valid]
    head = RewardHead(features.shape[-1], recipe.hidden)
    flat = features.reshape(-1, features.shape[-1])
    head.mean.copy_(flat.mean(0))
    head.std.copy_(flat.std(0).clamp(min=1e-4))
    optimizer = torch.optim.AdamW(head.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    s, w, l = (torch.from_numpy(train_pairs[:, i]) for i in range(3))
    history = {"epoch": [], "loss": [], "train_accuracy": [], "valid_accuracy": []}
    for epoch in tqdm(range(recipe.epochs), desc="reward model", unit="epoch", disable=not progress):
        head.train()
        rewards = head(features)
        loss = -F.logsigmoid(rewards[s, w] - rewards[s, l]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if (epoch + 1) % 10 == 0 or epoch + 1 == recipe.epochs:
            with torch.no_grad():
                rewards = head.eval()(features)
            history["epoch"].append(epoch + 1)
            history["loss"].append(float(loss.detach()))
            history["train_accuracy"].append(pair_accuracy(rewards, train_pairs))
            history["valid_accuracy"].append(pair_accuracy(rewards, valid_pairs))
    with torch.no_grad():
        rewards = head.eval()(features)
    kinds = np.array(prefs.pair_kind)
    report = {
        "policy": str(policy_dir), "base_identity": identity, "prefs": prefs_names(prefs_path),
        "recipe": asdict(recipe),
        "features": int(features.shape[-1]), "train_pairs": int(len(train_pairs)), "valid_pairs": int(len(valid_pairs)),
        "train_accuracy": pair_accuracy(rewards, train_pairs), "valid_accuracy": pair_accuracy(rewards, valid_pairs),
        "valid_accuracy_by_kind": {kind: pair_accuracy(rewards, prefs.pairs[in_valid & (kinds == kind)])
                                   for kind in PAIR_KINDS},
        "seconds": round(time.perf_counter() - started, 1),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(out_dir / WEIGHTS))
    (out_dir / CONFIG).write_text(json.dumps({"format": "vla-ros-reward-1", "hidden": recipe.hidden, **report},
                                             indent=2) + "\n")
    _plot(out_dir / "reward_model.png", history)
    return report


def load_reward_model(directory: str | Path, policy_dir: str | Path) -> RewardHead:
    """The reward head saved in `directory`, checked against the base policy it was trained on."""
    from safetensors.torch import load_file

    from vla_ros.policy.adapters import base_identity

    directory = Path(directory)
    if not (directory / CONFIG).is_file() or not (directory / WEIGHTS).is_file():
        raise FileNotFoundError(f"{directory} is not a reward model (it needs {CONFIG} and {WEIGHTS}); train one "
                                f"with 'vla-ros prefs reward'")
    config = json.loads((directory / CONFIG).read_text())
    if config.get("base_identity") != base_identity(policy_dir):
        raise ValueError(f"reward model {directory} was trained on base policy {config.get('base_identity')}, not "
                         f"on {policy_dir}")
    head = RewardHead(int(config["features"]), int(config["hidden"]))
    head.load_state_dict(load_file(str(directory / WEIGHTS)))
    return head.eval()


def _plot(path: Path, history: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    left.plot(history["epoch"], history["loss"])
    left.set_xlabel("epoch")
    left.set_ylabel("Bradley–Terry loss")
    right.plot(history["epoch"], history["train_accuracy"], label="train pairs")
    right.plot(history["epoch"], history["valid_accuracy"], label="held-out episodes' pairs")
    right.set_xlabel("epoch")
    right.set_ylabel("pair accuracy")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
