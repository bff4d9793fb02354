"""`vla-ros tokenizer compare`: every tokenizer on the same held-out episodes, as a markdown table and JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vla_ros.tokenizers.base import ActionTokenizer
from vla_ros.tokenizers.chunking import chunks_from_episodes
from vla_ros.tokenizers.metrics import reconstruction_errors
from vla_ros.tokenizers.training import token_usage

DIM_NAMES = ("dx", "dy", "dz", "droll", "dpitch", "dyaw")


def evaluate_reconstruction(tokenizer: ActionTokenizer, train_chunks: np.ndarray, heldout_chunks: np.ndarray) -> dict:
    """Held-out reconstruction errors plus codebook usage on held-out and training chunks."""
    heldout_tokens = tokenizer.encode(heldout_chunks)
    return {
        "kind": tokenizer.kind,
        "identity": tokenizer.identity,
        "tokens_per_chunk": tokenizer.tokens_per_chunk,
        "vocab_size": tokenizer.vocab_size,
        "heldout": reconstruction_errors(heldout_chunks, tokenizer.decode(heldout_tokens), tokenizer.normalizer),
        "heldout_codebook": token_usage(tokenizer, heldout_tokens),
        "train_codebook": token_usage(tokenizer, tokenizer.encode(train_chunks)),
    }


def compare_tokenizers(tokenizers: dict[str, ActionTokenizer], train_episodes: Sequence, heldout_episodes: Sequence,
                       *, split: str = "heldout", fidelity_episodes: Sequence | None = None,
                       progress: bool = True) -> dict:
    """Reconstruction metrics on held-out chunks and closed-loop fidelity (skipped when `fidelity_episodes` is empty)."""
    from vla_ros.tokenizers.fidelity import closed_loop_fidelity, round_trip

    horizons = {t.chunk_size for t in tokenizers.values()}
    if len(horizons) != 1:
        raise ValueError(f"tokenizers disagree on the chunk size: {sorted(horizons)}")
    horizon = horizons.pop()
    train_chunks = chunks_from_episodes([e.actions for e in train_episodes], horizon)
    heldout_chunks = chunks_from_episodes([e.actions for e in heldout_episodes], horizon)
    result = {
        "horizon": horizon,
        "train_episodes": len(train_episodes),
        "heldout_episodes": len(heldout_episodes),
        "heldout_chunks": int(heldout_chunks.shape[0]),
        "tokenizers": {name: evaluate_reconstruction(t, train_chunks, heldout_chunks) for name, t in tokenizers.items()},
    }
    if fidelity_episodes:
        transforms = {"raw": None, **{name: round_trip(t) for name, t in tokenizers.items()}}
        result["closed_loop"] = closed_loop_fidelity(fidelity_episodes, transforms, split=split, horizon=horizon,
                                                     progress=progress)
    return result


def _usage_text(codebook: dict) -> str:
    if "levels" in codebook:
        return " / ".join(f"{l['usage']:.0%} (ppl {l['perplexity']:.0f})" for l in codebook["levels"])
    return f"{codebook['usage']:.0%} (ppl {codebook['perplexity']:.0f})"


def markdown_report(result: dict) -> str:
    """The comparison as markdown tables."""
    lines = [
        "# Action tokenizer comparison",
        "",
        f"Held-out: {result['heldout_episodes']} episodes, {result['heldout_chunks']} chunks of "
        f"{result['horizon']} steps; training set: {result['train_episodes']} episodes. nRMSE is in normalized "
        "units (error / half the q01–q99 range, no clipping of the reference); max error is the largest "
        "|error| over dims 0–5 in those units.",
        "",
        "| tokenizer | kind | tokens/chunk | vocab | " + " | ".join(f"nRMSE {d}" for d in DIM_NAMES)
        + " | nRMSE all | max err | gripper acc | codebook usage held-out (train) |",
        "|" + "---|" * (4 + len(DIM_NAMES) + 4),
    ]
    for name, t in result["tokenizers"].items():
        h = t["heldout"]
        lines.append(
            f"| {name} | {t['kind']} | {t['tokens_per_chunk']} | {t['vocab_size']} | "
            + " | ".join(f"{v:.4f}" for v in h["nrmse_per_dim"])
            + f" | {h['nrmse_mean']:.4f} | {h['max_abs_error_normalized']:.3f} | {h['gripper_accuracy']:.4f} | "
            f"{_usage_text(t['heldout_codebook'])} ({_usage_text(t['train_codebook'])}) |"
        )
    if "closed_loop" in result:
        loop = result["closed_loop"]
        families = sorted(loop["raw"]["per_family"])
        lines += [
            "",
            f"## Closed-loop fidelity (expert success, replanning every 3 steps, {loop['raw']['episodes']} episodes)",
            "",
            "Difference to raw actions in percentage points in brackets.",
            "",
            "| actions | " + " | ".join(families) + " | overall |",
            "|" + "---|" * (len(families) + 2),
        ]
        for name, r in loop.items():
            cells = []
            for f in families + ["overall"]:
                rate = r["overall"] if f == "overall" else r["per_family"][f]
                base = loop["raw"]["overall"] if f == "overall" else loop["raw"]["per_family"][f]
                cells.append(f"{rate:.1%}" if name == "raw" else f"{rate:.1%} ({(rate - base) * 100:+.1f})")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_comparison(result: dict, out_md: Path) -> tuple[Path, Path]:
    """Write the markdown file and a JSON with the same numbers next to it (same stem)."""
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text(markdown_report(result))
    out_json = out_md.with_suffix(".json")
    out_json.write_text(json.dumps(result, indent=2) + "\n")
    return out_md, out_json
