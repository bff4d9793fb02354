"""Which bag topics to play, under which names: parsing `--topics` / `--remap` and checking each topic's type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from vla_ros.bags.errors import BagError
from vla_ros.bags.message_types import message_class
from vla_ros.bags.reading import BagInfo


@dataclass(frozen=True)
class PlayedTopic:
    name: str  # in the bag
    published_as: str
    msgtype: str
    message_class: type


def split_list(text: str | Iterable[str]) -> list[str]:
    """'a, b' or ['a', 'b,c'] → ['a', 'b', 'c'] (parameters carry lists as comma-separated strings)."""
    items = [text] if isinstance(text, str) else list(text)
    return [part.strip() for item in items for part in item.split(",") if part.strip()]


def parse_remaps(items: str | Iterable[str]) -> dict[str, str]:
    """['/a:=/b'] → {'/a': '/b'}; a malformed item raises BagError."""
    remaps = {}
    for item in split_list(items):
        source, separator, target = item.partition(":=")
        if not separator or not source.strip() or not target.strip():
            raise BagError(f"remap '{item}' is not of the form /from/topic:=/to/topic")
        remaps[source.strip()] = target.strip()
    return remaps


def choose_topics(info: BagInfo, wanted: list[str], remaps: dict[str, str],
                  on_warning: Callable[[str], None]) -> list[PlayedTopic]:
    """The topics to play: the wanted ones (all when empty), each with an importable message class.

    A topic whose type is not installed is an error when asked for by name, and a warning (topic left
    out) when playing everything; a bag left with nothing to play is an error.
    """
    explicit = bool(wanted)
    names = list(dict.fromkeys(wanted)) if explicit else list(info.topics)
    missing = [t for t in names if t not in info.topics]
    if missing:
        available = ", ".join(info.topics) or "no topics at all"
        raise BagError(f"topic {', '.join(missing)} is not in bag {info.path} (it has {available})")
    unknown_remaps = [source for source in remaps if source not in info.topics]
    if unknown_remaps:
        on_warning(f"remap of {', '.join(unknown_remaps)} has no effect: the bag has no such topic")
    chosen = []
    for name in names:
        summary = info.topics[name]
        try:
            cls = message_class(summary.msgtype)
        except BagError as exc:
            if explicit:
                raise BagError(f"topic {name} cannot be played: {exc}") from None
            on_warning(f"topic {name} is left out: {exc}")
            continue
        chosen.append(PlayedTopic(name, remaps.get(name, name), summary.msgtype, cls))
    if not chosen:
        raise BagError(f"bag {info.path} has no topic that can be played")
    if not any(info.topics[t.name].count for t in chosen):
        raise BagError(f"bag {info.path} has no messages on {', '.join(t.name for t in chosen)}")
    return chosen
