"""Instruction rules: decode, normalize, recognise stop requests, and reject bad text with a reason."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from vla_ros.core.settings import Settings, positive, setting

DEFAULT_MAX_CHARS = 512

IDLE_TASK = ""

# "stop", "Cancel!", "please stop now", "abort the task", "halt everything" ...
_STOP_PATTERN = re.compile(
    r"^(?:please\s+)?(?:stop|cancel|halt|abort|freeze|idle)"
    r"(?:\s+(?:it|that|this|now|moving|motion|everything|the\s+task|task|the\s+robot|robot))*"
    r"(?:\s+please)?$"
)
_TRAILING_PUNCTUATION = ".!?;,"


@dataclass(frozen=True)
class InstructionDecision:
    """What the listener does with one received instruction."""

    accepted: bool
    task: str = IDLE_TASK
    reason: str = ""

    @property
    def is_stop(self) -> bool:
        return self.accepted and self.task == IDLE_TASK


def decode_utf8(payload: bytes) -> str:
    """Strict UTF-8 decode; raises ValueError naming the first bad byte."""
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = payload[exc.start : exc.start + 1].hex()
        raise ValueError(f"instruction is not valid UTF-8 (byte 0x{bad} at offset {exc.start})") from None


def normalize_instruction(text: str) -> str:
    """Canonical form of an instruction: NFKC, no control characters, single spaces, lower case, no end punctuation.

    Idempotent: the pass is repeated until nothing changes (". ." loses its last "." only once the space before
    it is gone; casefolding can leave a string that NFKC composes again), which takes at most a few passes.
    """
    for _ in range(8):
        cleaned = _normalize_once(text)
        if cleaned == text:
            break
        text = cleaned
    return text


def _normalize_once(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    # Control and format characters (C*) become spaces so "pick\tup" stays two words.
    text = "".join(" " if unicodedata.category(ch).startswith("C") else ch for ch in text)
    text = " ".join(text.split()).casefold()
    return text.rstrip(_TRAILING_PUNCTUATION).rstrip()


def is_stop_request(normalized: str) -> bool:
    """True for "stop", "cancel", "please halt now" and similar requests to go idle."""
    return bool(_STOP_PATTERN.match(normalized))


def interpret_instruction(payload: bytes | str, max_chars: int = DEFAULT_MAX_CHARS) -> InstructionDecision:
    """Turn one raw instruction into an accepted task, the idle task (stop), or a rejection with its reason."""
    if isinstance(payload, bytes):
        try:
            text = decode_utf8(payload)
        except ValueError as exc:
            return InstructionDecision(accepted=False, reason=str(exc))
    else:
        text = payload
    if len(text) > max_chars:
        return InstructionDecision(
            accepted=False,
            reason=f"instruction is {len(text)} characters long; at most {max_chars} are accepted (parameter max_chars)",
        )
    normalized = normalize_instruction(text)
    if not normalized:
        return InstructionDecision(
            accepted=False, reason="instruction is empty once whitespace and control characters are removed"
        )
    if is_stop_request(normalized):
        return InstructionDecision(accepted=True, task=IDLE_TASK)
    return InstructionDecision(accepted=True, task=normalized)


@dataclass(frozen=True)
class InstructionSettings(Settings):
    """instruction_listener's settings."""

    max_chars: int = setting(DEFAULT_MAX_CHARS, "Longest instruction accepted, in characters.", read_only=False,
                             check=positive)
