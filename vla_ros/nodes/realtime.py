"""Real-time scheduling for a control thread, as ros2_control's controller manager asks for it.

SCHED_FIFO needs CAP_SYS_NICE (or an rtprio limit in /etc/security/limits.conf): without it the thread
keeps normal scheduling and the caller reports so. A shorter GIL switch interval lets a thread that wakes
from its sleep take the interpreter within ~0.5 ms instead of Python's default 5 ms.
"""

from __future__ import annotations

import os
import sys

GIL_SWITCH_INTERVAL_S = 0.0005


def shorten_gil_switch_interval(seconds: float = GIL_SWITCH_INTERVAL_S) -> None:
    """Process-wide: other threads give up the GIL after `seconds` when a woken thread asks for it."""
    sys.setswitchinterval(seconds)


def request_realtime(priority: int) -> str:
    """SCHED_FIFO at `priority` (1–99) for the calling thread; 0 keeps normal scheduling. Says what it got."""
    if priority <= 0:
        return "normal scheduling (thread_priority 0)"
    if not hasattr(os, "sched_setscheduler"):
        return "normal scheduling (this platform has no SCHED_FIFO)"
    priority = min(priority, os.sched_get_priority_max(os.SCHED_FIFO))
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))  # 0: the calling thread on Linux
    except PermissionError:
        return (f"normal scheduling (SCHED_FIFO {priority} not permitted: give the user an rtprio limit, "
                f"as for ros2_control)")
    except OSError as exc:
        return f"normal scheduling (SCHED_FIFO {priority} refused: {exc.strerror})"
    return f"SCHED_FIFO priority {priority}"
