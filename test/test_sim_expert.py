"""The scripted expert solves a small batch of every family through the graph's control loop and safety gate."""

import json

import numpy as np
import pytest

from vla_ros.sim.expert import PHASES
from vla_ros.sim.noise import ActionNoise
from vla_ros.sim.rollout import expert_rollout
from vla_ros.sim.tasks import FAMILIES
from vla_ros.sim.workcell import Workcell

EXPECTED_PHASES = {
    "pick": {"reach", "grasp", "lift"},
    "place": {"reach", "grasp", "lift", "move", "place", "release"},
    "stack": {"reach", "grasp", "lift", "move", "place", "release"},
    "push": {"reach", "push"},
}


@pytest.fixture(scope="module")
def workcell():
    cell = Workcell(render=False)
    yield cell
    cell.close()


@pytest.mark.parametrize("family", FAMILIES)
def test_expert_batch_succeeds(workcell, family):
    lengths = []
    for seed in range(1000, 1006):
        record = expert_rollout(workcell, seed, family=family)
        assert record.success, (seed, record.task)
        assert record.task.family == family
        lengths.append(len(record.actions))
        actions = np.stack(record.actions)
        assert np.all(np.abs(actions[:, :3]) <= 0.03 + 1e-6)  # bounded steps, like teleoperation
        assert set(actions[:, 6]) <= {0.0, 1.0}
        assert {PHASES[p] for p in record.phases} == EXPECTED_PHASES[family]
    assert 8 <= np.mean(lengths) <= 60


def test_action_noise_bursts_are_bounded_and_seeded():
    action = np.array([0.03, -0.01, 0.0, 0.0, 0.0, 0.1, 1.0], dtype=np.float32)
    noise, again = ActionNoise(0.015, seed=3), ActionNoise(0.015, seed=3)
    executed = np.stack([noise(action) for _ in range(200)])
    np.testing.assert_array_equal(executed, np.stack([again(action) for _ in range(200)]))
    assert np.all(np.abs(executed[:, :3]) <= 0.03 + 1e-7) and np.all(np.abs(executed[:, 5]) <= 0.3 + 1e-7)
    np.testing.assert_array_equal(executed[:, [3, 4, 6]], np.tile(action[[3, 4, 6]], (200, 1)))
    perturbed = np.any(executed != action, axis=1)
    assert 0.15 < perturbed.mean() < 0.6  # bursts, not constant noise
    assert np.all(executed[~perturbed] == action)
    with pytest.raises(ValueError, match="sigma"):
        ActionNoise(float("nan"), seed=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_expert_recovers_from_perturbed_execution(workcell, family):
    """DART data: the executed actions are perturbed, the recorded ones are the expert's own."""
    clean_steps, noisy_steps = 0, 0
    for seed in range(2000, 2004):
        clean_steps += len(expert_rollout(workcell, seed, family=family).actions)
        record = expert_rollout(workcell, seed, family=family, perturb=ActionNoise(0.015, seed=seed))
        assert record.success, (seed, record.task)
        noisy_steps += len(record.actions)
        actions = np.stack(record.actions)
        assert np.all(np.abs(actions[:, :3]) <= 0.03 + 1e-6)
    assert noisy_steps > clean_steps  # the perturbations took the arm off the expert's path


def test_observation_age_gives_each_chunk_a_frame_taken_before_its_tick(workcell):
    from vla_ros.core.executor import ExecutorSettings
    from vla_ros.sim.rollout import ExpertChunks, rollout

    class Watching(ExpertChunks):
        def __init__(self, cell):
            super().__init__(cell)
            self.seen = []  # (observation's tick count, the arm's distance from where the frame saw it)

        def chunk(self, observation, instruction):
            moved = float(np.abs(self.workcell.joint_positions() - observation.joint_pos).max())
            self.seen.append((observation.step, moved))
            return super().chunk(observation, instruction)

    runs = {}
    for age in (0.0, 0.1):
        source = Watching(workcell)
        run = rollout(workcell, source, 1000, family="pick", executor=ExecutorSettings(execute_steps=1),
                      max_steps=30, observation_age_s=age)
        runs[age] = (run, source.seen)
    (_, fresh_seen), (aged, aged_seen) = runs[0.0], runs[0.1]
    assert [step for step, _ in fresh_seen] == list(range(len(fresh_seen)))  # the frame of the adopting tick
    assert all(moved == 0.0 for _, moved in fresh_seen)
    assert [step for step, _ in aged_seen[1:]] == list(range(len(aged_seen) - 1))  # the previous tick's count
    assert max(moved for _, moved in aged_seen[1:]) > 1e-3  # the arm moved between the frame and the tick
    assert aged.success  # the expert reads the workcell itself, so a 0.1 s frame age does not stop it
    with pytest.raises(ValueError, match="one control period"):
        rollout(workcell, Watching(workcell), 1000, family="pick", observation_age_s=0.2)


def test_interpolated_commands_ramp_the_targets_over_the_reach_time_and_the_expert_still_succeeds(workcell):
    from vla_ros.sim.rollout import CommandRamp

    workcell.reset(1001, family="pick")
    ramp = CommandRamp(workcell)
    start = workcell.q_target.copy()
    goal = start + np.array([0.2, -0.1, 0.1, 0.0, 0.05, 0.0])
    ramp.arm(goal, 0.2)
    ramp.gripper(0.0, 0.2)
    ramp.advance(0.1)  # ten 10 ms pieces: the targets set at 0, 10, …, 90 ms of the 200 ms reach
    assert np.allclose(workcell.q_target, start + 0.45 * (goal - start), atol=1e-9)
    ramp.advance(0.2)
    assert np.allclose(workcell.q_target, workcell.kinematics.clamp(goal)) and workcell.gripper_command == 0.0
    for family in FAMILIES:
        run = expert_rollout(workcell, 1010, family=family, interpolate_commands=True, record=False)
        assert run.success, family


def test_eval_records_the_executor_settings_from_its_graph_arguments(tmp_path):
    from vla_ros.cli import main

    out = tmp_path / "eval"
    assert main(["eval", "--policy", "expert", "--episodes", "2", "--split", "unseen", "--videos", "0", "--out",
                 str(out), "--arg", "chunk_anchor:=target", "execute_steps:=2"]) == 0
    summary = json.loads((out / "results.json").read_text())
    assert summary["executor"]["chunk_anchor"] == "target" and summary["executor"]["execute_steps"] == 2
    assert summary["interpolate_commands"] is False and summary["observation_age_s"] == 0.0


def test_the_experts_episodes_do_not_depend_on_the_policys_chunk_anchor(workcell):
    """The expert moves the commanded target itself, so its recorded episodes are the same whatever the graph's
    `chunk_anchor` (the data set does not change with it), with commands followed over their reach time too."""
    from vla_ros.core.executor import ExecutorSettings

    runs = [expert_rollout(workcell, 1020, family="stack", interpolate_commands=True,
                           executor=ExecutorSettings(chunk_anchor=anchor)) for anchor in ("measured", "target")]
    assert runs[0].success and runs[0].steps == runs[1].steps
    np.testing.assert_array_equal(np.stack(runs[0].actions), np.stack(runs[1].actions))
