"""The `/vla/action_tokens` message layout: token ids plus the metadata that lets a consumer reject them.

The message is a standard `std_msgs/Int32MultiArray`. Metadata lives in the array's front
padding, the `layout.data_offset` words before the tokens (all int32; unsigned values are
stored as their two's-complement int32 bit pattern):

    word 0  MAGIC_VERSION  0x564C4101: ASCII "VLA" + layout version 1
    word 1  stamp sec      observation stamp, seconds (builtin_interfaces/Time.sec)
    word 2  stamp nanosec  observation stamp, nanoseconds in [0, 1e9)
    word 3  identity high  upper 32 bits of the tokenizer identity (16 hex digits = 64 bits)
    word 4  identity low   lower 32 bits of the tokenizer identity
    word 5  task hash      CRC32 of the normalized task string (see `normalize_task`)

so `layout.data_offset == 6` and `data[6:]` are the T token ids of one chunk. `layout.dim` is
`[("chunk", 1, T), ("token", T, 1)]` in the ROS convention (`dim[i].stride` is the size of the
sub-array from dimension i inward), so `len(data) == data_offset + dim[0].stride`.

This module is pure numpy: the policy node packs, the decoder node unpacks and validates, and
both convert `TokenMessageFields` to and from the rclpy message themselves.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import numpy as np

MAGIC_VERSION = 0x564C4101
HEADER_WORDS = 6
CHUNK_LABEL = "chunk"
TOKEN_LABEL = "token"
IDENTITY_HEX_DIGITS = 16


class TokenMessageError(ValueError):
    """A token message that must be rejected; `reason` is one sentence saying why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class TokenMessageFields:
    """The parts of an `Int32MultiArray` this layout fills: `layout.dim`, `layout.data_offset`, `data`."""

    dims: list[tuple[str, int, int]]  # (label, size, stride) per MultiArrayDimension
    data_offset: int
    data: np.ndarray  # int32, header words then tokens


@dataclass(frozen=True)
class ActionTokens:
    """One decoded-from-the-wire chunk of tokens with its metadata."""

    tokens: np.ndarray  # int64 [T]
    stamp_ns: int
    task_hash: int  # unsigned 32-bit
    identity: str  # 16 lower-case hex digits


def normalize_task(task: str) -> str:
    """Lower-case, trimmed, single-spaced: the form both ends hash."""
    return re.sub(r"\s+", " ", task.strip().lower())


def task_hash(task: str) -> int:
    """CRC32 (unsigned) of the normalized task string."""
    return zlib.crc32(normalize_task(task).encode("utf-8")) & 0xFFFFFFFF


def _as_int32(value: int) -> int:
    """Reinterpret an unsigned 32-bit value as the int32 the message carries."""
    return value - (1 << 32) if value >= (1 << 31) else value


def _as_uint32(word: int) -> int:
    return int(word) & 0xFFFFFFFF


def _identity_words(identity: str) -> tuple[int, int]:
    if len(identity) != IDENTITY_HEX_DIGITS or not re.fullmatch(r"[0-9a-fA-F]+", identity):
        raise ValueError(f"tokenizer identity {identity!r} must be {IDENTITY_HEX_DIGITS} hex digits")
    value = int(identity, 16)
    return value >> 32, value & 0xFFFFFFFF


