"""argparse `type=` checks shared by the subcommands: one clear message naming the bad value."""

from __future__ import annotations

import argparse
import math


def _number(text: str, kind: type, minimum: float, strict: bool):
    try:
        value = kind(text)
    except ValueError:
        noun = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {noun}, got '{text}'") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
    if value < minimum or (strict and value == minimum):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise argparse.ArgumentTypeError(f"expected a number {bound}, got {text}")
    return value


def positive_int(text: str) -> int:
    return _number(text, int, 1, strict=False)


def non_negative_int(text: str) -> int:
    return _number(text, int, 0, strict=False)


def positive_float(text: str) -> float:
    return _number(text, float, 0.0, strict=True)


def non_negative_float(text: str) -> float:
    return _number(text, float, 0.0, strict=False)


def unit_float(text: str) -> float:
    """A share: a number in [0, 1]."""
    value = _number(text, float, 0.0, strict=False)
    if value > 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text}")
    return value


def check_training_paths(command: str, data, out) -> None:
    """`--data` is a data set vla-ros reads and `--out` is not a file, else one clear exit naming the flag."""
    from vla_ros.data.formats import dataset_kind  # noqa: PLC0415

    try:
        dataset_kind(data)
    except ValueError as exc:
        raise SystemExit(f"vla-ros {command}: --data {exc}")
    if out.exists() and not out.is_dir():
        raise SystemExit(f"vla-ros {command}: --out {out} is a file; give a directory")
