"""Percentile summaries of timing samples (latency, period jitter, arrival margin) for diagnostics and benchmarks."""

from __future__ import annotations

from collections import deque

import numpy as np


class Samples:
    """The last `maxlen` values of one measured quantity, in seconds."""

    def __init__(self, maxlen: int = 5000):
        self.values: deque[float] = deque(maxlen=maxlen)

    def add(self, value: float) -> None:
        self.values.append(float(value))

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(np.asarray(self.values) * 1e3, q)) if self.values else float("nan")

    def min_ms(self) -> float:
        return float(min(self.values) * 1e3) if self.values else float("nan")

    def summary(self, name: str, quantiles=(50, 95, 99)) -> dict[str, str]:
        out = {f"{name}_ms_p{q}": f"{self.percentile_ms(q):.2f}" for q in quantiles}
        out[f"{name}_ms_min"] = f"{self.min_ms():.2f}"
        out[f"{name}_count"] = str(len(self.values))
        return out


class Peak:
    """The largest value of one quantity over a node's life and when it happened (seconds, node clock).

    For the rare event a percentile hides: one slow inference or one late frame in an hour is what
    leaves the robot waiting, and its time finds it in the logs.
    """

    def __init__(self):
        self.value = float("-inf")
        self.at: float | None = None

    def add(self, value: float, at: float) -> None:
        if value > self.value:
            self.value, self.at = float(value), float(at)

    def summary(self, name: str) -> dict[str, str]:
        if self.at is None:
            return {}
        return {f"{name}_ms_max": f"{self.value * 1e3:.2f}", f"{name}_max_at": f"{self.at:.3f}"}


class StarvationLog:
    """Why the executor held, tick by tick, and what it was waiting on when a chunk came latest.

    `hold(reason)` for every tick without a command, `command(margin_s)` for every tick with one (the
    arrival margin when the tick adopted a chunk, else None). The reasons of the holds since the last
    command are kept with the most negative margin seen: the diagnostics then say not only how late
    the latest chunk was but what the executor was waiting for meanwhile (starved, a chunk too old to
    execute, stale joint states, …).

    With the worst margin also go, when given, where the late chunk lost its time: its observation's age
    when it arrived (`age_s`: frame → chunk at the executor) and the silence before it (`gap_s`: since the
    previous chunk of the task arrived), and the time it happened (`at_s`, the node clock, to find it in
    the logs). A long gap with a young chunk means nothing upstream produced a chunk (no usable frame, the
    policy stalled before taking one); an old chunk means it was computed from an old frame or held up on
    its way.
    """

    def __init__(self):
        self.holds: dict[str, int] = {}
        self.worst_margin_s = float("inf")
        self.worst_reasons: tuple[str, ...] = ()
        self.worst_detail: dict[str, float] = {}
        self._current: dict[str, int] = {}

    def hold(self, reason: str) -> None:
        self.holds[reason] = self.holds.get(reason, 0) + 1
        self._current[reason] = self._current.get(reason, 0) + 1

    def command(self, margin_s: float | None, age_s: float | None = None, gap_s: float | None = None,
                at_s: float | None = None) -> None:
        if margin_s is not None and margin_s < self.worst_margin_s:
            self.worst_margin_s = margin_s
            self.worst_reasons = tuple(f"{reason} ×{count}" for reason, count in self._current.items())
            detail = {"chunk_age_at_arrival_ms": age_s, "gap_before_ms": gap_s}
            self.worst_detail = {key: value * 1e3 for key, value in detail.items() if value is not None}
            if at_s is not None:
                self.worst_detail["at"] = at_s
        self._current = {}

    def summary(self) -> dict[str, str]:
        out = {f"hold_ticks[{reason}]": str(count) for reason, count in sorted(self.holds.items())}
        if self.worst_margin_s != float("inf"):
            out["chunk_arrival_margin_worst_ms"] = f"{self.worst_margin_s * 1e3:.2f}"
            out["chunk_arrival_margin_worst_waited_on"] = "; ".join(self.worst_reasons) or "nothing (no hold)"
            for key, value in self.worst_detail.items():
                out[f"chunk_arrival_margin_worst_{key}"] = f"{value:.3f}" if key == "at" else f"{value:.2f}"
        return out
