"""The one piece of CDR the stack reads by hand: the bytes of a std_msgs/String, undecoded.

rclpy replaces invalid UTF-8 with U+FFFD while deserializing, which would hide undecodable input;
the instruction listener subscribes raw and decodes strictly itself.
"""

from __future__ import annotations

import struct

# Encapsulation identifiers (first two bytes): plain/parameter-list CDR, big or little endian.
_LITTLE_ENDIAN = {b"\x00\x01", b"\x00\x03", b"\x00\x07", b"\x00\x09", b"\x00\x0b"}
_BIG_ENDIAN = {b"\x00\x00", b"\x00\x02", b"\x00\x06", b"\x00\x08", b"\x00\x0a"}


def string_payload(raw: bytes) -> bytes:
    """The text bytes of a serialized std_msgs/String (without the terminating NUL); ValueError if malformed."""
    raw = bytes(raw)
    if len(raw) < 8:
        raise ValueError(f"serialized String is {len(raw)} bytes; at least 8 are needed")
    kind = raw[:2]
    if kind in _LITTLE_ENDIAN:
        (length,) = struct.unpack_from("<I", raw, 4)
    elif kind in _BIG_ENDIAN:
        (length,) = struct.unpack_from(">I", raw, 4)
    else:
        raise ValueError(f"unknown CDR encapsulation 0x{kind.hex()}")
    if length == 0 or 8 + length > len(raw):
        raise ValueError(f"serialized String declares {length} bytes but carries {len(raw) - 8}")
    return raw[8 : 8 + length - 1]  # the length counts the terminating NUL
