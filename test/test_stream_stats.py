"""StreamStats is written by a node's subscription thread while its diagnostics timer reads it."""

from __future__ import annotations

import sys
import threading
import time

from vla_ros.core.stream_stats import StreamStats


def test_reading_the_summary_while_another_thread_records_never_raises():
    # camera_ingest died mid-run with "deque mutated during iteration" before the lock.
    stats = StreamStats(window_s=60.0, max_samples=2000)
    stop = threading.Event()

    def record():
        i = 0
        while not stop.is_set():
            stats.accept(time.monotonic(), 0.001)
            if i % 7 == 0:
                stats.drop(f"reason_{i % 50}", "bad frame")
            i += 1

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: the race shows within a second
    writer = threading.Thread(target=record, daemon=True)
    writer.start()
    try:
        deadline = time.monotonic() + 1.5
        summaries = 0
        while time.monotonic() < deadline:
            summary = stats.summary(time.monotonic())
            summaries += 1
            assert int(summary["received"]) >= int(summary["accepted"])
    finally:
        stop.set()
        writer.join(timeout=5)
        sys.setswitchinterval(interval)
    assert summaries > 10 and stats.accepted > 0


def test_rate_and_percentiles_over_the_window():
    stats = StreamStats(window_s=1.0)
    for k in range(11):
        stats.accept(10.0 + k * 0.1, duration_s=0.002 * (k + 1))
    stats.drop("stale", "frame 2 s old")
    summary = stats.summary(11.0)
    assert float(summary["rate_hz"]) == 10.0
    assert summary["dropped_stale"] == "1" and summary["last_error"] == "frame 2 s old"
    assert summary["received"] == "12" and summary["accepted"] == "11"
