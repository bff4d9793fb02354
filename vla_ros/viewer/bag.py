"""`vla-ros view --bag`: a recorded or replayed bag through the same feed as the live view, on its recorded time."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from vla_ros.bags.errors import BagError
from vla_ros.bags.reading import BagReader
from vla_ros.viewer.feed import ESSENTIAL_TOPICS, VIEWED_TOPICS, ViewerFeed


def viewable_topics(reader: BagReader) -> list[str]:
    """The bag's topics the view shows; BagError (one sentence) when it has none of those it needs."""
    present = reader.info.topics
    if not any(topic in present for topic in ESSENTIAL_TOPICS):
        has = ", ".join(present) or "no topics at all"
        raise BagError(f"bag {reader.path} has none of the topics the view needs ({', '.join(ESSENTIAL_TOPICS)}); "
                       f"it has {has}")
    chosen = []
    for viewed in VIEWED_TOPICS:
        summary = present.get(viewed.topic)
        if summary is not None and summary.msgtype == viewed.msgtype:
            chosen.append(viewed.topic)
    return chosen


def log_bag(path: str | Path, feed: ViewerFeed, on_warning: Callable[[str], None] | None = None) -> dict[str, int]:
    """Log every viewable message of the bag through `feed`; returns messages shown per topic."""
    from vla_ros.bags.message_types import typestore  # noqa: PLC0415

    warn = on_warning or (lambda text: None)
    with BagReader(path, on_warning=warn) as reader:
        chosen = viewable_topics(reader)
        skipped = [f"{t} ({s.msgtype})" for t, s in reader.info.topics.items()
                   if t in {v.topic for v in VIEWED_TOPICS} and t not in chosen]
        if skipped:
            warn(f"not shown, the type differs from the one the view reads: {', '.join(skipped)}")
        store = typestore()
        for message in reader.messages(chosen):
            try:
                msg = store.deserialize_cdr(message.data, message.msgtype)
            except Exception as exc:  # noqa: BLE001 - one undecodable message must not end the view
                warn(f"a message on {message.topic} could not be decoded ({exc}); skipped")
                continue
            feed.handle(message.topic, msg, message.timestamp_ns * 1e-9)
    return dict(feed.counts)
