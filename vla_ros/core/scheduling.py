"""When the `vla_policy` node infers: pure decisions and statistics, no rclpy (unit-testable anywhere).

The node infers whenever it has a non-empty task and an image it has not used yet that is younger
than `max_image_age`, at most `inference_rate` times a second.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from vla_ros.core.settings import CONTROL_RATE_HZ

INFER, NO_TASK, NO_IMAGE, STALE, RATE_LIMITED = "infer", "no_task", "no_image", "stale", "rate_limited"


@dataclass(frozen=True)
class Decision:
    action: str  # one of INFER, NO_TASK, NO_IMAGE, STALE, RATE_LIMITED
    wait_s: float = 0.0  # for RATE_LIMITED: how long until inference is allowed again


def decide(task: str, image_sequence: int, used_sequence: int, image_age_s: float, max_image_age_s: float,
           since_last_inference_s: float, inference_rate_hz: float) -> Decision:
    """What to do with the newest inputs. `image_sequence` counts received frames (0 = none yet)."""
    if image_sequence <= used_sequence:
        return Decision(NO_IMAGE)
    if not task.strip():
        return Decision(NO_TASK)
    if max_image_age_s > 0 and image_age_s > max_image_age_s:
        return Decision(STALE)
    period = 1.0 / inference_rate_hz
    if since_last_inference_s < period:
        return Decision(RATE_LIMITED, period - since_last_inference_s)
    return Decision(INFER)


def episode_step(elapsed_s: float, control_hz: float = CONTROL_RATE_HZ) -> int:
    """The episode backend's chunk index for a frame taken `elapsed_s` after the task started.

    The first control step at or after the frame: the executor runs the chunk's step i in the interval
    [stamp + i·dt, stamp + (i+1)·dt), so with ticks on the task's 5 Hz grid recorded step k + i runs at
    the task start + (k + i) steps, with no step repeated or skipped.
    """
    return max(0, int(np.ceil(elapsed_s * control_hz - 1e-6)))


class LatencyWindow:
    """p50/p95 over the most recent inference latencies."""

    def __init__(self, size: int = 200):
        self._values: deque[float] = deque(maxlen=size)

    def add(self, seconds: float) -> None:
        self._values.append(seconds)

    def percentiles_ms(self) -> tuple[float, float] | None:
        if not self._values:
            return None
        values = np.asarray(self._values) * 1e3
        return float(np.percentile(values, 50)), float(np.percentile(values, 95))
