"""Test-wide set-up: a ROS domain of this run's own, discovery kept on localhost, headless rendering."""

from __future__ import annotations

import os

# A domain id per test run (0–101 is the safe range for Fast DDS ports): parallel runs do not cross-talk.
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYTHONUNBUFFERED", "1")


import pytest


def pytest_collection_modifyitems(config, items):
    """Multi-process DDS tests get up to three retries.

    On localhost, Fast DDS discovery is asymmetric and its timing on a loaded 2-core machine varies by
    seconds; a test that fails three times in a row fails for real. Pure-logic tests get no retries.
    """
    for item in items:
        if item.get_closest_marker("ros") is not None:
            item.add_marker(pytest.mark.flaky(reruns=3, reruns_delay=2))


def pytest_configure(config):
    config.addinivalue_line("markers", "ros: starts ROS 2 nodes (multi-process, real DDS)")
    config.addinivalue_line("markers", "slow: takes more than ~20 s")
