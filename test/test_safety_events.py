"""Unsafe events measured from the simulator's physics (`sim.safety_events`), on the real MuJoCo workcell."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from vla_ros.core.executor import ExecutorSettings
from vla_ros.policy.evaluation import evaluate, events_table, safety_table
from vla_ros.sim.rollout import ExpertChunks, rollout
from vla_ros.sim.safety_events import EVENT_KINDS, EventThresholds, SafetyWatch, support_height
from vla_ros.sim.tasks import ObjectState, WorldState
from vla_ros.sim.workcell import Workcell

UNSEEN = 1_000_000


@pytest.fixture(scope="module")
def workcell():
    with Workcell(render=False) as cell:
        yield cell


def _move_object(workcell: Workcell, key: str, dx: float, dy: float, dz: float = 0.0) -> None:
    body = workcell.model.body(workcell.layout.placement(key).body)
    adr = workcell.model.jnt_qposadr[workcell.model.body_jntadr[body.id]]
    workcell.data.qpos[adr:adr + 3] += (dx, dy, dz)
    mujoco.mj_forward(workcell.model, workcell.data)


def _bystander(workcell: Workcell) -> str:
    task = workcell.task
    return next(p.key for p in workcell.layout.placements if p.key not in (task.target, task.reference))


def test_the_careful_expert_picks_without_an_unsafe_event(workcell):
    watch = SafetyWatch(workcell)
    run = rollout(workcell, ExpertChunks(workcell), UNSEEN, family="pick", executor=ExecutorSettings(execute_steps=1),
                  watch=watch)
    assert run.success
    assert run.events == {} and not watch.record.unsafe


def test_a_bystander_pushed_aside_is_displaced_once_and_the_moved_block_is_not(workcell):
    workcell.reset(UNSEEN + 1, family="place")
    watch = SafetyWatch(workcell)
    watch.start()
    _move_object(workcell, workcell.task.target, 0.06, 0.0)  # the block the task moves may move
    workcell.advance(monitor=watch)
    assert watch.record.events == {}
    _move_object(workcell, _bystander(workcell), 0.0, 0.05)
    workcell.advance(monitor=watch)
    workcell.advance(monitor=watch)
    assert watch.record.events == {"displaced": 1}


def test_an_object_knocked_off_the_table_is_counted_once(workcell):
    workcell.reset(UNSEEN + 2, family="pick")
    watch = SafetyWatch(workcell)
    watch.start()
    _move_object(workcell, _bystander(workcell), 0.0, 0.9, 0.0)  # beyond the table's edge: it falls
    for _ in range(4):
        workcell.advance(monitor=watch)
    assert watch.record.events.get("knocked_off") == 1


def test_the_arm_driven_into_the_table_is_an_arm_table_event(workcell):
    workcell.reset(UNSEEN + 3, family="pick")
    watch = SafetyWatch(workcell)
    watch.start()
    pos, _ = workcell.ee_pose()
    target = np.array([pos[0], pos[1], -0.05])
    ik = workcell.kinematics.ik(workcell.joint_positions(), target, workcell.ee_target.rot)
    workcell.set_arm_target(ik.q)
    for _ in range(6):
        workcell.advance(monitor=watch)
    assert watch.record.events.get("arm_table", 0) >= 1


def test_a_block_let_go_high_above_the_table_is_a_high_release(workcell):
    watch = SafetyWatch(workcell)
    run = rollout(workcell, ExpertChunks(workcell), UNSEEN + 4, family="pick",
                  executor=ExecutorSettings(execute_steps=1), watch=watch)
    assert run.success and run.events == {}
    pos, _ = workcell.ee_pose()
    ik = workcell.kinematics.ik(workcell.joint_positions(), pos + [0.0, 0.0, 0.06], workcell.ee_target.rot)
    workcell.set_arm_target(ik.q)
    for _ in range(3):
        workcell.advance(monitor=watch)
    workcell.set_gripper_target(1.0)
    for _ in range(3):
        workcell.advance(monitor=watch)
    assert watch.record.events == {"high_release": 1}


def test_a_restored_state_does_not_count_what_happened_before_it(workcell):
    workcell.reset(UNSEEN + 5, family="push")
    _move_object(workcell, _bystander(workcell), 0.0, 0.05)
    state = workcell.get_state()
    watch = SafetyWatch(workcell)
    workcell.set_state(state)
    watch.start()
    workcell.advance(monitor=watch)
    assert watch.record.events == {}


def test_support_height_is_the_top_of_what_is_below():
    block = ObjectState(pos=np.array([0.3, 0.0, 0.1]), half_extents=np.full(3, 0.015))
    base = ObjectState(pos=np.array([0.305, 0.0, 0.02]), half_extents=np.full(3, 0.02))
    aside = ObjectState(pos=np.array([0.4, 0.1, 0.02]), half_extents=np.full(3, 0.02))
    world = WorldState(objects={"red": block, "blue": base, "green": aside}, ee_pos=np.zeros(3), gripper=1.0,
                       start_pos={})
    assert support_height(world, "red") == pytest.approx(0.04)
    world.objects["blue"] = ObjectState(pos=np.array([0.2, 0.0, 0.02]), half_extents=np.full(3, 0.02))
    assert support_height(world, "red") == 0.0


def test_evaluation_reports_unsafe_episodes_events_and_the_gates_actions(tmp_path):
    summary = evaluate(None, "unseen", 4, out_dir=tmp_path, progress=False)
    safety = summary["safety"]
    assert set(safety["events_by_kind"]) == set(EVENT_KINDS)
    assert 0 <= safety["unsafe_episodes"] <= 4
    assert safety["unsafe_rate"] == pytest.approx(safety["unsafe_episodes"] / 4)
    low, high = safety["unsafe_wilson95"]
    assert low <= safety["unsafe_rate"] <= high
    for row in summary["per_family"].values():
        assert "unsafe_rate" in row
    text = (tmp_path / "results.md").read_text()
    assert "Unsafe episodes" in text and "knocked off" in text
    assert safety_table([summary]).count("\n") == 3 and events_table([summary]).count("\n") == 3


def test_thresholds_are_what_decides():
    strict = EventThresholds(displaced_m=0.001)
    with Workcell(render=False) as cell:
        cell.reset(UNSEEN + 1, family="place")
        watch = SafetyWatch(cell, strict)
        watch.start()
        _move_object(cell, _bystander(cell), 0.0, 0.005)
        cell.advance(monitor=watch)
        assert watch.record.events == {"displaced": 1}
