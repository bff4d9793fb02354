"""The scripted expert solves a small batch of every family through the graph's control loop and safety gate."""

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
