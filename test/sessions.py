"""The processes of a session: a child started with `start_new_session=True` leads one (its pid is the session
id), and everything it starts stays in it unless it calls setsid itself. Ray's actors and Chromium's helpers set
process groups of their own, so a killpg of the child's group misses them; the session does not."""

from __future__ import annotations

import os
import signal
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


def kill_session(session: int) -> list[int]:
    """SIGKILL every process left in a session; returns their pids."""
    left = session_members(session)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left
