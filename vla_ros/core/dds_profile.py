"""Which Fast DDS profile a vla_ros process uses: the package's faster-discovery profile unless the user chose.

Fast DDS reads FASTDDS_DEFAULT_PROFILES_FILE when the first participant is created, so this must run
before `rclpy.init`. Setting it in os.environ also passes it to every process a launcher starts.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

from vla_ros.core.resources import resolve_resource

PROFILE = "config/fastdds_discovery.xml"
PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")


def discovery_profile() -> Path | None:
    """The packaged profile file, or None when this install lacks it."""
    path = resolve_resource(PROFILE)
    return path.resolve() if path.is_file() else None


def use_discovery_profile(environ: MutableMapping[str, str] | None = None) -> str | None:
    """Set FASTDDS_DEFAULT_PROFILES_FILE to the packaged profile where nobody chose otherwise.

    Left alone: a profile file the user set (either variable), and a middleware other than Fast DDS.
    Returns the profile file in effect for Fast DDS (the user's or ours), or None.
    """
    environ = os.environ if environ is None else environ
    for variable in PROFILE_VARIABLES:
        if environ.get(variable):
            return environ[variable]
    rmw = environ.get("RMW_IMPLEMENTATION", "")
    if rmw and not rmw.startswith("rmw_fastrtps"):
        return None
    path = discovery_profile()
    if path is None:
        return None
    environ[PROFILE_VARIABLES[0]] = str(path)
    return str(path)
