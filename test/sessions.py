"""The processes of a session: a child started with `start_new_session=True` leads one (its pid is the session
id), and everything it starts stays in it unless it calls setsid itself. Ray's actors and Chromium's helpers set
process groups of their own, so a killpg of the child's group misses them; the session does not."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def session_members(session: int) -> list[int]:
    """Pids of the processes in a session (this process excluded)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "(comm)": state ppid pgrp session …
        except (OSError, IndexError):
            continue
        if int(fields[3]) == session and int(stat.parent.name) != os.getpid():
            members.append(int(stat.parent.name))
    return members


def kill_session(session: int, grace_s: float = 0.0) -> list[int]:
    """Give a session's processes `grace_s` to end by themselves, then SIGKILL those left; returns their pids."""
    deadline = time.monotonic() + grace_s
    while session_members(session) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = session_members(session)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left
