"""Write a rosbag2 bag through rosbags, never leaving a half-written bag that looks complete.

The bag is written into `NAME.partial/NAME` and moved to `NAME` only once rosbags has closed it
(storage index and metadata.yaml written); an error deletes `NAME.partial`. A process killed
mid-recording leaves only `NAME.partial`, which `BagReader` refuses with a clear sentence.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

from vla_ros.bags.errors import BagError
from vla_ros.bags.message_types import definition_and_hash, full_type_name
from vla_ros.bags.reading import PARTIAL_SUFFIX

STORAGES = ("mcap", "sqlite3")
# Metadata version 9 is what rosbag2 on Jazzy and Kilted writes and `ros2 bag info` reads.
METADATA_VERSION = 9


def partial_path(path: Path) -> Path:
    return path.with_name(path.name + PARTIAL_SUFFIX)


def check_new_bag_path(path: str | Path) -> Path:
    """The bag path, checked to be free for a new bag (neither it nor its .partial exists)."""
    path = Path(path)
    if path.exists():
        raise BagError(f"bag output {path} already exists; choose a new path (bags are never overwritten)")
    if partial_path(path).exists():
        raise BagError(
            f"{partial_path(path)} exists (an unfinished earlier recording to {path}); delete it or choose a new path"
        )
    if path.parent != Path("") and not path.parent.is_dir():
        raise BagError(f"bag output {path}: folder {path.parent} does not exist")
    return path


class BagWriter:
    """A bag being written; `close()` publishes it under its name, `abort()` (or an exception) deletes it."""

    def __init__(self, path: str | Path, storage: str = "mcap", custom_data: dict[str, str] | None = None):
        from rosbags.rosbag2 import StoragePlugin, Writer

        if storage not in STORAGES:
            raise BagError(f"storage '{storage}' is not supported; choose mcap or sqlite3")
        self.path = check_new_bag_path(path)
        self.storage = storage
        self._partial = partial_path(self.path)
        self._partial.mkdir()
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self._partial / self.path.name, version=METADATA_VERSION, storage_plugin=plugin)
        for key, value in {"recorded_by": "vla_ros", **(custom_data or {})}.items():
            self._writer.set_custom_data(key, str(value))
        try:
            self._writer.open()
        except Exception:
            shutil.rmtree(self._partial, ignore_errors=True)
            raise
        self._connections: dict[str, object] = {}
        self.counts: dict[str, int] = {}
        self.closed = False

    def add_topic(self, topic: str, msgtype: str, qos: Sequence = ()) -> None:
        """Declare a topic with its type and the QoS profiles (rosbags `Qos`) its publishers offered."""
        msgtype = full_type_name(msgtype)
        try:
            definition, rihs01 = definition_and_hash(msgtype)
        except BagError as exc:
            raise BagError(f"topic {topic}: {exc}") from None
        self._connections[topic] = self._writer.add_connection(
            topic, msgtype, msgdef=definition, rihs01=rihs01, offered_qos_profiles=list(qos)
        )
        self.counts[topic] = 0

    def set_custom_data(self, key: str, value: str) -> None:
        """Set a custom_data entry of metadata.yaml (possible until the bag is closed, e.g. an episode's outcome)."""
        self._writer.set_custom_data(key, str(value))

    def has_topic(self, topic: str) -> bool:
        return topic in self._connections

    def write(self, topic: str, timestamp_ns: int, data: bytes) -> None:
        self._writer.write(self._connections[topic], int(timestamp_ns), data)
        self.counts[topic] += 1

    @property
    def message_count(self) -> int:
        return sum(self.counts.values())

    def close(self) -> Path:
        """Finish the bag and move it to its final path; returns that path."""
        try:
            self._writer.close()
            (self._partial / self.path.name).rename(self.path)
            self._partial.rmdir()
        except BaseException:
            self.abort()
            raise
        self.closed = True
        return self.path

    def abort(self) -> None:
        """Drop everything written so far."""
        try:
            self._writer.abort()
        except Exception:
            pass  # the storage may already be closed; the files go away below either way
        shutil.rmtree(self._partial, ignore_errors=True)
        self.closed = True

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.closed:
            return
        if exc_type is None:
            self.close()
        else:
            self.abort()
