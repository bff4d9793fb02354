"""How people ask for the workcell's tasks: a request generator with a training lexicon and a held-out one.

The templates of `vla_ros.sim.tasks` are what the data sets record; people phrase the same tasks as questions,
polite requests with filler words, shorthand without articles or nouns, statements of what they want, other
verbs and nouns, and clauses in other orders. `generate_request` composes such a request from a `Lexicon`:

    form          a FORMS entry: how the request is framed
    frame         e.g. "could you {vp}?" (vp: a verb phrase of the task's family)
    verb phrase   e.g. "put {obj} onto {rec}", with noun phrases for the block, the receptacle, the direction

`TRAIN_LEXICON` feeds the policy's paraphrase augmentation (`vla-ros train --generated-phrasings N`).
`HELDOUT_LEXICON` is for evaluation only (`vla-ros eval --split requests`): its frames, verbs and nouns are
never used in training, and every request it produces holds at least one word that no training phrasing
contains (`test_sim_requests.py` checks both). Requests are plain text: the policy reads the words; nothing
rewrites them into templates at run time.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import numpy as np

# how a request is framed; "shorthand" drops articles and nouns, "reordered" puts the clauses in another order,
# "goal" says what the world should look like instead of what to do
FORMS = ("imperative", "question", "declarative", "polite", "filler", "shorthand", "reordered", "goal")
VERB_PHRASE_FORMS = ("imperative", "question", "declarative", "polite", "filler")
FUNCTION_WORDS = frozenset({"the", "a", "to", "on", "of", "it", "and", "up", "is", "you", "i", "with", "from",
                            "for", "that", "this", "one", "so", "in", "be", "at", "as", "me", "then"})


@dataclass(frozen=True)
class Request:
    """One generated request: its text, its form, and the words naming the roles (for the role loss)."""

    text: str
    form: str
    target_word: str  # the word naming the block to act on (its colour)
    reference_word: str  # the word naming the reference (colour, receptacle noun) or the direction; "" for pick


@dataclass(frozen=True)
class Lexicon:
    """The words and patterns of one generator.

    Slots: {obj} the target's noun phrase, {ref} the reference's (a receptacle's for place, a block's for stack),
    {dir} a direction phrase; in shorthand and goal patterns also {t} / {r} bare colours and {rec} a bare
    receptacle noun. A `frames` pattern wraps a verb phrase {vp}.
    """

    name: str
    block_phrases: tuple[str, ...]  # with {c}: "the {c} block"
    receptacle_nouns: dict[str, tuple[str, ...]]  # receptacle → nouns for it
    receptacle_phrases: tuple[str, ...]  # with {n}: "the {n}"
    direction_phrases: tuple[str, ...]  # with {d}: "to the {d}"
    verb_phrases: dict[str, tuple[str, ...]]  # family → patterns
    frames: dict[str, tuple[str, ...]]  # form (VERB_PHRASE_FORMS) → patterns with {vp}
    patterns: dict[str, dict[str, tuple[str, ...]]]  # form (shorthand, reordered, goal) → family → patterns

    def forms(self, family: str) -> tuple[str, ...]:
        """The forms this lexicon can phrase a task of `family` in."""
        return tuple(f for f in FORMS if f in self.frames or family in self.patterns.get(f, {}))

    def words(self) -> set[str]:
        """Every word any request of this lexicon can contain, besides the colours and directions."""
        texts = [*self.block_phrases, *self.receptacle_phrases, *self.direction_phrases,
                 *(n for nouns in self.receptacle_nouns.values() for n in nouns),
                 *(p for phrases in self.verb_phrases.values() for p in phrases),
                 *(p for frames in self.frames.values() for p in frames),
                 *(p for by_family in self.patterns.values() for phrases in by_family.values() for p in phrases)]
        return {w for text in texts for w in words_of(re.sub(r"\{\w+\}", " ", text))}


def words_of(text: str) -> list[str]:
    """The lower-case words of a text (apostrophes kept: "i'd")."""
    return re.findall(r"[a-z']+", text.lower())


TRAIN_LEXICON = Lexicon(
    name="train",
    block_phrases=("the {c} block", "the {c} one", "that {c} block", "the {c} brick"),
    receptacle_nouns={"plate": ("plate", "saucer"), "towel": ("towel", "napkin")},
    receptacle_phrases=("the {n}", "that {n}"),
    direction_phrases=("to the {d}", "to the {d} side", "over to the {d}", "{d}"),
    verb_phrases={
        "pick": ("pick up {obj}", "pick {obj} up", "take {obj}", "get {obj}", "pick up {obj} from the table",
                 "take hold of {obj}", "hold {obj} up in the air"),
        "place": ("put {obj} on {ref}", "put {obj} onto {ref}", "place {obj} on {ref}", "drop {obj} on {ref}",
                  "put {obj} down on {ref}", "bring {obj} to {ref}", "place {obj} onto {ref}"),
        "stack": ("stack {obj} on {ref}", "stack {obj} on top of {ref}", "put {obj} on top of {ref}",
                  "place {obj} on {ref}", "cover {ref} with {obj}", "pile {obj} on {ref}",
                  "use {ref} as the base for {obj}"),
        "push": ("push {obj} {dir}", "slide {obj} {dir}", "give {obj} a push {dir}", "shift {obj} {dir}"),
    },
    frames={
        "imperative": ("{vp}",),
        "question": ("can you {vp}?", "could you {vp}?", "will you {vp}?", "can you {vp} for me?"),
        "declarative": ("i want you to {vp}", "i need you to {vp}", "you should {vp}", "your job is to {vp}",
                        "next you will {vp}"),
        "polite": ("please {vp}", "{vp} please", "{vp}, thanks", "{vp} for me please", "please {vp}, thanks"),
        "filler": ("um {vp}", "ok so {vp}", "{vp} now", "now then, {vp}", "hey robot, {vp}", "okay, {vp}"),
    },
    patterns={
        "shorthand": {
            "pick": ("{t} up", "pick {t}", "take {t}", "{t} block up"),
            "place": ("{t} on {rec}", "{t} to {rec}", "put {t} on {rec}", "{t} block on {rec}"),
            "stack": ("{t} on {r}", "stack {t} on {r}", "{t} on top of {r}", "{t} block on {r} block"),
            "push": ("{t} {d}", "push {t} {d}", "{t} to the {d}", "slide {t} {d}"),
        },
        "reordered": {
            "pick": ("go to {obj} and pick it up", "find {obj} and take it", "with {obj}: pick it up"),
            "place": ("take {obj} and put it on {ref}", "pick up {obj} and place it on {ref}",
                      "with {obj}: put it on {ref}"),
            "stack": ("take {obj} and stack it on {ref}", "pick up {obj} and put it on top of {ref}",
                      "with {obj}: stack it on {ref}"),
            "push": ("go to {obj} and push it {dir}", "find {obj} and slide it {dir}", "with {obj}: push it {dir}"),
        },
        "goal": {
            "pick": ("i want {obj} in the gripper", "{obj} should be in your hand"),
            "place": ("{obj} goes on {ref}", "i want {obj} on {ref}", "{obj} should be on {ref}"),
            "stack": ("{obj} goes on {ref}", "i want {obj} on top of {ref}", "{obj} should be on top of {ref}"),
            "push": ("{obj} needs to go {dir}", "i want {obj} further {dir}"),
        },
    },
)

HELDOUT_LEXICON = Lexicon(
    name="heldout",
    block_phrases=("the {c} cube", "the {c} piece", "this {c} cube"),
    receptacle_nouns={"plate": ("dish",), "towel": ("cloth", "rag")},
    receptacle_phrases=("the {n}",),
    direction_phrases=("toward the {d}", "towards your {d}", "leftwards", "a bit to the {d}"),
    verb_phrases={
        "pick": ("grab {obj}", "lift {obj}", "grasp {obj} and raise it", "snatch {obj}", "hoist {obj}"),
        "place": ("set {obj} on {ref}", "move {obj} onto {ref}", "rest {obj} on {ref}", "lay {obj} on {ref}",
                  "deposit {obj} on {ref}"),
        "stack": ("set {obj} on top of {ref}", "move {obj} onto {ref}", "balance {obj} on {ref}",
                  "rest {obj} on top of {ref}", "position {obj} atop {ref}"),
        "push": ("shove {obj} {dir}", "nudge {obj} {dir}", "scoot {obj} {dir}", "bump {obj} {dir}"),
    },
    frames={
        "imperative": ("{vp}",),
        "question": ("would you {vp}?", "are you able to {vp}?", "do you think you could {vp}?",
                     "mind if you {vp}?"),
        "declarative": ("i'd like you to {vp}", "the goal is to {vp}", "we would like you to {vp}",
                        "what i'm after is that you {vp}"),
        "polite": ("kindly {vp}", "{vp}, thank you", "{vp} if you would", "{vp}, cheers",
                   "be so kind as to {vp}"),
        "filler": ("uh {vp}", "alright then, {vp}", "so yeah, {vp}", "{vp} real quick", "erm, {vp}"),
    },
    patterns={
        "shorthand": {
            "pick": ("grab {t}", "{t} cube, lift", "lift {t}"),
            "place": ("{t} atop {rec}", "set {t} on {rec}", "{t} cube onto {rec}"),
            "stack": ("{t} atop {r}", "{t} cube onto {r} cube", "set {t} on {r}"),
            "push": ("shove {t} {d}", "nudge {t} {d}", "{t} cube {d}wards"),
        },
        "reordered": {
            "pick": ("{obj}, pick it up", "{obj}: grab it", "as for {obj}, lift it"),
            "place": ("on {ref}, put {obj}", "onto {ref} with {obj}", "as for {obj}, set it on {ref}"),
            "stack": ("on top of {ref}, stack {obj}", "onto {ref} with {obj}", "as for {obj}, set it atop {ref}"),
            "push": ("{dir}, push {obj}", "as for {obj}, nudge it {dir}", "{obj}: shove it {dir}"),
        },
        "goal": {
            "pick": ("{obj} ought to end up lifted", "i'd like {obj} raised off the table"),
            "place": ("{obj} belongs on {ref}", "{obj} ought to end up on {ref}"),
            "stack": ("{obj} belongs atop {ref}", "{obj} ought to end up on top of {ref}"),
            "push": ("{obj} belongs further {dir}", "{obj} ought to end up more {dir}"),
        },
    },
)
LEXICONS = {"train": TRAIN_LEXICON, "heldout": HELDOUT_LEXICON}


def _choice(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def generate_request(task, rng: np.random.Generator, lexicon: Lexicon = TRAIN_LEXICON,
                     form: str | None = None) -> Request:
    """A request for `task` (a `sim.tasks.Task`) in `form` (random among the lexicon's forms when None)."""
    family = task.family
    forms = lexicon.forms(family)
    form = form or _choice(rng, forms)
    if form not in forms:
        raise ValueError(f"form {form!r} is not one of the {lexicon.name} lexicon's forms for {family}: {forms}")
    slots = {"obj": _choice(rng, lexicon.block_phrases).format(c=task.target), "t": task.target,
             "ref": "", "r": "", "rec": "", "dir": "", "d": ""}
    reference_word = ""
    if family == "place":
        noun = _choice(rng, lexicon.receptacle_nouns[task.reference])
        slots.update(ref=_choice(rng, lexicon.receptacle_phrases).format(n=noun), rec=noun)
        reference_word = noun
    elif family == "stack":
        slots.update(ref=_choice(rng, lexicon.block_phrases).format(c=task.reference), r=task.reference)
        reference_word = task.reference
    elif family == "push":
        phrase = _choice(rng, lexicon.direction_phrases)
        if "{d}" not in phrase:  # a phrase with its direction built in ("leftwards") only fits its own side
            phrase = phrase if phrase.startswith(task.direction) else "toward the {d}"
        slots.update(dir=phrase.format(d=task.direction), d=task.direction)
        reference_word = task.direction
    if form in lexicon.frames:
        verb_phrase = _choice(rng, lexicon.verb_phrases[family]).format(**slots)
        text = _choice(rng, lexicon.frames[form]).format(vp=verb_phrase)
    else:
        text = _choice(rng, lexicon.patterns[form][family]).format(**slots)
    return Request(" ".join(text.split()), form, task.target, reference_word)


def task_requests(task, count: int, lexicon: Lexicon = TRAIN_LEXICON) -> list[Request]:
    """`count` requests for `task`, the same ones every time (seeded by the task's slots), duplicates dropped."""
    key = f"{lexicon.name}|{task.family}|{task.target}|{task.reference}|{task.direction}"
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    seen: dict[str, Request] = {}
    for _ in range(count * 4):
        if len(seen) >= count:
            break
        request = generate_request(task, rng, lexicon)
        seen.setdefault(request.text, request)
    return list(seen.values())
