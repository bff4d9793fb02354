"""Sliding-window executor logic without ROS: alignment, flushing, starvation, blending, IK limits."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vla_ros.core.action_chunks import ActionChunk, ChunkError, chunk_frame_id, chunk_points, parse_chunk
from vla_ros.core.ee_integration import EndEffectorIntegrator
from vla_ros.core.executor import ChunkExecutor, ExecutorSettings, blend_weights
from vla_ros.robot.kinematics import ArmKinematics

TASK, OTHER = 0x1234ABCD, 0x0BADF00D
DT = 0.2


def chunk(stamp_s: float, task=TASK, horizon=8, base=0.0) -> ActionChunk:
    actions = np.zeros((horizon, 7))
    actions[:, 0] = base + np.arange(horizon)  # dx encodes (base + step index) so tests can see which step ran
    actions[:, 6] = 1.0
    return ActionChunk(actions, int(round(stamp_s * 1e9)), DT, task, "00000000000000aa")


def executor(**kwargs) -> ChunkExecutor:
    ex = ChunkExecutor(ExecutorSettings(**kwargs))
    ex.set_task(TASK)
    return ex


def test_executes_the_first_steps_then_holds_without_a_new_chunk():
    ex = executor()
    assert ex.add_chunk(chunk(10.0), received_s=10.05) is None
    ran = [ex.tick(10.05 + i * DT) for i in range(5)]
    assert [s.action[0] for s in ran[:3]] == [0, 1, 2]  # steps 0..2 of the chunk
    assert ran[3].hold and "starved" in ran[3].reason  # never step 3+: no extrapolation
    assert ran[4].hold and "starved" in ran[4].reason  # still starved, not "no chunk received" (it was)


def test_hold_reasons_tell_a_missing_first_chunk_from_starvation_and_from_a_chunk_too_old():
    ex = executor()
    assert ex.tick(10.0).reason == "no chunk received for the current task"
    ex.add_chunk(chunk(10.0), received_s=10.05)
    [ex.tick(10.05 + i * DT) for i in range(3)]
    ex.add_chunk(chunk(10.1), received_s=11.0)  # its 3 executable steps ended at 10.7 s
    assert "too old" in ex.tick(11.0).reason
    assert "starved" in ex.tick(11.2).reason


def test_a_late_chunk_skips_the_steps_that_lie_in_the_past():
    ex = executor(execute_steps=5)
    ex.add_chunk(chunk(10.0), received_s=10.45)
    steps = [ex.tick(10.45 + i * DT) for i in range(4)]
    # At 10.45 s the intervals of steps 0 and 1 (to 10.2 and 10.4 s) are past: execution starts at step 2.
    assert [s.action[0] for s in steps[:3]] == [2, 3, 4]
    assert steps[3].hold


def test_a_chunk_from_a_frame_taken_mid_period_starts_with_its_first_step():
    # The frame is 0.15 s old at the tick (past step 0's midpoint, inside its interval): step 0 runs now.
    # A policy trained on frames taken at control ticks acts from a mid-period frame as from the next tick;
    # dropping step 0 here cost the graph most of its success (CHANGELOG.md, policy v3).
    ex = executor()
    ex.add_chunk(chunk(10.0), received_s=10.1)
    assert [ex.tick(10.15 + i * DT).action[0] for i in range(3)] == [0, 1, 2]
    late = executor()
    late.add_chunk(chunk(10.0), received_s=10.2)
    assert [late.tick(10.25 + i * DT).action[0] for i in range(2)] == [1, 2]  # step 0's interval has ended


def test_a_chunk_whose_window_lies_in_the_past_is_not_executed():
    ex = executor()
    ex.add_chunk(chunk(10.0), received_s=11.0)
    step = ex.tick(11.0)
    assert step.hold and "too old" in step.reason


def test_the_newest_chunk_wins_at_the_window_boundary_and_the_margin_is_measured():
    ex = executor()
    ex.add_chunk(chunk(10.0), received_s=10.0)
    for i in range(3):
        ex.tick(10.0 + i * DT)
    ex.add_chunk(chunk(10.3, base=100), received_s=10.35)
    ex.add_chunk(chunk(10.5, base=200), received_s=10.55)
    step = ex.tick(10.6)  # window of the first chunk is done: adopt the newest (10.5), aligned to step 0
    assert step.action[0] == 200
    assert step.arrival_margin_s == pytest.approx(10.6 - 10.55)
    assert step.chunk_stamp_s == pytest.approx(10.5)


def test_a_chunk_arriving_while_starved_has_a_negative_margin():
    ex = executor(execute_steps=1)
    ex.add_chunk(chunk(10.0), received_s=10.0)
    ex.tick(10.0)
    assert ex.tick(10.2).hold
    ex.add_chunk(chunk(10.25), received_s=10.3)
    step = ex.tick(10.3)
    assert not step.hold and step.arrival_margin_s == pytest.approx(10.2 - 10.3)


def test_a_tasks_first_chunk_reports_the_wait_not_an_arrival_margin():
    ex = executor()
    assert ex.tick(10.0).hold and ex.tick(10.2).hold  # the task began at 10.0; the policy is still inferring
    ex.add_chunk(chunk(10.6), received_s=10.7)
    first = ex.tick(10.8)  # steps 1 and 2 of the chunk run at 10.8 and 11.0
    assert first.arrival_margin_s is None and first.first_chunk_wait_s == pytest.approx(0.7)  # arrived 0.7 s after the task began
    second = ex.tick(11.0)
    assert second.arrival_margin_s is None and second.first_chunk_wait_s is None
    ex.add_chunk(chunk(11.0, base=100), received_s=11.05)
    step = ex.tick(11.2)  # the next chunk replaces an executed window: an arrival margin
    assert step.action[0] == 101 and step.first_chunk_wait_s is None
    assert step.arrival_margin_s == pytest.approx(11.2 - 11.05)
    ex.set_task(OTHER)  # a new task: its first chunk is a wait again
    assert ex.tick(12.0).hold
    ex.add_chunk(chunk(12.0, task=OTHER), received_s=12.1)
    assert ex.tick(12.2).first_chunk_wait_s == pytest.approx(0.1)


def test_task_change_and_stop_flush_every_queued_chunk():
    ex = executor()
    ex.add_chunk(chunk(10.0), received_s=10.0)
    ex.tick(10.0)
    ex.set_task(OTHER)
    assert ex.tick(10.2).hold  # the old task's chunk is gone at once
    assert "not the current task" in ex.add_chunk(chunk(10.3), received_s=10.3)  # late chunk of the old task
    assert ex.tick(10.4).hold
    ex.set_task(None)
    assert ex.tick(10.6).reason == "idle"
    assert ex.add_chunk(chunk(10.7, task=OTHER), received_s=10.7) == "no current task"


def test_refuses_non_finite_and_out_of_order_chunks():
    ex = executor()
    bad = chunk(10.0)
    bad.actions[2, 1] = np.nan
    assert ex.add_chunk(bad, received_s=10.0) == "chunk has non-finite values"
    assert ex.add_chunk(chunk(10.0), received_s=10.0) is None
    assert "not newer" in ex.add_chunk(chunk(9.9), received_s=10.1)


def test_higher_control_rates_split_each_step_evenly():
    ex = executor(control_rate=20.0)  # 20 Hz: four ticks per 0.2 s action step
    ex.add_chunk(chunk(10.0, base=4), received_s=10.0)
    actions = [ex.tick(10.0 + i * 0.05).action for i in range(12)]
    assert [a[0] for a in actions[:4]] == [1.0] * 4  # step 0 (dx=4) applied as 4 quarters
    assert sum(a[0] for a in actions) == pytest.approx(4 + 5 + 6)
    assert all(a[6] == 1.0 for a in actions)  # the gripper is absolute, never scaled
    assert ex.tick(10.6).hold


def test_blending_weights_and_average():
    w = blend_weights(3, 0.5)
    assert w.sum() == pytest.approx(1.0) and w[0] > w[1] > w[2]  # ACT: the oldest weighs most
    assert blend_weights(3, -0.5)[2] > blend_weights(3, -0.5)[0]
    ex = executor(blend=True, blend_decay=0.0)
    ex.add_chunk(chunk(10.0, base=0), received_s=10.0)
    ex.add_chunk(chunk(10.2, base=10), received_s=10.2)
    step = ex.tick(10.25)  # covers step 1 of the first chunk and step 0 of the second
    assert step.action[0] == pytest.approx((1 + 10) / 2)
    assert step.action[6] == 1.0


def test_blending_holds_when_nothing_covers_the_present():
    ex = executor(blend=True)
    ex.add_chunk(chunk(10.0), received_s=10.0)
    assert ex.tick(10.7).hold  # beyond execute_steps (3 × 0.2 s) of the only chunk


def test_chunk_message_round_trip_and_errors():
    c = chunk(3.5)
    points = chunk_points(c.actions, DT)
    parsed = parse_chunk(("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper"), points, c.stamp_ns,
                         chunk_frame_id(TASK, "00000000000000aa"))
    np.testing.assert_array_equal(parsed.actions, c.actions)
    assert (parsed.task_hash, parsed.dt_s, parsed.stamp_ns) == (TASK, pytest.approx(DT), c.stamp_ns)
    with pytest.raises(ChunkError, match="joint_names"):
        parse_chunk(("waist",), points, 0, chunk_frame_id(TASK, "aa"))
    with pytest.raises(ChunkError, match="frame_id"):
        parse_chunk(("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper"), points, 0, "base_link")


@pytest.fixture(scope="module")
def integrator():
    return EndEffectorIntegrator(ArmKinematics())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.floats(-0.05, 0.05), min_size=6, max_size=6), min_size=1, max_size=10))
def test_ik_targets_stay_within_the_joint_limits(integrator, deltas):
    kin = integrator.kinematics
    integrator.anchor(np.array([0.0, -0.3, 0.3, 0.0, 1.5, 0.0]))
    for delta in deltas:
        targets = integrator.apply(np.array([*delta, 1.0]))
        assert np.all(targets.arm >= kin.joint_limits[:, 0] - 1e-9)
        assert np.all(targets.arm <= kin.joint_limits[:, 1] + 1e-9)


def test_integration_moves_the_end_effector_by_the_delta(integrator):
    q0 = np.array([0.0, -0.3, 0.3, 0.0, 1.5, 0.0])
    integrator.anchor(q0)
    start, _ = integrator.kinematics.fk(q0)
    for _ in range(5):
        targets = integrator.apply(np.array([0.01, 0.0, -0.005, 0, 0, 0, 0.0]))
    end, _ = integrator.kinematics.fk(targets.arm)
    np.testing.assert_allclose(end - start, [0.05, 0.0, -0.025], atol=2e-3)
    assert targets.gripper == 0.0


def test_trajectory_follower_interpolates_like_a_joint_trajectory_controller():
    from vla_ros.core.trajectory import TrajectoryFollower, TrajectoryPoint

    follower = TrajectoryFollower(np.zeros(2))
    follower.command(10.0, [TrajectoryPoint(np.array([1.0, -2.0]), 0.2), TrajectoryPoint(np.array([2.0, 0.0]), 0.4)])
    np.testing.assert_allclose(follower.sample(10.1), [0.5, -1.0])
    np.testing.assert_allclose(follower.sample(10.3), [1.5, -1.0])
    np.testing.assert_allclose(follower.sample(11.0), [2.0, 0.0])
    # A new command starts from where the desired positions are, not from the old goal.
    follower.command(11.0, [TrajectoryPoint(np.array([4.0, 0.0]), 1.0)])
    np.testing.assert_allclose(follower.sample(11.5), [3.0, 0.0])
    follower.command(11.5, [TrajectoryPoint(np.array([0.0, 0.0]), 0.5)], start_s=12.0)  # delayed start
    np.testing.assert_allclose(follower.sample(11.9), [3.0, 0.0])
    np.testing.assert_allclose(follower.sample(12.25), [1.5, 0.0])


def test_ensemble_is_the_weighted_mean_with_a_gripper_vote():
    from vla_ros.core.executor import ensemble

    steps = [[1.0, 0, 0, 0, 0, 0, 1.0], [3.0, 0, 0, 0, 0, 0, 0.0], [5.0, 0, 0, 0, 0, 0, 0.0]]
    even = ensemble(steps, 0.0)
    assert even[0] == pytest.approx(3.0) and even[6] == 0.0  # one of three votes to close
    oldest_first = ensemble(steps, 5.0)
    assert oldest_first[0] == pytest.approx(1.0, abs=0.05) and oldest_first[6] == 1.0


def test_a_late_chunk_reports_its_age_at_arrival_and_the_silence_before_it():
    ex = executor()
    ex.add_chunk(chunk(10.0), received_s=10.05)
    first = ex.tick(10.05)
    assert first.arrival_margin_s is None and first.arrival_age_s is None  # the task's first chunk: a wait
    [ex.tick(10.25 + i * DT) for i in range(2)]  # steps 1 and 2: the window ends, needed again at 10.65
    assert ex.tick(10.65).hold
    ex.add_chunk(chunk(10.9), received_s=11.2)  # 1.15 s of silence; computed from a frame 0.3 s old
    late = ex.tick(11.25)
    assert late.arrival_margin_s == pytest.approx(10.65 - 11.2)
    assert late.arrival_age_s == pytest.approx(0.3)
    assert late.arrival_gap_s == pytest.approx(1.15)
    ex.set_task(OTHER)  # a new task: its first chunk has no predecessor to measure a gap from
    ex.add_chunk(chunk(12.0, task=OTHER), received_s=12.1)
    ex.tick(12.1)
    ex.add_chunk(chunk(12.2, task=OTHER), received_s=12.3)
    [ex.tick(12.3 + i * DT) for i in range(2)]
    early = ex.tick(12.7)  # adopted on time: queued 0.4 s before it was needed
    assert early.arrival_margin_s == pytest.approx(0.4)
    assert early.arrival_gap_s == pytest.approx(0.2) and early.arrival_age_s == pytest.approx(0.1)


def test_the_arrival_margin_counts_from_the_tick_that_needs_the_chunk_not_from_a_nominal_time():
    ex = executor()
    ex.add_chunk(chunk(10.0), received_s=10.05)
    [ex.tick(10.05 + i * DT) for i in range(3)]  # the window's nominal end: 10.65
    ex.add_chunk(chunk(10.5, base=10), received_s=10.6503)  # after the nominal end, before the tick runs
    adopted = ex.tick(10.6505)  # the tick wakes 0.5 ms late, as real ticks do
    assert not adopted.hold
    assert adopted.arrival_margin_s == pytest.approx(0.0002)  # early for the tick that needed it: no wait
    [ex.tick(10.85 + i * DT) for i in range(2)]
    assert ex.tick(11.25).hold  # starved: this holding tick is when the next chunk was needed
    ex.add_chunk(chunk(11.2, base=20), received_s=11.3)
    assert ex.tick(11.45).arrival_margin_s == pytest.approx(11.25 - 11.3)


def test_observe_after_window_adopts_only_a_chunk_from_a_frame_taken_after_the_window():
    ex = executor(observe_after_window=True)
    ex.add_chunk(chunk(10.0), received_s=10.05)
    [ex.tick(10.05 + i * DT) for i in range(3)]  # the window's last step ends at 10.65
    ex.add_chunk(chunk(10.3, base=10), received_s=10.4)  # planned from a frame taken while the window ran
    held = ex.tick(10.65)
    assert held.hold and held.reason == "waiting for a chunk observed after the last window"
    ex.add_chunk(chunk(10.7, base=20), received_s=10.8)  # frame taken after the window's end
    adopted = ex.tick(10.85)
    assert adopted.action[0] == 20  # its step 0: the frame is 0.15 s old, inside step 0's interval
    assert adopted.arrival_margin_s == pytest.approx(0.05)  # needed one period after the window's end
    plain = executor()  # the design's latency hiding takes the chunk planned during the window at once
    plain.add_chunk(chunk(10.0), received_s=10.05)
    [plain.tick(10.05 + i * DT) for i in range(3)]
    plain.add_chunk(chunk(10.3, base=10), received_s=10.4)
    assert plain.tick(10.65).action[0] == 11  # step 1: its step 0 interval [10.3, 10.5) is past


def test_starvation_log_keeps_where_the_worst_chunk_lost_its_time():
    from vla_ros.core.timing import Peak, StarvationLog

    log = StarvationLog()
    log.command(-0.2, age_s=0.15, gap_s=0.5, at_s=100.0)
    log.command(-0.9, age_s=1.1, gap_s=1.3, at_s=250.5)
    log.command(-0.5, age_s=0.2, gap_s=0.9, at_s=300.0)
    summary = log.summary()
    assert summary["chunk_arrival_margin_worst_ms"] == "-900.00"
    assert summary["chunk_arrival_margin_worst_chunk_age_at_arrival_ms"] == "1100.00"
    assert summary["chunk_arrival_margin_worst_gap_before_ms"] == "1300.00"
    assert summary["chunk_arrival_margin_worst_at"] == "250.500"
    peak = Peak()
    assert peak.summary("latency") == {}
    for value, at in [(0.004, 1.0), (1.2, 2.0), (0.005, 3.0)]:
        peak.add(value, at)
    assert peak.summary("latency") == {"latency_ms_max": "1200.00", "latency_max_at": "2.000"}


def test_starvation_log_names_what_the_latest_chunk_kept_the_executor_waiting_on():
    from vla_ros.core.timing import StarvationLog

    log = StarvationLog()
    log.command(0.05)  # an early chunk: nothing waited on
    for _ in range(3):
        log.hold("starved: waiting for the next chunk")
    log.hold("newest chunk is too old: its executable steps lie in the past")
    log.command(-0.8)  # adopted 0.8 s after it was needed
    log.hold("no fresh /joint_states")
    log.command(None)  # a tick inside a window: no margin, the holds before it are forgotten
    log.command(-0.1)
    summary = log.summary()
    assert summary["chunk_arrival_margin_worst_ms"] == "-800.00"
    assert summary["chunk_arrival_margin_worst_waited_on"] == (
        "starved: waiting for the next chunk ×3; newest chunk is too old: its executable steps lie in the past ×1")
    assert summary["hold_ticks[starved: waiting for the next chunk]"] == "3"
    assert summary["hold_ticks[no fresh /joint_states]"] == "1"
    assert "chunk_arrival_margin_worst_ms" not in StarvationLog().summary()
