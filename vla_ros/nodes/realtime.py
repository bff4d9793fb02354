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


def freeze_startup_objects() -> tuple[int, float]:
    """Exempt everything that exists now from Python's cyclic garbage collector; returns (objects, seconds).

    Called once a node is built (model loaded, imports done). A node that imports torch and transformers holds
    ~380 000 tracked objects, and a full automatic collection walked all of them: 240–320 ms in the policy
    process with the 2 cores busy, during which the GIL is held and the node publishes nothing. Such
    collections are rare, but one of them stalls every chunk of the graph for a second or more. Frozen objects
    are never scanned again; collection keeps working for what the node allocates afterwards.
    """
    import gc
    import time

    started = time.monotonic()
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count(), time.monotonic() - started


class ScheduledCollector:
    """Python's cyclic garbage collector run where the control loop chooses, not where it happens to trigger.

    An automatic collection runs in whichever thread allocates at the wrong moment and holds the GIL
    throughout: a full one took 18–34 ms in the executor on the busy 2-core machine, and a control tick
    that woke meanwhile waited for it. Here the objects that exist after start-up are frozen (never
    scanned again), automatic collection is off, and `after_tick()` (called right after a tick has published,
    a whole control period before the next) collects the young generations, and everything every
    `full_every` ticks. Reference counting still frees all acyclic garbage at once. `close()` restores.
    """

    def __init__(self, full_every: int = 50):
        import gc

        self._gc = gc
        self.full_every = max(1, int(full_every))
        self.ticks = 0
        self.longest_s = 0.0
        self._was_enabled = gc.isenabled()
        freeze_startup_objects()  # run_node froze the node's start-up objects; this adds the thread's own
        gc.disable()

    def after_tick(self) -> float:
        """Collect now; returns the seconds it took."""
        import time

        self.ticks += 1
        started = time.monotonic()
        self._gc.collect(2 if self.ticks % self.full_every == 0 else 1)
        took = time.monotonic() - started
        self.longest_s = max(self.longest_s, took)
        return took

    def close(self) -> None:
        self._gc.unfreeze()
        if self._was_enabled:
            self._gc.enable()
