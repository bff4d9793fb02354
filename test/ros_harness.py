"""Test helpers for talking to real nodes over DDS (see vla_ros.graphs.probe and .processes) and running the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from vla_ros.graphs.probe import ProbeNode as RosProbe  # noqa: F401 - re-exported for the tests
from vla_ros.graphs.processes import LaunchedGraph  # noqa: F401

REPO = Path(__file__).resolve().parents[1]


def run_cli(*arguments: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vla_ros.cli", *arguments],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
