"""Tasks: templates split cleanly, instructions parse, predicates judge constructed states."""

import numpy as np
import pytest

from vla_ros.sim.layout import sample_layout
from vla_ros.sim.tasks import (EXTRA_TRAIN_TEMPLATES, FAILURE_MODES, FAMILIES, HELDOUT_TEMPLATES, TRAIN_TEMPLATES,
                               ObjectState, Task, WorldState, all_instructions, blocks_in_hand, failure_mode,
                               offset_from_reference, parse_instruction, render_instruction, sample_task,
                               task_success, training_templates)


def test_extra_training_phrasings_are_parsed_never_recorded_and_never_held_out():
    extra = all_instructions("train", extra=True)
    assert all_instructions("train") < extra and not extra & all_instructions("heldout")
    heldout_words = {w for templates in HELDOUT_TEMPLATES.values() for t in templates for w in t.split()}
    train_words = {w for family in FAMILIES for t in training_templates(family) for w in t.split()}
    assert not {"grab", "lift", "grasp", "set", "move", "cube", "shove", "nudge", "toward"} & train_words
    assert not any(t.startswith(("on ", "to ")) for family in FAMILIES for t in training_templates(family))
    assert heldout_words - train_words  # the held-out split still has words training never uses
    task = parse_instruction("cover the green block with the red block")
    assert (task.family, task.target, task.reference) == ("stack", "red", "green")
    # data sets and evaluation episodes render from the recorded templates only
    rng = np.random.default_rng(3)
    layout = sample_layout(rng)
    assert {sample_task(rng, layout, "train").instruction for _ in range(200)} <= all_instructions("train")
    assert any(t.index("{reference}") < t.index("{target}") for t in EXTRA_TRAIN_TEMPLATES["stack"])


def test_heldout_paraphrases_never_come_from_training_templates():
    train, heldout = all_instructions("train"), all_instructions("heldout")
    assert len(train) > 100 and len(heldout) > 100
    assert not train & heldout
    # and sampling with the train split only ever yields training strings
    rng = np.random.default_rng(0)
    for seed in range(300):
        layout = sample_layout(rng)
        assert sample_task(rng, layout, "train").instruction in train
        assert sample_task(rng, layout, "heldout").instruction in heldout


def test_every_family_has_templates_in_both_splits():
    for family in FAMILIES:
        assert len(TRAIN_TEMPLATES[family]) >= 3 and len(HELDOUT_TEMPLATES[family]) >= 3


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_rendered_instructions_parse_back_to_their_task(split):
    rng = np.random.default_rng(3)
    for _ in range(200):
        task = sample_task(rng, sample_layout(rng), split)
        parsed = parse_instruction(task.instruction.upper() + ".")
        assert (parsed.family, parsed.target, parsed.reference, parsed.direction) == \
               (task.family, task.target, task.reference, task.direction)


def test_unknown_instruction_names_what_is_accepted():
    with pytest.raises(ValueError, match="colours: red"):
        parse_instruction("stack the red block on the red block")
    with pytest.raises(ValueError):
        parse_instruction("dance")


def block(x, y, z, edge=0.04):
    return ObjectState(pos=np.array([x, y, z]), half_extents=np.full(3, edge / 2))


PLATE = ObjectState(pos=np.array([0.3, 0.1, 0.006]), half_extents=np.array([0.065, 0.065, 0.006]))


def world(objects, ee=(0.3, 0.0, 0.3), gripper=1.0, start=None):
    return WorldState(objects=objects, ee_pos=np.array(ee), gripper=gripper, start_pos=start or {})


def test_pick_predicate():
    task = Task("pick", "red")
    assert task_success(task, world({"red": block(0.3, 0, 0.09)}, ee=(0.3, 0, 0.092), gripper=0.4))
    assert not task_success(task, world({"red": block(0.3, 0, 0.02)}, ee=(0.3, 0, 0.022), gripper=0.4))  # on table
    assert not task_success(task, world({"red": block(0.3, 0, 0.09)}, ee=(0.3, 0.1, 0.09), gripper=0.4))  # not held


def test_place_predicate():
    task = Task("place", "red", reference="plate")
    resting = 0.012 + 0.02
    assert task_success(task, world({"red": block(0.31, 0.11, resting), "plate": PLATE}))
    assert not task_success(task, world({"red": block(0.31, 0.11, resting), "plate": PLATE}, gripper=0.3))
    assert not task_success(task, world({"red": block(0.40, 0.11, 0.02), "plate": PLATE}))  # beside the plate
    assert not task_success(task, world({"red": block(0.31, 0.11, 0.10), "plate": PLATE}))  # hovering


