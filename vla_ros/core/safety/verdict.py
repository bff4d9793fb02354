"""A rule's result: allow, scale(k) (slow the command down by k), or halt(reason); the most severe wins."""

from __future__ import annotations

from dataclasses import dataclass

ALLOW, SCALE, HALT = "allow", "scale", "halt"
_SEVERITY = {ALLOW: 0, SCALE: 1, HALT: 2}


@dataclass(frozen=True)
class Verdict:
    kind: str = ALLOW
    factor: float = 1.0  # for SCALE: the command is executed this much slower (time stretched by 1/factor)
    rule: str = ""
    reason: str = ""

    @property
    def halts(self) -> bool:
        return self.kind == HALT


def allow() -> Verdict:
    return Verdict()


def scale(factor: float, rule: str, reason: str) -> Verdict:
    factor = float(min(1.0, max(factor, 0.0)))
    return Verdict(SCALE, factor, rule, reason) if factor < 1.0 else Verdict()


def halt(rule: str, reason: str) -> Verdict:
    return Verdict(HALT, 0.0, rule, reason)


def most_severe(verdicts: list[Verdict]) -> Verdict:
    """Halt over scale over allow; among scales the smallest factor."""
    worst = Verdict()
    for verdict in verdicts:
        if _SEVERITY[verdict.kind] > _SEVERITY[worst.kind] or (
            verdict.kind == worst.kind == SCALE and verdict.factor < worst.factor
        ):
            worst = verdict
    return worst
