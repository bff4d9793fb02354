"""Open a rosbag2 bag (directory, .mcap or .db3 file) with checks, and read its messages in time order.

Whatever goes wrong surfaces as one `BagError` sentence naming the bag or the topic: a missing or
unfinished bag, a truncated or corrupt storage file, a topic the bag does not have. Header stamps
that go backwards within a topic are reported through `on_warning`, once per topic, and counted.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from vla_ros.bags.errors import BagError
from vla_ros.bags.message_types import header_field_first

STORAGE_SUFFIXES = {".mcap": "mcap", ".db3": "sqlite3"}
PARTIAL_SUFFIX = ".partial"


@dataclass(frozen=True)
class TopicSummary:
    name: str
    msgtype: str
    count: int
    qos: tuple = ()  # rosbags.interfaces.Qos profiles the recorded publishers offered


@dataclass(frozen=True)
class BagInfo:
    path: Path
    storage: str
    start_ns: int
    end_ns: int  # time of the last message
    message_count: int
    topics: dict[str, TopicSummary]

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str
    timestamp_ns: int  # receive (log) time as recorded
    data: bytes  # CDR-serialized message, as published


@dataclass
class StampOrder:
    """Per topic: how often and how far header.stamp went backwards."""

    backwards: int = 0
    worst_ns: int = 0
    last_ns: int | None = None


def _storage_kind(path: Path) -> str:
    if path.is_dir():
        return _directory_storage(path)
    return STORAGE_SUFFIXES.get(path.suffix, "")


def _directory_storage(path: Path) -> str:
    metadata = path / "metadata.yaml"
    storage_files = sorted(p for p in path.iterdir() if p.suffix in STORAGE_SUFFIXES)
    nested = [p for p in path.iterdir() if p.is_dir() and (p / "metadata.yaml").exists()]
    if not metadata.exists():
        if path.name.endswith(PARTIAL_SUFFIX) or nested or any(p.is_dir() for p in path.iterdir()):
            raise BagError(
                f"bag {path} is an unfinished recording (no metadata.yaml): `vla-ros bag record` was stopped "
                "before it could close the bag; record again"
            )
        if storage_files:
            raise BagError(
                f"bag {path} has no metadata.yaml (an unfinished `ros2 bag record`?); run `ros2 bag reindex {path}` "
                f"or give the storage file {storage_files[0].name} itself"
            )
        raise BagError(f"{path} is not a rosbag2 bag: it has neither metadata.yaml nor a .mcap/.db3 file")
    return "directory"


class BagReader:
    """A bag opened for reading; use as a context manager."""

    def __init__(self, path: str | Path, on_warning: Callable[[str], None] | None = None):
        self.path = Path(path)
        self.on_warning = on_warning or (lambda message: None)
        self.stamp_order: dict[str, StampOrder] = {}
        if not self.path.exists():
            raise BagError(
                f"bag {self.path} does not exist; give a rosbag2 bag directory (holding metadata.yaml) "
                "or a .mcap / .db3 file"
            )
        if not _storage_kind(self.path):
            raise BagError(
                f"{self.path} is not a rosbag2 bag; give a bag directory (holding metadata.yaml) or a .mcap / .db3 file"
            )
        from rosbags.rosbag2 import Reader

        self._reader = Reader(self.path)
        try:
            self._reader.open()
        except BagError:
            raise
        except Exception as exc:  # rosbags and the storage libraries raise many kinds; all mean one thing here
            raise BagError(f"bag {self.path} is truncated or corrupt and cannot be read ({_reason(exc)})") from None
        self.info = self._summarize()

    def _summarize(self) -> BagInfo:
        topics = {}
        for name, topic in sorted(self._reader.topics.items()):
            msgtypes = {c.msgtype for c in topic.connections}
            if len(msgtypes) != 1:
                raise BagError(f"topic {name} of bag {self.path} has several message types {sorted(msgtypes)}")
            qos = tuple(q for c in topic.connections for q in getattr(c.ext, "offered_qos_profiles", ()) or ())
            topics[name] = TopicSummary(name, msgtypes.pop(), int(topic.msgcount), qos)
        count = int(self._reader.message_count)
        start = int(self._reader.start_time) if count else 0
        # rosbags' end_time is one nanosecond past the last message.
        end = int(self._reader.end_time) - 1 if count else 0
        storage = "sqlite3" if self._storage_is_sqlite() else "mcap"
        return BagInfo(self.path, storage, start, max(start, end), count, topics)

    def _storage_is_sqlite(self) -> bool:
        if self.path.is_dir():
            return any(p.suffix == ".db3" for p in self.path.iterdir())
        return self.path.suffix == ".db3"

    @property
    def custom_data(self) -> dict[str, str]:
        """The bag's custom_data (metadata.yaml): what `vla-ros record-demos` or `data generate --bags` wrote."""
        metadata = getattr(getattr(self._reader, "storage", None), "metadata", None)
        return dict(getattr(metadata, "custom", None) or {})

    def require_topics(self, topics: Iterable[str]) -> list[str]:
        """The given topics, each checked to be in the bag."""
        chosen = list(dict.fromkeys(topics))
        missing = [t for t in chosen if t not in self.info.topics]
        if missing:
            available = ", ".join(self.info.topics) or "no topics at all"
            raise BagError(f"topic {', '.join(missing)} is not in bag {self.path} (it has {available})")
        return chosen

    def messages(self, topics: Iterable[str] | None = None, start_ns: int | None = None) -> Iterator[BagMessage]:
        """Messages of `topics` (all when None) from `start_ns` on, in receive-time order."""
        chosen = set(self.require_topics(topics)) if topics is not None else set(self.info.topics)
        connections = [c for c in self._reader.connections if c.topic in chosen]
        if not connections:
            return
        stamped = {c.topic for c in connections if header_field_first(c.msgtype)}
        for order in self.stamp_order.values():
            order.last_ns = None  # a new pass (a loop) starts over
        topic, at = None, 0
        try:
            for connection, timestamp, data in self._reader.messages(connections, start=start_ns):
                topic, at = connection.topic, timestamp
                data = bytes(data)
                if topic in stamped:
                    self._check_stamp(topic, timestamp, data)
                yield BagMessage(topic, connection.msgtype, int(timestamp), data)
        except BagError:
            raise
        except Exception as exc:
            where = (f"after the message on {topic} at {(at - self.info.start_ns) / 1e9:.3f} s" if topic
                     else "before its first message")
            raise BagError(f"bag {self.path} is corrupt {where} and cannot be read further ({_reason(exc)})") from None

    def _check_stamp(self, topic: str, timestamp: int, data: bytes) -> None:
        if len(data) < 12:
            return
        little = data[1] & 1  # CDR encapsulation: odd identifiers are little endian
        sec, nanosec = struct.unpack_from("<iI" if little else ">iI", data, 4)
        stamp = sec * 1_000_000_000 + nanosec
        order = self.stamp_order.setdefault(topic, StampOrder())
        if order.last_ns is not None and stamp < order.last_ns:
            order.backwards += 1
            back = order.last_ns - stamp
            if order.backwards == 1:
                self.on_warning(
                    f"topic {topic}: header.stamp goes back by {back / 1e6:.1f} ms at bag time "
                    f"{(timestamp - self.info.start_ns) / 1e9:.3f} s (out-of-order timestamps); messages are kept "
                    "in recorded order"
                )
            order.worst_ns = max(order.worst_ns, back)
        order.last_ns = stamp if order.last_ns is None else max(order.last_ns, stamp)

    def out_of_order_summary(self) -> dict[str, dict[str, float]]:
        """{topic: {backwards, worst_ms}} for topics whose header stamps went backwards."""
        return {
            t: {"backwards": o.backwards, "worst_ms": o.worst_ns / 1e6}
            for t, o in self.stamp_order.items()
            if o.backwards
        }

    def check_readable(self, topics: Iterable[str] | None = None) -> int:
        """Read every message once (raising BagError on corruption); returns the count."""
        return sum(1 for _ in self.messages(topics))

    def close(self) -> None:
        if self._reader.is_open:
            self._reader.close()

    def __enter__(self) -> "BagReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().rstrip(".") or type(exc).__name__
    return text if len(text) < 200 else text[:197] + "..."

