"""The ROS side of `vla-ros bag record`: discover topics, subscribe raw with matching QoS, write a bag.

Messages are stored as received (serialized CDR), stamped with the middleware's receive time, so a
recording of a playback keeps the original spacing. Ctrl-C, SIGTERM, `duration_s` or `max_messages`
end the recording and close the bag properly; any error deletes the unfinished bag.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

from vla_ros.bags.errors import BagError
from vla_ros.bags.message_types import definition_and_hash, full_type_name, message_class
from vla_ros.bags.ros_qos import profile_for_offers, to_bag_qos
from vla_ros.bags.writing import BagWriter, check_new_bag_path

# Infrastructure topics `--all` leaves out: every node publishes them, nobody replays them.
SKIPPED_BY_ALL = ("/rosout", "/parameter_events")
DISCOVERY_PERIOD_S = 0.5


@dataclass
class RecordOptions:
    path: Path
    topics: list[str] = field(default_factory=list)
    all_topics: bool = False
    storage: str = "mcap"
    duration_s: float | None = None
    max_messages: int | None = None
    wait_s: float = 10.0

    def check(self) -> None:
        if bool(self.topics) == self.all_topics:
            raise BagError("give the topics to record with --topics, or --all for every topic (not both)")
        if self.duration_s is not None and not self.duration_s > 0:
            raise BagError(f"--duration {self.duration_s} is not accepted; give seconds > 0")
        if self.max_messages is not None and self.max_messages < 1:
            raise BagError(f"--max-messages {self.max_messages} is not accepted; give a count >= 1")
        if not self.wait_s > 0:
            raise BagError(f"--wait {self.wait_s} is not accepted; give seconds > 0")
        bad = [t for t in self.topics if not t.startswith("/")]
        if bad:
            raise BagError(f"topic {', '.join(bad)} is not an absolute topic name; give names starting with '/'")
        check_new_bag_path(self.path)


@dataclass
class RecordResult:
    path: Path
    counts: dict[str, int]
    seconds: float
    stopped_by: str


class Recorder:
    """One recording session in its own rclpy node."""

    def __init__(self, options: RecordOptions, say: Callable[[str], None] = print,
                 warn: Callable[[str], None] = print):
        options.check()
        self.options = options
        self.say = say
        self.warn = warn
        self.writer: BagWriter | None = None
        self.subscribed: set[str] = set()
        self.skipped: set[str] = set()
        self.done = False
        self.node = None

    def run(self) -> RecordResult:
        rclpy.init()
        self.node = rclpy.create_node("bag_recorder")
        executor = SingleThreadedExecutor()
        executor.add_node(self.node)
        stopped_by = "the end of the session"
        started = time.monotonic()
        try:
            types = self._discover(executor)
            self.writer = BagWriter(self.options.path, self.options.storage)
            for topic, msgtype in types.items():
                self._subscribe(topic, msgtype)
            self.say(f"recording {', '.join(sorted(self.subscribed)) or 'no topic yet'} to {self.options.path}"
                     f" ({self.options.storage}); Ctrl-C stops")
            started = time.monotonic()
            next_discovery = started + DISCOVERY_PERIOD_S
            while not self.done:
                executor.spin_once(timeout_sec=0.05)
                now = time.monotonic()
                if self.options.duration_s is not None and now - started >= self.options.duration_s:
                    stopped_by = f"--duration {self.options.duration_s:g}"
                    break
                if self.options.all_topics and now >= next_discovery:
                    next_discovery = now + DISCOVERY_PERIOD_S
                    for topic, msgtype in self._visible_types().items():
                        if topic not in self.subscribed and topic not in self.skipped:
                            self._subscribe(topic, msgtype)
            if self.done:
                stopped_by = f"--max-messages {self.options.max_messages}"
        except (KeyboardInterrupt, ExternalShutdownException):
            stopped_by = "a stop signal"
        except BaseException:
            if self.writer is not None:
                self.writer.abort()
            raise
        finally:
            self.node.destroy_node()
            executor.shutdown()
            rclpy.try_shutdown()
        seconds = time.monotonic() - started
        path = self.writer.close()
        return RecordResult(path, dict(self.writer.counts), seconds, stopped_by)

    # --- discovery ------------------------------------------------------------------------------
    def _visible_types(self) -> dict[str, list[str]]:
        """Topics with at least one publisher, and their types."""
        found = {}
        for name, types in self.node.get_topic_names_and_types():
            if self.options.all_topics and name in SKIPPED_BY_ALL:
                continue
            if self.node.count_publishers(name) > 0:
                found[name] = list(types)
        return found

    def _discover(self, executor) -> dict[str, list[str]]:
        deadline = time.monotonic() + self.options.wait_s
        wanted = list(dict.fromkeys(self.options.topics))
        while True:
            visible = self._visible_types()
            if self.options.all_topics:
                if visible or time.monotonic() > deadline:
                    return visible  # later topics are picked up while recording
            else:
                missing = [t for t in wanted if t not in visible]
                if not missing:
                    return {t: visible[t] for t in wanted}
                if time.monotonic() > deadline:
                    raise BagError(
                        f"topic {', '.join(missing)} never appeared (no publisher within {self.options.wait_s:g} s);"
                        " check the name, start its publisher first or raise --wait"
                    )
            executor.spin_once(timeout_sec=0.05)

    def _subscribe(self, topic: str, msgtypes: list[str]) -> None:
        try:
            if len(msgtypes) != 1:
                raise BagError(f"topic {topic} is published with several types {msgtypes}; it cannot be recorded")
            msgtype = full_type_name(msgtypes[0])
            definition_and_hash(msgtype)
            cls = message_class(msgtype)
        except BagError as exc:
            if not self.options.all_topics:
                raise BagError(f"topic {topic} cannot be recorded: {exc}") from None
            self.warn(f"topic {topic} is left out: {exc}")
            self.skipped.add(topic)
            return
        offered = [info.qos_profile for info in self.node.get_publishers_info_by_topic(topic)]
        self.writer.add_topic(topic, msgtype, [to_bag_qos(p) for p in offered])
        self.node.create_subscription(cls, topic, lambda data, info: self._on_message(topic, data, info),
                                      profile_for_offers(offered), raw=True)
        self.subscribed.add(topic)

    def _on_message(self, topic: str, data: bytes, info) -> None:
        if self.done:
            return
        stamp = info.get("received_timestamp") or time.time_ns()
        self.writer.write(topic, stamp, data)
        if self.options.max_messages is not None and self.writer.message_count >= self.options.max_messages:
            self.done = True