def pack_action_tokens(tokens, stamp_ns: int, task: str, identity: str) -> TokenMessageFields:
    """Lay out one chunk of token ids and its metadata as `Int32MultiArray` fields."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 1 or tokens.size == 0:
        raise ValueError(f"tokens must be a non-empty 1-D array, got shape {tokens.shape}")
    if not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"tokens must be integers, got {tokens.dtype}")
    if tokens.min() < 0 or tokens.max() > np.iinfo(np.int32).max:
        raise ValueError("tokens must lie in [0, 2**31)")
    if stamp_ns < 0 or stamp_ns // 1_000_000_000 > np.iinfo(np.int32).max:
        raise ValueError(f"stamp {stamp_ns} ns is outside what builtin_interfaces/Time holds")
    high, low = _identity_words(identity)
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    header = [MAGIC_VERSION, sec, nanosec, _as_int32(high), _as_int32(low), _as_int32(task_hash(task))]
    data = np.concatenate([np.asarray(header, dtype=np.int64), tokens.astype(np.int64)]).astype(np.int32)
    size = int(tokens.size)
    return TokenMessageFields(
        dims=[(CHUNK_LABEL, 1, size), (TOKEN_LABEL, size, 1)], data_offset=HEADER_WORDS, data=data
    )


def validate(tokens, vocab_size: int, tokens_per_chunk: int) -> None:
    """Raise `TokenMessageError` unless `tokens` is one chunk of ids in [0, vocab_size)."""
    tokens = np.asarray(tokens)
    if tokens.shape != (tokens_per_chunk,):
        raise TokenMessageError(
            f"the message carries {tokens.size} tokens but the tokenizer expects {tokens_per_chunk} per chunk"
        )
    if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab_size):
        bad = int(tokens[(tokens < 0) | (tokens >= vocab_size)][0])
        raise TokenMessageError(f"token id {bad} is outside the tokenizer's vocabulary [0, {vocab_size})")


def unpack_action_tokens(
    dims,
    data_offset: int,
    data,
    *,
    vocab_size: int | None = None,
    tokens_per_chunk: int | None = None,
    expected_identity: str | None = None,
    expected_task: str | None = None,
) -> ActionTokens:
    """Read and check `Int32MultiArray` fields; raise `TokenMessageError` with the reason when malformed.

    The structural checks always run. The optional arguments add the consumer's checks: ids
    within `vocab_size` and exactly `tokens_per_chunk` of them, the tokenizer identity, and the
    current task (an empty `expected_task` means the consumer has no task, so every message is refused).
    """
    data = np.asarray(data)
    dims = [tuple(d) for d in dims]
    if data_offset != HEADER_WORDS:
        raise TokenMessageError(
            f"layout.data_offset is {data_offset} but this layout puts {HEADER_WORDS} metadata words first"
        )
    if data.size < HEADER_WORDS:
        raise TokenMessageError(f"the message has {data.size} words, fewer than the {HEADER_WORDS} metadata words")
    if _as_uint32(data[0]) != MAGIC_VERSION:
        raise TokenMessageError(
            f"magic/version word is {_as_uint32(data[0]):#010x}, expected {MAGIC_VERSION:#010x} (action tokens v1)"
        )
    if len(dims) != 2 or dims[0][0] != CHUNK_LABEL or dims[1][0] != TOKEN_LABEL:
        raise TokenMessageError(
            f"layout.dim labels are {[d[0] for d in dims]}, expected ['{CHUNK_LABEL}', '{TOKEN_LABEL}']"
        )
    (_, chunks, chunk_stride), (_, size, token_stride) = dims
    if chunks != 1 or token_stride != 1 or chunk_stride != size or size < 1:
        raise TokenMessageError(
            f"layout.dim {dims} does not describe one chunk of tokens (expected sizes 1×T with strides T and 1)"
        )
    if data.size != data_offset + chunk_stride:
        raise TokenMessageError(
            f"layout says {data_offset} metadata words + {chunk_stride} tokens but data has {data.size} words"
        )
    tokens = data[data_offset:].astype(np.int64)
    if vocab_size is not None or tokens_per_chunk is not None:
        validate(
            tokens,
            vocab_size if vocab_size is not None else np.iinfo(np.int32).max,
            tokens_per_chunk if tokens_per_chunk is not None else tokens.size,
        )
    nanosec = int(data[2])
    if not 0 <= nanosec < 1_000_000_000 or int(data[1]) < 0:
        raise TokenMessageError(f"stamp ({int(data[1])} s, {nanosec} ns) is not a valid observation time")
    identity = f"{(_as_uint32(data[3]) << 32) | _as_uint32(data[4]):016x}"
    received_task = _as_uint32(data[5])
    if expected_identity is not None and identity != expected_identity.lower():
        raise TokenMessageError(
            f"tokens come from tokenizer {identity} but this decoder loaded {expected_identity.lower()}"
        )
    if expected_task is not None:
        if not normalize_task(expected_task):
            raise TokenMessageError("tokens arrived while there is no current task")
        if received_task != task_hash(expected_task):
            raise TokenMessageError(
                f"tokens belong to task hash {received_task:#010x}, not the current task {normalize_task(expected_task)!r}"
            )
    return ActionTokens(
        tokens=tokens, stamp_ns=int(data[1]) * 1_000_000_000 + nanosec, task_hash=received_task, identity=identity
    )
