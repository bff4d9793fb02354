"""Pure parts of the policy: when the node infers, replay indexing, plan labels and teacher-forcing sequences."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vla_ros.core import scheduling
from vla_ros.policy.training_data import IGNORE, sequences, training_paraphrases
from vla_ros.policy.vocabulary import Vocabulary

VOCAB = Vocabulary(action_size=16, plan_words=("reach", "grasp", "lift", "move", "place", "release", "push"),
                   max_plan_tokens=4)


@pytest.mark.parametrize(
    "task, sequence, used, age, since, expected",
    [
        ("pick up the red block", 3, 2, 0.1, 1.0, scheduling.INFER),
        ("", 3, 2, 0.1, 1.0, scheduling.NO_TASK),
        ("   ", 3, 2, 0.1, 1.0, scheduling.NO_TASK),
        ("pick up the red block", 2, 2, 0.1, 1.0, scheduling.NO_IMAGE),  # the newest frame was used already
        ("pick up the red block", 0, 0, 0.0, 1.0, scheduling.NO_IMAGE),  # no frame yet
        ("pick up the red block", 3, 2, 0.9, 1.0, scheduling.STALE),
        ("pick up the red block", 3, 2, 0.1, 0.05, scheduling.RATE_LIMITED),
    ],
)
def test_the_node_infers_only_with_a_task_and_a_fresh_unused_frame(task, sequence, used, age, since, expected):
    decision = scheduling.decide(task, sequence, used, age, max_image_age_s=0.5, since_last_inference_s=since,
                                 inference_rate_hz=5.0)
    assert decision.action == expected
    if expected == scheduling.RATE_LIMITED:
        assert decision.wait_s == pytest.approx(0.15)


def test_max_image_age_zero_accepts_any_age():
    assert scheduling.decide("push the red block to the left", 1, 0, 1e6, 0.0, 1.0, 5.0).action == scheduling.INFER


@given(st.floats(min_value=0.0, max_value=1e4, allow_nan=False))
def test_episode_step_is_the_first_5hz_step_at_or_after_the_frame(elapsed):
    step = scheduling.episode_step(elapsed)
    assert -1e-6 <= step / 5.0 - elapsed < 0.2 + 1e-6
    assert scheduling.episode_step(-0.3) == 0  # a frame taken before the task started


def test_latency_window_reports_percentiles_in_ms():
    window = scheduling.LatencyWindow(size=100)
    assert window.percentiles_ms() is None
    for value in range(1, 101):
        window.add(value / 1000)
    p50, p95 = window.percentiles_ms()
    assert p50 == pytest.approx(50.5) and p95 == pytest.approx(95.05)


def test_plan_labels_merge_repeated_phases_and_end_the_plan():
    phases = [0, 0, 1, 1, 2, 3, 3, 4, 5]
    assert VOCAB.plan_ids(phases) == [16, 17, 18, 19, VOCAB.end_plan]  # truncated to max_plan_tokens
    assert VOCAB.plan_text(VOCAB.plan_ids([6, 6])) == "push"
    assert VOCAB.plan_ids([]) == [VOCAB.end_plan]


def test_teacher_forcing_sequences_with_and_without_a_plan():
    tokens = np.array([[1, 2, 3], [4, 5, 6]])
    plans = np.array([[16, 17, VOCAB.end_plan, IGNORE, IGNORE], [22, VOCAB.end_plan, IGNORE, IGNORE, IGNORE]])
    inputs, targets, first_action = sequences(tokens, plans, np.array([True, False]), VOCAB)
    assert inputs[0, :6].tolist() == [VOCAB.start_plan, 16, 17, VOCAB.end_plan, 1, 2]
    assert targets[0, :6].tolist() == [16, 17, VOCAB.end_plan, 1, 2, 3]
    assert inputs[1, :3].tolist() == [VOCAB.start_actions, 4, 5]
    assert targets[1].tolist() == [4, 5, 6] + [IGNORE] * 5
    assert first_action.tolist() == [3, 0]
    assert targets[0, first_action[0]] == 1 and targets[1, first_action[1]] == 4  # first actions predicted there


def test_paraphrases_come_from_training_templates_only():
    from vla_ros.sim.tasks import all_instructions

    phrasings = training_paraphrases("on top of the green block, stack the blue block")  # a held-out phrasing
    assert set(phrasings) <= all_instructions("train")
    assert "stack the blue block on the green block" in phrasings
    assert training_paraphrases("wave hello") == ["wave hello"]


def test_extra_training_phrasings_are_in_the_recipe_and_add_no_held_out_phrasing():
    from vla_ros.policy.recipe import TrainRecipe
    from vla_ros.sim.tasks import all_instructions

    assert TrainRecipe().extra_phrasings  # the shipped recipe (policy v5) trains with them
    base = training_paraphrases("stack the blue block on the green block")
    extra = training_paraphrases("stack the blue block on the green block", extra=True)
    assert set(base) < set(extra) <= all_instructions("train", extra=True)
    assert "cover the green block with the blue block" in extra  # the lower block named first
    assert not set(extra) & all_instructions("heldout")


def test_the_train_command_passes_the_generated_share_and_refuses_it_without_requests(monkeypatch, tmp_path):
    import vla_ros.commands.policy as commands
    import vla_ros.policy.training as training
    from vla_ros.cli import main

    recipes = []
    monkeypatch.setattr(commands, "check_training_paths", lambda *args: None)
    monkeypatch.setattr(training, "train_policy", lambda data, tokenizer, out, recipe, overrides, **_:
                        recipes.append(recipe) or {"written": False})
    base = ["train", "--data", str(tmp_path), "--tokenizer", str(tmp_path), "--out", str(tmp_path / "out")]
    assert main(base + ["--generated-phrasings", "32", "--generated-share", "0.3"]) == 0
    assert main(base + ["--generated-phrasings", "32"]) == 0
    assert [(r.generated_phrasings, r.generated_share) for r in recipes] == [(32, 0.3), (32, None)]
    with pytest.raises(SystemExit, match="--generated-share needs --generated-phrasings"):
        main(base + ["--generated-share", "0.3"])
    with pytest.raises(SystemExit):  # argparse: not a share
        main(base + ["--generated-phrasings", "32", "--generated-share", "1.5"])


def test_terse_variants_only_delete_words_of_the_training_phrasings():
    from vla_ros.sim.tasks import all_instructions

    base = training_paraphrases("stack the blue block on the green block")
    terse = training_paraphrases("stack the blue block on the green block", terse=True)
    assert set(base) < set(terse) and "stack blue on green" in terse and "stack the blue on the green" in terse
    assert not set(terse) & all_instructions("heldout")  # still no held-out phrasing
    template_words = {w for phrasing in base for w in phrasing.split()}
    for phrasing in terse:
        assert set(phrasing.split()) <= template_words
        assert "blue" in phrasing.split() and phrasing.split().index("blue") < phrasing.split().index("green")
    assert training_paraphrases("wave hello", terse=True) == ["wave hello"]
