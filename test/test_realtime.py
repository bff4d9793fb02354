"""Real-time scheduling requests for the control thread: granted, or a plain statement of why not."""

from __future__ import annotations

import os
import sys
import threading

from vla_ros.nodes.realtime import GIL_SWITCH_INTERVAL_S, request_realtime, shorten_gil_switch_interval


def _in_thread(function):
    result = {}

    def body():
        result["said"] = function()
        result["policy"] = os.sched_getscheduler(0)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    return result


def test_priority_zero_keeps_normal_scheduling():
    result = _in_thread(lambda: request_realtime(0))
    assert result["said"].startswith("normal scheduling")
    assert result["policy"] == os.SCHED_OTHER


def test_request_gets_fifo_for_that_thread_only_or_says_why_not():
    result = _in_thread(lambda: request_realtime(10))
    if result["said"].startswith("SCHED_FIFO"):
        assert result["policy"] == os.SCHED_FIFO
    else:
        assert "not permitted" in result["said"] or "refused" in result["said"]
        assert result["policy"] == os.SCHED_OTHER
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the calling (test) thread is untouched


def test_gil_switch_interval():
    before = sys.getswitchinterval()
    try:
        shorten_gil_switch_interval()
        assert abs(sys.getswitchinterval() - GIL_SWITCH_INTERVAL_S) < 1e-9
    finally:
        sys.setswitchinterval(before)
