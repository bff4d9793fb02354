"""Following a JointTrajectory the way ros2_control's JointTrajectoryController does, without ROS.

A new trajectory replaces the old one and starts from the current desired positions; the desired
positions move linearly to each point so that it is reached at `start + time_from_start`; after the
last point they stay there. A zero header stamp means "start now"; a stamp in the future delays the start.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TrajectoryPoint:
    positions: np.ndarray
    time_s: float  # time_from_start


class TrajectoryFollower:
    def __init__(self, initial: np.ndarray):
        self._desired = np.asarray(initial, dtype=np.float64).copy()
        self._start_s = 0.0
        self._origin = self._desired.copy()
        self._points: list[TrajectoryPoint] = []

    def reset(self, positions: np.ndarray) -> None:
        self._desired = np.asarray(positions, dtype=np.float64).copy()
        self._points = []

    def command(self, now_s: float, points: list[TrajectoryPoint], start_s: float | None = None) -> None:
        """Replace the trajectory; `start_s` None (a zero stamp) or in the past starts it now."""
        self._origin = self.sample(now_s)
        self._start_s = now_s if start_s is None else max(now_s, start_s)
        self._points = sorted(points, key=lambda p: p.time_s)

    def goal(self) -> np.ndarray:
        """Where the current trajectory ends (the positions it holds once done)."""
        return (self._points[-1].positions if self._points else self._desired).copy()

    def sample(self, now_s: float) -> np.ndarray:
        """Desired positions at `now_s`."""
        if not self._points:
            return self._desired.copy()
        elapsed = now_s - self._start_s
        previous_positions, previous_time = self._origin, 0.0
        for point in self._points:
            if elapsed < point.time_s:
                span = point.time_s - previous_time
                alpha = 0.0 if span <= 0 else max(0.0, (elapsed - previous_time) / span)
                self._desired = previous_positions + alpha * (point.positions - previous_positions)
                return self._desired.copy()
            previous_positions, previous_time = point.positions, point.time_s
        self._desired = self._points[-1].positions.copy()
        self._points = []
        return self._desired.copy()
