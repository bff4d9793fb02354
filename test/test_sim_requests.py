"""The request generator: held-out requests carry words training never sees, every form for every family, roles."""

import numpy as np
import pytest

from vla_ros.sim.requests import FORMS, HELDOUT_LEXICON, TRAIN_LEXICON, generate_request, task_requests, words_of
from vla_ros.sim.tasks import (
    COLOURS, EXTRA_TRAIN_TEMPLATES, FAMILIES, HELDOUT_TEMPLATES, RECEPTACLES, TRAIN_TEMPLATES, Task, all_instructions,
    phrase_task,
)

TASKS = [Task("pick", "red"), Task("place", "blue", "plate"), Task("place", "green", "towel"),
         Task("stack", "yellow", "purple"), Task("push", "red", None, "left"), Task("push", "green", None, "right")]


def training_words() -> set[str]:
    """Every word a training phrasing can hold: the request generator's lexicon and both template sets."""
    texts = [t for group in (TRAIN_TEMPLATES, EXTRA_TRAIN_TEMPLATES) for ts in group.values() for t in ts]
    words = {w for t in texts for w in words_of(t.replace("{target}", "").replace("{reference}", "")
                                                .replace("{direction}", ""))}
    return words | TRAIN_LEXICON.words() | set(COLOURS) | set(RECEPTACLES) | {"left", "right"}


def test_every_heldout_request_holds_a_word_no_training_phrasing_has():
    seen = training_words()
    rng = np.random.default_rng(0)
    for index in range(3000):
        request = generate_request(TASKS[index % len(TASKS)], rng, HELDOUT_LEXICON)
        assert set(words_of(request.text)) - seen, request.text


def test_training_generator_never_uses_the_heldout_templates_words_or_sentences():
    heldout_synonyms = {"grab", "lift", "grasp", "raise", "cube", "set", "move", "shove", "nudge", "toward"}
    assert not TRAIN_LEXICON.words() & heldout_synonyms
    heldout_sentences = all_instructions("heldout")
    for task in TASKS:
        for request in task_requests(task, 200):
            assert request.text not in heldout_sentences
            assert not set(words_of(request.text)) & heldout_synonyms, request.text


@pytest.mark.parametrize("lexicon", [TRAIN_LEXICON, HELDOUT_LEXICON], ids=["train", "heldout"])
def test_every_form_for_every_family_names_the_roles(lexicon):
    rng = np.random.default_rng(1)
    for family in FAMILIES:
        assert lexicon.forms(family) == FORMS
    for task in TASKS:
        for form in FORMS:
            for _ in range(10):
                request = generate_request(task, rng, lexicon, form)
                words = words_of(request.text)
                assert request.form == form
                assert task.target in words and request.target_word == task.target
                if task.family == "stack":
                    assert request.reference_word == task.reference and task.reference in words
                elif task.family == "push":
                    assert request.reference_word == task.direction
                    assert any(w.startswith(task.direction) for w in words), request.text
                    assert ({"left", "right"} - {task.direction}).isdisjoint(
                        w.removesuffix("wards") for w in words), request.text
                elif task.family == "place":
                    assert request.reference_word in words
                    assert request.reference_word in lexicon.receptacle_nouns[task.reference]


def test_a_form_the_lexicon_does_not_have_is_refused():
    with pytest.raises(ValueError, match="form 'sing' is not one of"):
        generate_request(TASKS[0], np.random.default_rng(0), TRAIN_LEXICON, "sing")


def test_task_requests_are_the_same_every_time_and_distinct():
    first = task_requests(TASKS[3], 32)
    assert [r.text for r in first] == [r.text for r in task_requests(TASKS[3], 32)]
    assert len({r.text for r in first}) == len(first) == 32
    assert {r.form for r in first} == set(FORMS)
    assert [r.text for r in task_requests(TASKS[4], 32)] != [r.text for r in first]


def test_requests_fit_the_policys_word_pieces():
    """New policies read 24 word pieces ([CLS] and [SEP] included): no generated request is cut."""
    from transformers import AutoTokenizer

    from vla_ros.policy.text_encoding import text_encoder_directory

    tokenizer = AutoTokenizer.from_pretrained(str(text_encoder_directory()))
    rng = np.random.default_rng(2)
    texts = [generate_request(TASKS[i % len(TASKS)], rng, lexicon).text
             for lexicon in (TRAIN_LEXICON, HELDOUT_LEXICON) for i in range(1500)]
    lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]
    assert max(lengths) <= 24


def test_requests_split_phrases_the_paraphrase_splits_task():
    """`phrase_task` with "requests" keeps the task's slots and draws a held-out request with its form."""
    rng = np.random.default_rng(3)
    forms = set()
    for task in TASKS * 20:
        phrased = phrase_task(task, rng, "requests")
        assert (phrased.family, phrased.target, phrased.reference, phrased.direction) == \
               (task.family, task.target, task.reference, task.direction)
        assert phrased.form in FORMS and set(words_of(phrased.instruction)) - training_words()
        forms.add(phrased.form)
    assert forms == set(FORMS)
    assert phrase_task(TASKS[0], rng, "train").form == "template"
    with pytest.raises(ValueError, match="instruction split 'poems'"):
        phrase_task(TASKS[0], rng, "poems")


def test_evaluation_requests_split_uses_the_paraphrase_layouts():
    from vla_ros.policy.evaluation import SEED_BASE, WORKCELL_SPLIT
    from vla_ros.sim.layout import sample_layout
    from vla_ros.sim.tasks import sample_task

    assert SEED_BASE["requests"] == SEED_BASE["paraphrase"]
    for index in range(8):
        seed, family = SEED_BASE["requests"] + index, FAMILIES[index % 4]
        tasks = []
        for split in ("paraphrase", "requests"):
            rng = np.random.default_rng(seed)
            layout = sample_layout(rng, None, family=family)
            tasks.append(sample_task(rng, layout, split=WORKCELL_SPLIT[split], family=family))
        assert tasks[0].slots() == tasks[1].slots() and tasks[0].family == tasks[1].family
        assert tasks[0].form == "template" and tasks[1].form in FORMS
        assert tasks[1].instruction not in set().union(*(all_instructions(s) for s in ("train", "heldout")))


def test_training_phrasings_with_generated_requests_carry_their_role_words():
    from vla_ros.policy.training_data import training_paraphrases, training_phrasings

    instruction = "put the blue block on the towel"
    plain = training_paraphrases(instruction, extra=True)
    phrasings = training_phrasings(instruction, extra=True, generated=24)
    texts = [t for t, _ in phrasings]
    assert texts[:len(plain)] == plain and len(texts) == len(set(texts)) == len(plain) + 24
    for text, (target, reference) in phrasings:
        assert target == "blue" and reference in words_of(text), text
    assert {reference for _, (_, reference) in phrasings} == {"towel", "napkin"}
    assert training_phrasings("wave hello", generated=8) == [("wave hello", ("", ""))]


def test_evaluation_on_requests_reports_success_by_form(tmp_path):
    """The scripted expert on the requests split: every episode records its form, results.md has the table."""
    from vla_ros.policy.evaluation import evaluate

    summary = evaluate(None, "requests", 8, out_dir=tmp_path, progress=False)
    assert set(summary["by_form"]) <= set(FORMS)
    assert sum(row["episodes"] for row in summary["by_form"].values()) == 8
    assert sum(row["successes"] for row in summary["by_form"].values()) == \
        sum(row["successes"] for row in summary["per_family"].values())
    assert "Success by phrasing form" in (tmp_path / "results.md").read_text()
