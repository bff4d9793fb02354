"""Playback timing: when (on a monotonic wall clock) each bag message is due, for a rate and a start offset."""

from __future__ import annotations

from dataclasses import dataclass

from vla_ros.bags.errors import BagError

NS = 1_000_000_000


@dataclass(frozen=True)
class PlaybackOptions:
    rate: float = 1.0  # bag seconds per wall second
    start_offset_s: float = 0.0  # skip this much of the bag's start
    loop: bool = False

    def check(self, duration_ns: int) -> None:
        """Refuse options that cannot give a meaningful playback of a bag that lasts `duration_ns`."""
        if not self.rate > 0:
            raise BagError(f"rate {self.rate} is not accepted; give a factor > 0 (1 = recorded speed)")
        if self.start_offset_s < 0:
            raise BagError(f"start offset {self.start_offset_s} s is not accepted; give a value >= 0")
        if self.start_offset_s * NS > duration_ns:
            raise BagError(
                f"start offset {self.start_offset_s} s is past the end of the bag, which lasts "
                f"{duration_ns / NS:.3f} s"
            )

    def first_bag_time(self, bag_start_ns: int) -> int:
        return bag_start_ns + round(self.start_offset_s * NS)


class PassClock:
    """One pass through the bag: bag time `bag_start_ns` is played at wall time `wall_start_s`."""

    def __init__(self, bag_start_ns: int, rate: float, wall_start_s: float):
        self.bag_start_ns = bag_start_ns
        self.rate = rate
        self.wall_start_s = wall_start_s

    def due(self, bag_ns: int) -> float:
        """Wall time (same clock as wall_start_s) at which the message stamped `bag_ns` is due."""
        return self.wall_start_s + (bag_ns - self.bag_start_ns) / NS / self.rate

    def bag_time(self, wall_s: float) -> int:
        """The bag time being played at wall time `wall_s` (for /clock); never before the pass starts."""
        return self.bag_start_ns + max(0, round((wall_s - self.wall_start_s) * self.rate * NS))
