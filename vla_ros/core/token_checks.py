"""The action decoder's acceptance rules for a token message, each failure with a counted reason key."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vla_ros.core.action_tokens import ActionTokens, TokenMessageError, task_hash, unpack_action_tokens, validate

REASON_KEYS = ("malformed", "out_of_range", "foreign_tokenizer", "no_task", "wrong_task")


@dataclass(frozen=True)
class TokenVerdict:
    tokens: ActionTokens | None
    reason_key: str = ""
    reason: str = ""


def check_token_message(dims, data_offset: int, data, *, vocab_size: int, tokens_per_chunk: int,
                        identity: str, task: str, token_ranges=None) -> TokenVerdict:
    """Accept a token message for decoding, or say which rule it broke.

    `token_ranges` (low[T], high[T]) narrows the vocabulary per position, as residual VQ needs: a fine-level
    id in a coarse position is as unusable as an id outside the vocabulary.
    """
    try:
        parsed = unpack_action_tokens(dims, data_offset, data)
    except TokenMessageError as exc:
        return TokenVerdict(None, "malformed", exc.reason)
    try:
        validate(parsed.tokens, vocab_size, tokens_per_chunk)
    except TokenMessageError as exc:
        return TokenVerdict(None, "out_of_range", exc.reason)
    if token_ranges is not None:
        low, high = (np.asarray(bound) for bound in token_ranges)
        bad = np.flatnonzero((parsed.tokens < low) | (parsed.tokens >= high))
        if bad.size:
            position = int(bad[0])
            return TokenVerdict(None, "out_of_range", f"token id {int(parsed.tokens[position])} at position {position} "
                                                      f"is outside [{low[position]}, {high[position]})")
    if parsed.identity != identity.lower():
        return TokenVerdict(None, "foreign_tokenizer",
                            f"tokens come from tokenizer {parsed.identity} but this decoder loaded {identity.lower()}")
    if not task:
        return TokenVerdict(None, "no_task", "tokens arrived while there is no current task")
    if parsed.task_hash != task_hash(task):
        return TokenVerdict(None, "wrong_task",
                            f"tokens belong to task hash {parsed.task_hash:08x}, not the current task {task!r}")
    return TokenVerdict(parsed)
