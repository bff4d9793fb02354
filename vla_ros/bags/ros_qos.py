"""QoS between rclpy and bag metadata (the ROS side: imports rclpy).

The recorder stores what each publisher offered; the player and the recorder pick the profile
that matches every publisher: reliable only when all offered reliable, transient local only when
all offered it (a reliable or transient-local request does not match a weaker offer).
"""

from __future__ import annotations

from typing import Sequence

from rclpy.duration import Duration
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

INFINITE_NS = (1 << 63) - 1
DEFAULT_DEPTH = 10
RECORD_DEPTH = 100  # a subscriber's queue: a burst between two executor wake-ups is not dropped


def _qos_time(duration: Duration):
    from rosbags.interfaces import QosTime

    ns = duration.nanoseconds
    if ns >= INFINITE_NS or ns < 0:
        return QosTime(2147483647, 4294967295)  # how rosbag2 writes an infinite duration
    return QosTime(ns // 1_000_000_000, ns % 1_000_000_000)


def to_bag_qos(profile: QoSProfile):
    """An rclpy profile as a rosbags `Qos` for the bag's offered_qos_profiles."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability

    return Qos(
        history=QosHistory[profile.history.name],
        depth=int(profile.depth),
        reliability=QosReliability[profile.reliability.name],
        durability=QosDurability[profile.durability.name],
        deadline=_qos_time(profile.deadline),
        lifespan=_qos_time(profile.lifespan),
        liveliness=QosLiveliness[profile.liveliness.name],
        liveliness_lease_duration=_qos_time(profile.liveliness_lease_duration),
        avoid_ros_namespace_conventions=bool(profile.avoid_ros_namespace_conventions),
    )


def matching_profile(reliable: Sequence[bool], transient_local: Sequence[bool], depth: int) -> QoSProfile:
    """A profile that matches all publishers described by the two flag lists (defaults when none)."""
    all_reliable = all(reliable) if reliable else True
    all_latched = all(transient_local) if transient_local else False
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if all_reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if all_latched else DurabilityPolicy.VOLATILE,
    )


def profile_for_offers(offered: Sequence[QoSProfile], depth: int = RECORD_DEPTH) -> QoSProfile:
    """The subscription profile for live publishers' offered profiles."""
    return matching_profile(
        [p.reliability == ReliabilityPolicy.RELIABLE for p in offered],
        [p.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in offered],
        depth,
    )


def profile_from_bag(qos: Sequence) -> QoSProfile:
    """The publisher profile for a topic whose recorded publishers offered `qos` (rosbags `Qos` list)."""
    depths = [q.depth for q in qos if q.depth > 0]
    return matching_profile(
        [q.reliability.name != "BEST_EFFORT" for q in qos],
        [q.durability.name == "TRANSIENT_LOCAL" for q in qos],
        max([DEFAULT_DEPTH, *depths]),
    )
