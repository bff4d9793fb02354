"""Test-wide set-up: a ROS domain of this run's own, discovery kept on localhost, headless rendering."""

from __future__ import annotations

import os
import sys

# A domain id per test run (0–101 is the safe range for Fast DDS ports): parallel runs do not cross-talk.
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYTHONUNBUFFERED", "1")


import pytest


def _talks_to_other_processes(item) -> bool:
    """The test's module holds ros_harness's RosProbe or LaunchedGraph: it waits on nodes in other processes."""
    harness, module = sys.modules.get("ros_harness"), getattr(item, "module", None)
    if harness is None or module is None:
        return False
    handles = [getattr(harness, name) for name in ("RosProbe", "LaunchedGraph") if hasattr(harness, name)]
    return any(value is handle for value in vars(module).values() for handle in handles)


def pytest_collection_modifyitems(config, items):
    """Tests whose outcome depends on DDS discovery between processes get up to three retries.

    That is a `ros` test whose module talks to nodes in other processes through ros_harness: on localhost,
    Fast DDS discovery is asymmetric and its timing on a loaded 2-core machine varies by seconds, so a probe can
    publish before a node has matched it. A test that fails four times in a row fails for real. Every retry
    shows as an R in the progress line and is listed, with the failed attempt's traceback, in the rerun
    summary (pytest.ini's `-raR --rerun-show-tracebacks`).

    No retries for: pure-logic tests; `ros` tests that start nodes but wait on no discovery (a node refused at
    start-up, test_node_startup_errors.py); and any test with its own `flaky` mark, e.g. `flaky(reruns=0)` on a
    measured outcome (the closed-loop pick count), which no discovery delay explains.
    """
    for item in items:
        if item.get_closest_marker("ros") is None or item.get_closest_marker("flaky") is not None:
            continue
        if _talks_to_other_processes(item):
            item.add_marker(pytest.mark.flaky(reruns=3, reruns_delay=2))


def pytest_configure(config):
    config.addinivalue_line("markers", "ros: starts ROS 2 nodes (multi-process, real DDS)")
    config.addinivalue_line("markers", "slow: takes more than ~20 s")


# Processes a test module leaves running (found by this marker, which every process the suite starts inherits)
# are listed at the end of the run: a leftover node, server or browser can change the tests after it.
SESSION_MARKER = "VLA_ROS_TEST_SESSION"
os.environ.setdefault(SESSION_MARKER, str(os.getpid()))
_leftovers: dict[str, list[str]] = {}


def marked_processes() -> list[str]:
    """'pid command' of every live process started by this test session (its own process excluded)."""
    found, marker = [], f"{SESSION_MARKER}={os.environ[SESSION_MARKER]}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as environ:
                if marker not in environ.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()
            with open(f"/proc/{entry}/stat", "rb") as stat:
                if stat.read().split(b")")[-1].split()[0] == b"Z":
                    continue  # a zombie waiting for its parent: not running
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if "multiprocessing.resource_tracker" in command or "multiprocessing.forkserver" in command:
            continue  # the interpreter's own helpers: they end with it
        found.append(f"{entry} {command[:160]}")
    return found


@pytest.fixture(scope="module", autouse=True)
def _no_leftover_processes(request):
    yield
    alive = marked_processes()
    if alive:
        _leftovers[request.node.nodeid] = alive


def pytest_terminal_summary(terminalreporter):
    if _leftovers:
        terminalreporter.section("processes left running after a test module")
        for module, alive in _leftovers.items():
            terminalreporter.write_line(f"{module}: {len(alive)}")
            for line in alive[:8]:
                terminalreporter.write_line(f"    {line}")
