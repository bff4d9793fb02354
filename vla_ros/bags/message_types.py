"""Message types by name: definitions for writing (rosbags' type store) and Python classes for publishing."""

from __future__ import annotations

import importlib
import os
from functools import lru_cache
from pathlib import Path

from vla_ros.bags.errors import BagError


def full_type_name(name: str) -> str:
    """'sensor_msgs/Image' or 'sensor_msgs/msg/Image' → 'sensor_msgs/msg/Image'."""
    parts = name.strip().split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or not all(parts):
        raise BagError(f"message type '{name}' is not of the form package/msg/Type")
    return "/".join(parts)


@lru_cache(maxsize=1)
def typestore():
    """The ROS 2 Kilted type store of rosbags, with any extra .msg types registered on demand."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def _register_from_share(msgtype: str) -> bool:
    """Register a type from PKG/msg/Type.msg under AMENT_PREFIX_PATH (a sourced distribution); True if found."""
    from rosbags.typesys import get_types_from_msg

    package, _, type_name = msgtype.split("/")
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        definition = Path(prefix, "share", package, "msg", f"{type_name}.msg")
        if definition.is_file():
            typestore().register(get_types_from_msg(definition.read_text(encoding="utf-8"), msgtype))
            return True
    return False


def is_known(msgtype: str) -> bool:
    """Whether the type store can describe `msgtype` (registering it from a sourced distribution if needed)."""
    if msgtype in typestore().types:
        return True
    try:
        return _register_from_share(msgtype)
    except Exception:  # a .msg file rosbags cannot parse: the type stays unknown
        return False


def definition_and_hash(msgtype: str) -> tuple[str, str]:
    """(ros2msg definition text, RIHS01 hash) of a type, as a bag's schema records it."""
    if not is_known(msgtype):
        raise BagError(
            f"message type {msgtype} is unknown: it is neither a ROS 2 Kilted standard type nor a .msg file "
            "under AMENT_PREFIX_PATH"
        )
    definition, _ = typestore().generate_msgdef(msgtype, ros_version=2)
    return definition, typestore().hash_rihs01(msgtype)


def message_class(msgtype: str):
    """The rclpy message class of 'pkg/msg/Type', imported from its Python package."""
    package, kind, type_name = full_type_name(msgtype).split("/")
    try:
        module = importlib.import_module(f"{package}.{kind}")
        return getattr(module, type_name)
    except (ImportError, AttributeError):
        raise BagError(
            f"message type {msgtype} is not installed for Python (no {package}.{kind}.{type_name}); install its "
            "interface package or leave its topic out"
        ) from None


def header_field_first(msgtype: str) -> bool:
    """Whether the message starts with a std_msgs/Header, so its stamp is the first 8 bytes after encapsulation."""
    if not is_known(msgtype):
        return False
    fields = typestore().fielddefs[msgtype][1]
    if not fields:
        return False
    _, (kind, detail) = fields[0]
    return kind.name == "NAME" and detail == "std_msgs/msg/Header"