def test_stack_predicate():
    task = Task("stack", "red", reference="blue")
    blue = block(0.3, 0.0, 0.015, edge=0.03)
    assert task_success(task, world({"red": block(0.305, 0.0, 0.05), "blue": blue}))
    assert not task_success(task, world({"red": block(0.35, 0.0, 0.02), "blue": blue}))  # side by side
    assert not task_success(task, world({"red": block(0.305, 0.0, 0.05), "blue": blue}, gripper=0.2))
    lifted_blue = block(0.3, 0.0, 0.06, edge=0.03)
    assert not task_success(task, world({"red": block(0.3, 0.0, 0.095), "blue": lifted_blue}))


def test_push_predicate():
    start = {"red": np.array([0.3, 0.0, 0.02])}
    left, right = Task("push", "red", direction="left"), Task("push", "red", direction="right")
    moved_left = {"red": block(0.3, 0.09, 0.02)}
    assert task_success(left, world(moved_left, start=start))
    assert not task_success(right, world(moved_left, start=start))
    assert not task_success(left, world({"red": block(0.3, 0.05, 0.02)}, start=start))  # not far enough
    assert not task_success(left, world({"red": block(0.3, 0.09, 0.08)}, start=start))  # lifted, not pushed


def test_failure_modes_name_what_went_wrong_in_constructed_episodes():
    task = Task("stack", "red", reference="blue")
    blue = block(0.3, 0.0, 0.015, edge=0.03)
    on_blue = world({"red": block(0.305, 0.0, 0.05), "blue": blue})
    beside = world({"red": block(0.36, 0.0, 0.02), "blue": blue})
    assert failure_mode(task, {"red"}, set(), on_blue) == ""
    assert failure_mode(task, {"red"}, set(), beside) == "released off target"
    assert offset_from_reference(task, beside) == pytest.approx(0.06)
    assert failure_mode(task, {"blue"}, set(), beside) == "wrong block"
    assert failure_mode(task, set(), set(), beside) == "never grasped"
    assert failure_mode(task, {"red", "blue"}, set(), beside) == "moved another block too"
    in_hand = world({"red": block(0.3, 0.0, 0.12), "blue": blue}, ee=(0.3, 0.0, 0.125), gripper=0.3)
    assert blocks_in_hand(in_hand) == {"red"} and blocks_in_hand(on_blue) == set()
    assert failure_mode(task, {"red"}, {"red"}, in_hand) == "still holding at the end"
    fallen = world({"red": block(0.36, 0.0, -0.7), "blue": blue})
    assert failure_mode(task, {"red"}, set(), fallen) == "knocked off the table"
    assert failure_mode(Task("pick", "red"), {"red"}, set(), beside) == "dropped"

    start = {"red": np.array([0.3, 0.0, 0.02]), "blue": np.array([0.3, 0.1, 0.02])}
    push = Task("push", "red", direction="left")
    assert failure_mode(push, set(), set(), world({"red": block(0.3, 0.03, 0.02), "blue": block(0.3, 0.1, 0.02)},
                                                  start=start)) == "pushed too little"
    assert failure_mode(push, set(), set(), world({"red": block(0.3, -0.06, 0.02), "blue": block(0.3, 0.1, 0.02)},
                                                  start=start)) == "wrong direction"
    assert failure_mode(push, set(), set(), world({"red": block(0.3, 0.0, 0.02), "blue": block(0.3, 0.19, 0.02)},
                                                  start=start)) == "wrong block"
    assert {"released off target", "wrong block", "knocked off the table"} <= set(FAILURE_MODES)


def test_render_instruction_uses_the_split():
    task = Task("push", "blue", direction="right")
    rng = np.random.default_rng(0)
    assert {render_instruction(task, rng, "heldout") for _ in range(50)} <= all_instructions("heldout")


def test_sampled_pushes_have_room_behind_the_block():
    from vla_ros.sim.tasks import push_feasible

    rng = np.random.default_rng(5)
    feasible = 0
    for _ in range(300):
        layout = sample_layout(rng)
        task = sample_task(rng, layout, family="push")
        feasible += push_feasible(layout, task.target, task.direction)
    assert feasible >= 297  # only scenes with no pushable block at all may fall back
