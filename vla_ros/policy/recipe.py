"""The default training recipe (no torch import: the CLI reads its defaults for --help)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainRecipe:
    """The default recipe is the one the shipped model was trained with (docs/policy.md)."""

    steps: int = 10000
    batch_size: int = 64
    learning_rate: float = 6e-4
    weight_decay: float = 0.05
    warmup_steps: int = 300
    plan_fraction: float = 0.5  # share of samples that generate the plan before the actions
    proprio_dropout: float = 0.1  # share of samples without joint positions (the node may have none)
    shift_pixels: int = 4  # random image translation, pixels
    paraphrase: bool = True
    extra_phrasings: bool = True  # also the EXTRA_TRAIN_TEMPLATES phrasings (sim/tasks.py); shipped since policy v5
    terse: bool = False  # also the training phrasings without "the" / "block" (training_data.terse_variants)
    generated_phrasings: int = 0  # also this many requests per task from the training request generator (sim.requests)
    # None: a sample's phrasing is drawn alike from the training phrasings and the generated requests; p in [0, 1]:
    # a generated request with probability p (where the task has any), else one of the training phrasings
    generated_share: float | None = None
    chunk_loss_weight: float = 1.0  # auxiliary regression of the normalized chunk (training only)
    grounding_loss_weight: float = 1.0  # auxiliary regression of the named objects' table positions
    role_loss_weight: float = 1.0  # instruction pools → the words naming the roles (only with film_queries ≥ 1)
    eval_every: int = 500
    checkpoint_every: int = 500
    seed: int = 0
    threads: int = 2
