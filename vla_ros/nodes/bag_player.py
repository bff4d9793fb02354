"""bag_player: publish a rosbag2 bag with its original timing (rate, start offset, loop, topic selection, /clock).

Messages go out as the serialized bytes stored in the bag, so what subscribers receive is byte-for-byte
what was recorded. The node exits when the bag has been played (unless `loop`), with code 1 when the bag
turned out corrupt part-way.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import rclpy
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import ReliabilityPolicy
from rosgraph_msgs.msg import Clock

from vla_ros.bags.errors import BagError
from vla_ros.bags.reading import BagReader
from vla_ros.bags.ros_qos import profile_from_bag
from vla_ros.bags.schedule import NS, PassClock, PlaybackOptions
from vla_ros.bags.selection import choose_topics, parse_remaps, split_list
from vla_ros.core.stream_stats import StreamStats
from vla_ros.nodes.diagnostics import OK, WARN, DiagnosticsReporter
from vla_ros.core.settings import Settings, non_negative, positive, setting
from vla_ros.nodes.parameters import ParameterError, SettingsParameters
from vla_ros.nodes.qos import COMMANDS
from vla_ros.nodes.runtime import NodeThreads, run_node

CLOCK_TOPIC = "/clock"
CLOCK_PERIOD_S = 0.025  # /clock at 40 Hz between messages, as `ros2 bag play --clock` does by default
# Fast DDS acknowledges on its heartbeat cycle, which can take seconds although the data has arrived.
ACK_TIMEOUT_S = 1.0
SPIN_BEFORE_DUE_S = 0.002
PASS_LEAD_S = 0.01
MATCH_SETTLE_S = 0.3
# Python hands the GIL between threads every 5 ms by default; the playback thread must not wait that long
# behind the executor thread when a message is due.
GIL_SWITCH_INTERVAL_S = 0.0005

@dataclass(frozen=True)
class BagPlayerSettings(Settings):
    bag: str = setting("", "The bag to play: a rosbag2 directory (metadata.yaml) or a .mcap / .db3 file.")
    rate: float = setting(1.0, "Playback speed factor (1 = as recorded, 2 = twice as fast).", check=positive)
    start_offset: float = setting(0.0, "Seconds of the bag's start to skip.", check=non_negative)
    loop: bool = setting(False, "Start over at the end of the bag, until stopped.")
    topics: str = setting("", "Comma-separated topics to play (empty = every topic whose type is installed).")
    remap: str = setting("", "Comma-separated renames of played topics, /from:=/to.")
    clock: bool = setting(False, "Publish the bag time on /clock (rosgraph_msgs/Clock) for use_sim_time nodes.")
    delay: float = setting(0.0, "Seconds to wait after start-up before the first message.", check=non_negative)
    wait_for_subscribers: float = setting(0.0, "Wait up to this many seconds until every played topic has a "
                                          "subscriber (0 = do not wait).", check=non_negative)


class BagPlayer(Node):
    def __init__(self, parameter_overrides: list[Parameter] | None = None):
        super().__init__("bag_player", parameter_overrides=parameter_overrides)
        self.params = SettingsParameters(self, BagPlayerSettings).value
        self.exit_code = 0
        self.stats = StreamStats()
        self.published = 0
        self.passes = 0
        self.worst_late_s = 0.0
        if not self.params.bag:
            raise ParameterError("parameter bag is empty; give the path of a rosbag2 bag")
        self.options = PlaybackOptions(self.params.rate, self.params.start_offset, self.params.loop)
        try:
            self.reader = BagReader(self.params.bag, on_warning=self._warn)
            self.options.check(self.reader.info.duration_ns)
            self.topics = choose_topics(self.reader.info, split_list(self.params.topics),
                                        parse_remaps(self.params.remap), self._warn)
        except BagError as exc:
            raise ParameterError(str(exc)) from None
        self.publishers_by_topic = {}
        for topic in self.topics:
            qos = profile_from_bag(self.reader.info.topics[topic.name].qos)
            self.publishers_by_topic[topic.name] = self.create_publisher(topic.message_class, topic.published_as, qos)
        self.clock_publisher = self.create_publisher(Clock, CLOCK_TOPIC, COMMANDS) if self.params.clock else None
        DiagnosticsReporter(self, self.report)
        info = self.reader.info
        self.get_logger().info(
            f"playing {info.path} ({info.storage}, {info.message_count} messages, {info.duration_ns / NS:.2f} s) at "
            f"rate {self.options.rate}: " + ", ".join(
                t.name if t.name == t.published_as else f"{t.name} → {t.published_as}" for t in self.topics)
        )
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        NodeThreads(self).start(self._play, "bag_playback")

    def _warn(self, message: str) -> None:
        self.get_logger().warning(message)

    # --- playback ---------------------------------------------------------------------------------
    def _play(self) -> None:
        try:
            if not self._sleep(self.params.delay):
                return
            self._wait_for_subscribers(self.params.wait_for_subscribers)
            first = self.options.first_bag_time(self.reader.info.start_ns)
            names = [t.name for t in self.topics]
            while self.context.ok():
                # A short lead puts the first message on schedule too, not late by the time reading it takes.
                clock = PassClock(first, self.options.rate, time.monotonic() + PASS_LEAD_S)
                for message in self.reader.messages(names, start_ns=first):
                    if not self._wait_until(clock.due(message.timestamp_ns), clock):
                        return
                    self._publish_clock(message.timestamp_ns)
                    self.publishers_by_topic[message.topic].publish(message.data)
                    late = time.monotonic() - clock.due(message.timestamp_ns)
                    self.worst_late_s = max(self.worst_late_s, late)
                    self.published += 1
                    self.stats.accept(time.monotonic(), late)
                self.passes += 1
                if not self.options.loop:
                    break
            self._wait_for_acks()
            self.get_logger().info(
                f"played {self.published} messages in {self.passes} pass(es); latest message "
                f"{self.worst_late_s * 1e3:.1f} ms behind schedule"
            )
            for topic, order in self.reader.out_of_order_summary().items():
                self._warn(f"topic {topic}: header.stamp went backwards {order['backwards']} times "
                           f"(worst {order['worst_ms']:.1f} ms)")
        except BagError as exc:
            self.get_logger().error(str(exc))
            self.exit_code = 1
        except Exception as exc:  # noqa: BLE001 - a shutdown while publishing is not an error
            if self.context.ok():
                self.get_logger().error(f"playback failed: {exc}")
                self.exit_code = 1
        finally:
            self.reader.close()
            rclpy.try_shutdown(context=self.context)  # ends the spin in main(): the node exits when done

    def _sleep(self, seconds: float) -> bool:
        return self._wait_until(time.monotonic() + seconds, None)

    def _wait_until(self, due: float, clock: PassClock | None) -> bool:
        """Sleep until `due`, publishing /clock meanwhile; False when the node is shutting down."""
        while self.context.ok():
            remaining = due - time.monotonic()
            if remaining <= 0:
                return True
            if remaining <= SPIN_BEFORE_DUE_S:
                # The last stretch is spun, not slept: a wake-up on a busy machine can come milliseconds late.
                while time.monotonic() < due:
                    time.sleep(0)
                return True
            if clock is not None and self.clock_publisher is not None:
                self._publish_clock(clock.bag_time(time.monotonic()))
                time.sleep(min(remaining - SPIN_BEFORE_DUE_S, CLOCK_PERIOD_S))
            else:
                time.sleep(min(remaining - SPIN_BEFORE_DUE_S, 0.1))
        return False

    def _publish_clock(self, bag_ns: int) -> None:
        if self.clock_publisher is not None:
            message = Clock()
            message.clock.sec, message.clock.nanosec = divmod(int(bag_ns), NS)
            self.clock_publisher.publish(message)

    def _wait_for_subscribers(self, timeout_s: float) -> None:
        if timeout_s <= 0:
            return
        deadline = time.monotonic() + timeout_s
        lonely = list(self.publishers_by_topic.items())
        while lonely and time.monotonic() < deadline and self.context.ok():
            lonely = [(name, pub) for name, pub in lonely if pub.get_subscription_count() == 0]
            time.sleep(0.02)
        if lonely:
            self._warn(f"no subscriber on {', '.join(name for name, _ in lonely)} after {timeout_s:g} s; playing anyway")
        else:
            # The publisher has matched the subscriber, but the subscriber may not have matched the publisher
            # yet; a best-effort reader drops samples from a writer it does not know.
            self._sleep(MATCH_SETTLE_S)

    def _wait_for_acks(self) -> None:
        """Let reliable subscribers receive the last messages before the process exits."""
        for publisher in self.publishers_by_topic.values():
            if publisher.qos_profile.reliability == ReliabilityPolicy.RELIABLE:
                publisher.wait_for_all_acked(Duration(seconds=ACK_TIMEOUT_S))

    def report(self):
        now = time.monotonic()
        summary = self.stats.summary(now)
        summary.update({"published": self.published, "passes": self.passes,
                        "worst_late_ms": f"{self.worst_late_s * 1e3:.1f}"})
        level = OK if self.worst_late_s < 0.05 else WARN
        return level, f"{self.published} messages played", summary


def main(args: list[str] | None = None, parameter_overrides: list[Parameter] | None = None) -> int:
    created: list[BagPlayer] = []

    def make() -> BagPlayer:
        created.append(BagPlayer(parameter_overrides))
        return created[-1]

    code = run_node("bag_player", make, args)
    return code or (created[0].exit_code if created else 0)


if __name__ == "__main__":
    sys.exit(main())
