"""QoS profiles by meaning, as the topic contract (ARCHITECTURE.md) gives them."""

from rclpy.duration import Duration
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    LivelinessPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

# Camera frames: only the newest matters, never wait for a slow reader.
SENSOR_LATEST = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.BEST_EFFORT,
    durability=DurabilityPolicy.VOLATILE,
)
SENSOR = qos_profile_sensor_data

# Commands and requests: every message counts.
COMMANDS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

# Latched state (task, e-stop): a node that starts later still gets the current value.
LATCHED = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)

DEFAULT = QoSProfile(depth=10)

# Streams the safety monitor watches for a dead producer (executor commands, policy tokens): the writer
# offers a 100 ms liveliness lease, asserted by DDS itself (a killed process stops asserting at once), and the
# monitor's reader reports liveliness lost after 150 ms. A 50/100 ms pair was tried and flapped on an idle
# machine (liveliness "lost" for live writers, so the gate held), failing the fault-injection suite.
LEASED_COMMANDS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
    liveliness=LivelinessPolicy.AUTOMATIC,
    liveliness_lease_duration=Duration(seconds=0.1),
)
LEASE_WATCH = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
    liveliness=LivelinessPolicy.AUTOMATIC,
    liveliness_lease_duration=Duration(seconds=0.15),
)
