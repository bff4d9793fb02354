"""Rolling statistics of a message stream for /diagnostics: rate, drops by reason, latency percentiles."""

from __future__ import annotations

import threading
from collections import Counter, deque

import numpy as np


class StreamStats:
    """Counts and timings of one stream over a sliding time window (times in seconds, any monotonic clock).

    Thread-safe: a node records from its subscription thread while its diagnostics timer reads (iterating the
    window while another thread appends raised "deque mutated during iteration" and killed camera_ingest).
    """

    def __init__(self, window_s: float = 5.0, max_samples: int = 2000):
        self.window_s = window_s
        self._events: deque[tuple[float, float]] = deque(maxlen=max_samples)  # (time, duration)
        self.received = 0
        self.accepted = 0
        self.drops: Counter[str] = Counter()
        self.last_error = ""
        self._lock = threading.Lock()

    def accept(self, now: float, duration_s: float = 0.0) -> None:
        with self._lock:
            self.received += 1
            self.accepted += 1
            self._events.append((now, duration_s))

    def drop(self, reason_key: str, message: str = "") -> None:
        with self._lock:
            self.received += 1
            self.drops[reason_key] += 1
            self.last_error = message or reason_key

    def _recent(self, now: float) -> list[tuple[float, float]]:
        with self._lock:
            events = list(self._events)
        return [event for event in events if now - event[0] <= self.window_s]

    def rate_hz(self, now: float) -> float:
        recent = self._recent(now)
        if len(recent) < 2:
            return 0.0
        span = recent[-1][0] - recent[0][0]
        return (len(recent) - 1) / span if span > 0 else 0.0

    def duration_percentiles_ms(self, now: float, quantiles=(50, 95)) -> dict[int, float]:
        recent = self._recent(now)
        if not recent:
            return {q: float("nan") for q in quantiles}
        values = np.array([duration for _, duration in recent]) * 1e3
        return {q: float(np.percentile(values, q)) for q in quantiles}

    def summary(self, now: float) -> dict[str, str]:
        """Key/value pairs for a DiagnosticStatus."""
        p = self.duration_percentiles_ms(now)
        rate = self.rate_hz(now)
        with self._lock:
            received, accepted, last_error, drops = self.received, self.accepted, self.last_error, dict(self.drops)
        values = {
            "rate_hz": f"{rate:.2f}",
            "received": str(received),
            "accepted": str(accepted),
            "dropped": str(sum(drops.values())),
            "processing_ms_p50": f"{p[50]:.2f}",
            "processing_ms_p95": f"{p[95]:.2f}",
            "last_error": last_error,
        }
        values.update({f"dropped_{key}": str(count) for key, count in sorted(drops.items())})
        return values
