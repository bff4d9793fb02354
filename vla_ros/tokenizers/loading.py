"""`load_tokenizer(dir)`: rebuild whichever kind of tokenizer a directory holds."""

from __future__ import annotations

from pathlib import Path

from vla_ros.tokenizers.base import ActionTokenizer, read_pretrained
from vla_ros.tokenizers.configuration_tokenizers import CONFIG_CLASSES
from vla_ros.tokenizers.modeling_bins import BinTokenizer
from vla_ros.tokenizers.modeling_vqvae import ResidualVQTokenizer, VQVAETokenizer
from vla_ros.tokenizers.normalization import ActionNormalizer

TOKENIZER_CLASSES: dict[str, type[ActionTokenizer]] = {
    "vqvae": VQVAETokenizer,
    "rvq": ResidualVQTokenizer,
    "bins": BinTokenizer,
}
KINDS = tuple(TOKENIZER_CLASSES)


def load_tokenizer(directory: str | Path) -> ActionTokenizer:
    """Load a tokenizer saved with `save_pretrained`, dispatching on `kind` in its config.json."""
    config_values, state = read_pretrained(directory)
    kind = config_values.get("kind")
    if kind not in TOKENIZER_CLASSES:
        raise ValueError(f"{directory}/config.json has kind {kind!r}; known kinds are {', '.join(KINDS)}")
    return TOKENIZER_CLASSES[kind]._build(config_values, state)


def new_tokenizer(kind: str, normalizer: ActionNormalizer, **overrides) -> ActionTokenizer:
    """A fresh (untrained) tokenizer of `kind` with default hyper-parameters, some overridden."""
    if kind not in TOKENIZER_CLASSES:
        raise ValueError(f"unknown tokenizer kind {kind!r}; known kinds are {', '.join(KINDS)}")
    return TOKENIZER_CLASSES[kind](CONFIG_CLASSES[kind](**overrides), normalizer)
