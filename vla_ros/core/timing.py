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
