"""Real-time scheduling requests for the control thread: granted, or a plain statement of why not."""

from __future__ import annotations

import os
import sys
import threading

from vla_ros.nodes.realtime import (
    GIL_SWITCH_INTERVAL_S,
    ScheduledCollector,
    freeze_startup_objects,
    request_realtime,
    shorten_gil_switch_interval,
)


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


def test_scheduled_collector_turns_automatic_collection_off_and_collects_cycles_after_ticks():
    import gc
    import weakref

    class Node:
        pass

    collector = ScheduledCollector(full_every=2)
    try:
        assert not gc.isenabled()
        cycle = Node()
        cycle.me = cycle  # only the cyclic collector frees this
        alive = weakref.ref(cycle)
        del cycle
        for _ in range(3 * gc.get_threshold()[0] // 10 + 1):  # allocations that would trigger automatic gen-0 runs
            [Node() for _ in range(10)]
        assert alive() is not None  # nothing collected it behind the loop's back
        assert collector.after_tick() >= 0.0 and collector.after_tick() >= 0.0  # the second tick is a full one
        assert alive() is None and collector.ticks == 2 and collector.longest_s >= 0.0
    finally:
        collector.close()
    assert gc.isenabled()


def test_freezing_start_up_objects_exempts_them_from_collection_but_not_what_comes_later():
    import gc
    import weakref

    class Node:
        pass

    startup = Node()  # alive when the node has been built
    try:
        frozen, seconds = freeze_startup_objects()
        assert frozen == gc.get_freeze_count() > 1000 and seconds >= 0.0
        assert not any(obj is startup for obj in gc.get_objects())  # no collection will walk it again
        later = Node()
        later.me = later  # a cycle made afterwards: only the cyclic collector frees it
        freed = weakref.ref(later)
        del later
        gc.collect()
        assert freed() is None
    finally:
        gc.unfreeze()
    assert any(obj is startup for obj in gc.get_objects())


def test_a_node_thread_that_does_not_stop_in_time_is_named_with_where_it_is(capfd):
    """A node's exit never waits past its grace for a stuck thread, and says which thread and where it was."""
    import time

    import rclpy
    from rclpy.node import Node

    from vla_ros.nodes.runtime import NodeThreads

    context = rclpy.Context()
    rclpy.init(context=context)
    node = Node("stuck_thread_probe", context=context)
    try:
        release = threading.Event()
        threads = NodeThreads(node)
        threads.start(lambda: release.wait(10), "stuck_worker")
        threads.start(lambda: threads.stopping.wait(10), "obedient_worker")
        started = time.monotonic()
        threads.stop(timeout_s=0.3)
        assert time.monotonic() - started < 2.0
        err = capfd.readouterr().err
        assert "thread stuck_worker did not stop within 0.3 s" in err and "release.wait(10)" in err
        assert "obedient_worker" not in err
        release.set()
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)
