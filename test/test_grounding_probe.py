"""grounding_probe's reading of the policy's grounding head: the shipped policy puts the named block where it is."""

from __future__ import annotations

import numpy as np
import pytest

from ros_harness import REPO
from vla_ros.policy.grounding import GroundingProbe, GroundingSettings, names_reference
from vla_ros.policy.modeling_vla import PolicyLoadError


def test_the_shipped_policy_grounds_the_named_block_on_a_live_frame():
    from vla_ros.sim.tasks import parse_instruction
    from vla_ros.sim.workcell import Workcell

    probe = GroundingProbe(GroundingSettings())
    errors = []
    with Workcell(image_size=probe.image_size, split="train") as workcell:
        for seed in (1_000_001, 1_000_002, 1_000_005):
            observation = workcell.reset(seed)
            task = workcell.task.instruction
            target, reference = probe.ground(observation.image, task, observation.joint_pos)
            named = parse_instruction(task)
            truth = workcell.world_state().objects[named.target].pos[:2]
            errors.append(float(np.linalg.norm(target - truth)))
            assert (reference is None) == (not named.reference)
    assert np.median(errors) < 0.03, f"grounded targets {errors} m from the named blocks"


def test_a_policy_without_the_grounding_head_is_refused_in_one_sentence():
    with pytest.raises(PolicyLoadError, match="trained without the grounding head"):
        GroundingProbe(GroundingSettings(model_path=str(REPO / "test/data/replay/policy")))


@pytest.mark.parametrize("task, expected", [("pick up the red block", False),
                                            ("put the red block on the plate", True),
                                            ("wave hello", None)])
def test_names_reference(task, expected):
    assert names_reference(task) is expected
