"""The scripted expert solves a small batch of every family through the 7-D delta interface."""

import numpy as np
import pytest

from vla_ros.sim.expert import PHASES
from vla_ros.sim.rollout import ExpertPolicy, run_episode
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
    policy = ExpertPolicy(workcell)
    lengths = []
    for seed in range(1000, 1006):
        record = run_episode(workcell, policy, seed, family=family)
        assert record.success, (seed, record.task)
        assert record.task.family == family
        lengths.append(len(record.actions))
        actions = np.stack(record.actions)
        assert np.all(np.abs(actions[:, :3]) <= 0.03 + 1e-6)  # bounded steps, like teleoperation
        assert set(actions[:, 6]) <= {0.0, 1.0}
        assert {PHASES[p] for p in record.phases} == EXPECTED_PHASES[family]
    assert 8 <= np.mean(lengths) <= 60
