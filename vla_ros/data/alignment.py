"""Checking recorded streams and aligning them to control steps by their stamps (pure numpy).

An episode of a training set has one row per control step: the action executed at the step's time, and the
newest camera frame and joint state taken at or before it (what the policy would have seen). A step whose
newest frame is older than the contract's tolerance, a stream that goes silent, stamps that go backwards and a
stream at the wrong rate make the episode bad; `StreamProblem` says which stream and how, in one sentence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class StreamProblem(ValueError):
    """Why an episode cannot become training data (the message names the stream)."""


@dataclass(frozen=True)
class Alignment:
    indices: np.ndarray  # per step: the index of the newest sample at or before the step
    errors_s: np.ndarray  # per step: step time − that sample's stamp (>= 0)


def check_order(name: str, stamps: np.ndarray) -> None:
    """Stamps must not go backwards."""
    steps = np.diff(stamps)
    if np.any(steps < 0):
        back = int(np.sum(steps < 0))
        raise StreamProblem(f"{name}: header stamps go backwards {back} time{'s' * (back > 1)} (by up to "
                            f"{-steps.min() * 1e3:.0f} ms): out-of-order stamps")


def check_gaps(name: str, stamps: np.ndarray, start_s: float, end_s: float, max_gap_s: float) -> None:
    """No silence longer than `max_gap_s` within [start_s, end_s], the episode's edges included."""
    inside = stamps[(stamps >= start_s) & (stamps <= end_s)]
    if len(inside) == 0:
        raise StreamProblem(f"{name}: no message between {0.0:.2f} s and {end_s - start_s:.2f} s of the episode")
    edges = np.concatenate([[start_s], inside, [end_s]])
    gaps = np.diff(edges)
    worst = int(np.argmax(gaps))
    if gaps[worst] > max_gap_s:
        raise StreamProblem(f"{name}: a gap of {gaps[worst]:.2f} s at {edges[worst] - start_s:.2f} s into the episode "
                            f"(max_gap_s {max_gap_s:g})")


def measured_rate(stamps: np.ndarray) -> float:
    """Messages per second from the median spacing (robust to a few late or early ones)."""
    steps = np.diff(stamps)
    steps = steps[steps > 0]
    return float(1.0 / np.median(steps)) if len(steps) else 0.0


def check_rate(name: str, stamps: np.ndarray, rate_hz: float, tolerance: float, at_least: bool = False) -> float:
    """The stream's rate must be `rate_hz` within `tolerance` (relative), or at least that with `at_least`."""
    measured = measured_rate(stamps)
    low, high = rate_hz * (1 - tolerance), rate_hz * (1 + tolerance)
    if measured < low or (not at_least and measured > high):
        wanted = f"at least {low:.2f}" if at_least else f"{rate_hz:g} ± {tolerance:.0%}"
        raise StreamProblem(f"{name}: {measured:.2f} messages per second, the contract needs {wanted} (wrong rate)")
    return measured


def align(name: str, sample_stamps: np.ndarray, step_times: np.ndarray, tolerance_s: float) -> Alignment:
    """For each step, the newest sample at or before it; a missing or too old sample is a problem."""
    indices = np.searchsorted(sample_stamps, step_times, side="right") - 1
    if np.any(indices < 0):
        first = int(np.argmax(indices < 0))
        raise StreamProblem(f"{name}: no message at or before control step {first}")
    errors = step_times - sample_stamps[indices]
    worst = int(np.argmax(errors))
    if errors[worst] > tolerance_s:
        raise StreamProblem(f"{name}: the newest message at control step {worst} is {errors[worst] * 1e3:.0f} ms old "
                            f"(tolerance_s {tolerance_s:g})")
    return Alignment(indices, errors)


def control_grid(start_s: float, end_s: float, period_s: float) -> np.ndarray:
    """Step times every `period_s` from `start_s` while a full step still fits before `end_s`."""
    count = int(np.floor((end_s - start_s) / period_s + 1e-9))
    return start_s + period_s * np.arange(max(0, count))
