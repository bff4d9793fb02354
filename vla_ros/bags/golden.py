"""Compare a replay's output bag with a stored golden one and name the first divergence.

Same topics, same message counts, same receive times; field by field, integers and strings exactly and
floats within `FLOAT_TOLERANCE`. The first divergence is the earliest in bag time over all topics.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vla_ros.bags.errors import BagError

FLOAT_TOLERANCE = 1e-5
NS = 1_000_000_000


@dataclass(frozen=True)
class Divergence:
    topic: str
    time_s: float  # since the golden bag's start
    index: int  # message number on the topic
    field: str
    expected: str
    got: str

    def sentence(self) -> str:
        return (f"first divergence on {self.topic} at {self.time_s:.3f} s (message #{self.index}): {self.field}: "
                f"expected {self.expected}, got {self.got}")


def _short(value) -> str:
    text = np.array2string(value, threshold=8, precision=6) if isinstance(value, np.ndarray) else repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def first_field_difference(expected, got, path: str = "") -> tuple[str, str, str] | None:
    """(field path, expected, got) of the first differing field of two deserialized messages, or None."""
    if isinstance(expected, np.ndarray) or isinstance(got, np.ndarray):
        a, b = np.asarray(expected), np.asarray(got)
        if a.shape != b.shape:
            return f"{path} (length)", str(a.shape[0] if a.ndim else a), str(b.shape[0] if b.ndim else b)
        if a.dtype.kind == "f" or b.dtype.kind == "f":
            bad = ~np.isclose(a.astype(np.float64), b.astype(np.float64), rtol=0.0, atol=FLOAT_TOLERANCE,
                              equal_nan=True)
        else:
            bad = a != b
        if np.any(bad):
            i = int(np.flatnonzero(bad)[0])
            return f"{path}[{i}]", _short(a.flat[i]), _short(b.flat[i])
        return None
    if isinstance(expected, (list, tuple)):
        if len(expected) != len(got):
            return f"{path} (length)", str(len(expected)), str(len(got))
        for i, (a, b) in enumerate(zip(expected, got)):
            found = first_field_difference(a, b, f"{path}[{i}]")
            if found:
                return found
        return None
    if hasattr(expected, "__dataclass_fields__"):
        for name in expected.__dataclass_fields__:
            if name == "__msgtype__":
                continue
            found = first_field_difference(getattr(expected, name), getattr(got, name),
                                           f"{path}.{name}" if path else name)
            if found:
                return found
        return None
    if isinstance(expected, float) or isinstance(got, float):
        if not abs(float(expected) - float(got)) <= FLOAT_TOLERANCE:
            return path, _short(expected), _short(got)
        return None
    if expected != got:
        return path, _short(expected), _short(got)
    return None


def _read_all(path: Path) -> tuple[int, dict[str, tuple[str, list[tuple[int, bytes]]]]]:
    from vla_ros.bags.reading import BagReader

    with BagReader(path) as reader:
        topics = {name: (t.msgtype, []) for name, t in reader.info.topics.items()}
        for message in reader.messages():
            topics[message.topic][1].append((message.timestamp_ns, message.data))
        return reader.info.start_ns, topics


def compare_bags(golden: Path, candidate: Path) -> Divergence | None:
    """The earliest divergence of `candidate` from `golden`, or None when they match."""
    from vla_ros.bags.message_types import typestore

    store = typestore()
    start, expected = _read_all(golden)
    _, got = _read_all(candidate)
    found: list[Divergence] = []
    for topic in sorted(set(expected) | set(got)):
        if topic not in got or topic not in expected:
            where = "golden" if topic in expected else "new output"
            found.append(Divergence(topic, 0.0, 0, "topic", "present" if topic in expected else "absent",
                                    f"absent (only in the {where})" if topic in expected else "present"))
            continue
        (msgtype, a), (other_type, b) = expected[topic], got[topic]
        if msgtype != other_type:
            found.append(Divergence(topic, 0.0, 0, "message type", msgtype, other_type))
            continue
        for i in range(max(len(a), len(b))):
            if i >= len(a) or i >= len(b):
                at = a[i][0] if i < len(a) else b[i][0]
                found.append(Divergence(topic, (at - start) / NS, i, "message count", str(len(a)), str(len(b))))
                break
            (ta, da), (tb, db) = a[i], b[i]
            if ta != tb:
                found.append(Divergence(topic, (min(ta, tb) - start) / NS, i, "receive time",
                                        f"{(ta - start) / NS:.9f} s", f"{(tb - start) / NS:.9f} s"))
                break
            if da == db:
                continue
            difference = first_field_difference(store.deserialize_cdr(da, msgtype), store.deserialize_cdr(db, msgtype))
            if difference:
                found.append(Divergence(topic, (ta - start) / NS, i, *difference))
                break
    if not found:
        return None
    from vla_ros.bags.replay_messages import OUTPUT_TYPES

    pipeline_order = list(OUTPUT_TYPES)  # at equal times, the stage nearest the input is the cause
    return min(found, key=lambda d: (d.time_s, pipeline_order.index(d.topic) if d.topic in pipeline_order
                                     else len(pipeline_order), d.topic))


def check_against_golden(golden: Path, candidate: Path) -> Divergence | None:
    """`compare_bags` with the golden given as a replay output folder or a bag."""
    from vla_ros.bags.replay import output_bag

    golden = Path(golden)
    if not golden.exists():
        raise BagError(f"golden {golden} does not exist; create it with --write-golden")
    return compare_bags(output_bag(golden), output_bag(candidate))
