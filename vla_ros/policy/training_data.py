"""Training samples for the policy: one per demonstration step (frame, joints, chunk tokens, plan, paraphrases).

The instruction of a sample is re-drawn every time it is used from the *training* templates
of its task (paraphrase augmentation: "pick up the red block" ↔ "pick the red block up");
held-out templates are never seen, so the paraphrase split stays an honest test.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from vla_ros.policy.vocabulary import Vocabulary

IGNORE = -100
# Table coordinates of the objects, normalized to about [-1, 1] for the grounding loss (layout.WORKSPACE_X/Y).
PLACE_CENTER = np.array([0.30, 0.0, 0.30, 0.0], np.float32)
PLACE_SCALE = np.array([0.10, 0.20, 0.10, 0.20], np.float32)


# Words a terse command leaves out ("stack red on blue"); the colours, verbs and relations all stay.
TERSE_DROPS = (("the",), ("block",), ("the", "block"))


def terse_variants(phrasing: str) -> list[str]:
    """The phrasing without its articles, without the noun "block", and without both (deletions only:
    no word is added, so every variant is built from the training template's own words)."""
    words = phrasing.split()
    return [" ".join(w for w in words if w not in drop) for drop in TERSE_DROPS]


def training_paraphrases(instruction: str, terse: bool = False, extra: bool = False, generated: int = 0) -> list[str]:
    """Every training-template phrasing of the instruction's task (the instruction itself if it names no task);
    with `extra`, also the EXTRA_TRAIN_TEMPLATES phrasings; with `terse`, also each phrasing's `terse_variants`;
    with `generated` > 0, also that many requests of the training request generator (`sim.requests`)."""
    return [text for text, _ in training_phrasings(instruction, terse, extra, generated)]


def training_phrasings(instruction: str, terse: bool = False, extra: bool = False, generated: int = 0
                       ) -> list[tuple[str, tuple[str, str]]]:
    """`training_paraphrases` with each phrasing's role words: (the word naming the block to move, the word
    naming the reference or the direction; "" where there is none)."""
    return list(_phrasings(instruction, terse, extra, generated))


@lru_cache(maxsize=1024)
def _phrasings(instruction: str, terse: bool, extra: bool, generated: int) -> tuple:
    """Cached: every episode of a task asks for the same phrasings (and generates the same requests)."""
    from vla_ros.sim.requests import task_requests
    from vla_ros.sim.tasks import TRAIN_TEMPLATES, parse_instruction, training_templates

    try:
        task = parse_instruction(instruction)
    except ValueError:
        return ((instruction, ("", "")),)
    roles = (task.target, task.reference or task.direction or "")
    templates = training_templates(task.family) if extra else TRAIN_TEMPLATES[task.family]
    phrasings = [template.format(**task.slots()) for template in templates]
    if terse:
        phrasings += [variant for phrasing in phrasings for variant in terse_variants(phrasing)]
    out = {text: roles for text in sorted(set(phrasings))}
    for request in task_requests(task, generated) if generated > 0 else []:
        out.setdefault(request.text, (request.target_word, request.reference_word))
    return tuple(out.items())


def object_places(episode) -> tuple[np.ndarray, np.ndarray]:
    """Where the named objects stood: ([target x, y, reference x, y] normalized, [target known, reference known]).

    Re-derived from the episode's seed: `data generate` lays out `Workcell.reset(seed, family=…)`, whose
    layout and task come from the seed alone (no physics). An episode whose instruction the seed does not
    reproduce (another generator) gets no label (mask 0).
    """
    from vla_ros.sim.layout import sample_layout
    from vla_ros.sim.tasks import FAMILIES, sample_task

    places, known = np.zeros(4, np.float32), np.zeros(2, np.float32)
    if episode.seed < 0 or episode.family not in FAMILIES:  # demonstrations from a bag or LeRobot: no layout seed
        return places, known
    rng = np.random.default_rng(episode.seed)
    layout = sample_layout(rng, None, family=episode.family)
    task = sample_task(rng, layout, split="train", family=episode.family)
    if task.instruction != episode.instruction:
        return places, known
    places[:2], known[0] = layout.position(task.target), 1.0
    if task.reference:
        places[2:], known[1] = layout.position(task.reference), 1.0
    return ((places - PLACE_CENTER) / PLACE_SCALE * np.repeat(known, 2)).astype(np.float32), known


def split_names(path: str | Path) -> dict[str, list[str]]:
    """The data set's mask/train and mask/valid demo names (empty lists when it has no masks)."""
    import h5py

    from vla_ros.data.episodes import dataset_path

    with h5py.File(dataset_path(path), "r") as f:
        if "mask" not in f:
            return {"train": [], "valid": []}
        return {key: [n.decode() if isinstance(n, bytes) else str(n) for n in f["mask"][key][()]]
                for key in ("train", "valid") if key in f["mask"]}


class EpisodeFrames:
    """The frames of episodes held in memory, indexed as one array of samples without concatenating them."""

    def __init__(self, per_episode: list[np.ndarray]):
        self.per_episode = per_episode
        lengths = np.array([len(frames) for frames in per_episode], np.int64)
        self.owner = np.repeat(np.arange(len(per_episode)), lengths)
        self.step = np.concatenate([np.arange(n) for n in lengths]) if len(lengths) else np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self.owner)

    def __getitem__(self, index) -> np.ndarray:
        index = np.atleast_1d(np.asarray(index))
        return np.stack([self.per_episode[self.owner[i]][self.step[i]] for i in index])


class Hdf5Frames:
    """The frames of a data set's episodes read from its HDF5 file when a batch asks for them (frames are stored
    one per chunk, so a sample reads one chunk). The file is opened once per process: DataLoader workers forked
    after a read in the parent still open their own handle."""

    def __init__(self, path: str | Path, names: list[str], lengths: list[int], extra_cameras: tuple[str, ...] = ()):
        """With `extra_cameras` a sample is its views side by side (`compose_views`' layout)."""
        from vla_ros.data.episodes import dataset_path

        self.path = str(dataset_path(path))
        self.names = list(names)
        self.keys = ("agentview_image", *(f"{name}_image" for name in extra_cameras))
        lengths = np.asarray(lengths, np.int64)
        self.owner = np.repeat(np.arange(len(self.names)), lengths)
        self.step = np.concatenate([np.arange(n) for n in lengths]) if len(lengths) else np.zeros(0, np.int64)
        self._file, self._pid, self._datasets = None, None, {}

    def __len__(self) -> int:
        return len(self.owner)

    def __getstate__(self) -> dict:  # a pickled copy (spawned workers) opens the file itself
        return {**self.__dict__, "_file": None, "_pid": None, "_datasets": {}}

    def _dataset(self, episode: int):
        import os

        import h5py

        if self._pid != os.getpid():
            self._file, self._pid, self._datasets = h5py.File(self.path, "r"), os.getpid(), {}
        if episode not in self._datasets:
            obs = self._file[f"data/{self.names[episode]}/obs"]
            missing = [key for key in self.keys if key not in obs]
            if missing:
                raise ValueError(f"{self.path}: {self.names[episode]} has no {', '.join(missing)} (record the extra "
                                 f"cameras with 'vla-ros data generate --extra-camera NAME')")
            self._datasets[episode] = [obs[key] for key in self.keys]
        return self._datasets[episode]

    def __getitem__(self, index) -> np.ndarray:
        index = np.atleast_1d(np.asarray(index))
        return np.stack([np.concatenate([views[int(self.step[i])] for views in self._dataset(int(self.owner[i]))], 1)
                         for i in index])


class ConcatFrames:
    """Frame readers of several data sets one after another, indexed as one array of samples."""

    def __init__(self, parts: list):
        self.parts = parts
        self.starts = np.cumsum([0] + [len(part) for part in parts])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, index) -> np.ndarray:
        index = np.atleast_1d(np.asarray(index))
        part = np.searchsorted(self.starts, index, side="right") - 1
        return np.stack([self.parts[p][int(i - self.starts[p])][0] for p, i in zip(part, index)])


@dataclass
class TrainingSet:
    """Per-step arrays (N samples) plus per-episode phrasings; frames are read through `images[index]`."""

    images: EpisodeFrames | Hdf5Frames | ConcatFrames  # uint8 [N, H, W, 3] when indexed
    joint_pos: np.ndarray  # float32 [N, 6]
    tokens: np.ndarray  # int64 [N, T]: the tokenizer's ids of actions[t:t+H]
    chunks: np.ndarray  # float32 [N, H, 7]: actions[t:t+H] normalized by the tokenizer (gripper 0/1)
    plans: np.ndarray  # int64 [N, max_plan_tokens + 1], END_PLAN-terminated, IGNORE-padded
    places: np.ndarray  # float32 [N, 4]: normalized table x, y of the target and the reference (`object_places`)
    place_mask: np.ndarray  # float32 [N, 2]: target label valid (reach phase: it has not moved yet), reference valid
    episode: np.ndarray  # int64 [N]
    phrasings: list[list[int]]  # per episode: indices into `instructions`
    instructions: list[str]
    role_words: list[tuple[str, str]] | None = None  # per instruction: words naming the moved block, the reference
    # per episode: how many of its phrasings lead (the training phrasings); the rest are generated requests
    leading: list[int] | None = None

    def __len__(self) -> int:
        return len(self.tokens)


def build_training_set(episodes, tokenizer, vocab: Vocabulary, paraphrase: bool = True,
                       terse: bool = False, extra: bool = False, frames=None, generated: int = 0) -> TrainingSet:
    """Samples of every step of every episode; chunks past an episode's end hold still (tokenizer convention).
    Each episode's phrasings: its recorded instruction, or with `paraphrase` all its training phrasings
    (with `extra` also the extra training templates', with `terse` also their terse variants, with `generated`
    that many requests of the training request generator).
    `frames` reads the episodes' frames (`Hdf5Frames`); without it they come from the episodes' `images`."""
    from vla_ros.tokenizers.chunking import chunks_from_episode

    images, joints, tokens, normalized, plans, owner, phrasings, leading = [], [], [], [], [], [], [], []
    places, place_mask = [], []
    instructions: dict[str, int] = {}
    role_words: dict[str, tuple[str, str]] = {}
    width = vocab.max_plan_tokens + 1
    for index, episode in enumerate(episodes):
        if frames is None and episode.images is None:
            raise ValueError(f"episode {episode.name} was loaded without images")
        chunks = chunks_from_episode(episode.actions, tokenizer.chunk_size)
        tokens.append(tokenizer.encode(chunks))
        normalized.append(tokenizer.normalizer.normalize(chunks))
        if frames is None:
            images.append(episode.images)
        joints.append(np.asarray(episode.joint_pos, np.float32))
        for t in range(len(episode.actions)):
            plan = vocab.plan_ids(episode.phases[t:])
            plans.append(plan + [IGNORE] * (width - len(plan)))
        owner.append(np.full(len(episode.actions), index))
        where, known = object_places(episode)
        reaching = np.zeros(len(episode.actions), np.float32)
        if "reach" in episode.phase_names:  # the target stays put until the grasp (or the push) begins
            reaching = (episode.phases[: len(episode.actions)] == episode.phase_names.index("reach")).astype(np.float32)
        places.append(np.repeat(where[None], len(episode.actions), 0))
        place_mask.append(np.stack([reaching * known[0], np.full(len(episode.actions), known[1])], 1))
        texts = training_phrasings(episode.instruction, terse, extra, generated) if paraphrase \
            else [(episode.instruction, training_phrasings(episode.instruction)[0][1])]  # its task's role words
        for text, roles in texts:
            role_words.setdefault(text, roles)
        phrasings.append([instructions.setdefault(text, len(instructions)) for text, _ in texts])
        leading.append(len(training_phrasings(episode.instruction, terse, extra)) if paraphrase and generated
                       else len(texts))
    frames = frames if frames is not None else EpisodeFrames(images)
    if len(frames) != sum(len(e.actions) for e in episodes):
        raise ValueError(f"the frames hold {len(frames)} samples, the episodes' actions "
                         f"{sum(len(e.actions) for e in episodes)}")
    return TrainingSet(
        images=frames, joint_pos=np.concatenate(joints), tokens=np.concatenate(tokens),
        chunks=np.concatenate(normalized).astype(np.float32),
        plans=np.asarray(plans, np.int64), places=np.concatenate(places).astype(np.float32),
        place_mask=np.concatenate(place_mask).astype(np.float32), episode=np.concatenate(owner), phrasings=phrasings,
        instructions=list(instructions), role_words=[role_words[text] for text in instructions], leading=leading)


def draw_phrasings(data: TrainingSet, episodes: np.ndarray, rng: np.random.Generator,
                   generated_share: float | None = None) -> np.ndarray:
    """One phrasing per sample of `episodes` (indices into `data.instructions`).

    `generated_share` None: drawn alike from all of the episode's phrasings. A share p: a generated request with
    probability p where the episode has any, otherwise one of its training phrasings, so that adding more
    generated requests does not make each training phrasing rarer.
    """
    drawn = np.empty(len(episodes), np.int64)
    for row, episode in enumerate(episodes):
        options = data.phrasings[episode]
        if generated_share is None or data.leading is None:
            drawn[row] = options[rng.integers(len(options))]
            continue
        lead = data.leading[episode]
        if lead < len(options) and rng.random() < generated_share:
            drawn[row] = options[lead + rng.integers(len(options) - lead)]
        else:
            drawn[row] = options[rng.integers(lead)]
    return drawn


def sequences(tokens: np.ndarray, plans: np.ndarray, with_plan: np.ndarray, vocab: Vocabulary
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Teacher-forcing inputs and targets [B, G] for generated parts with or without a plan.

    without plan: inputs [START_ACTIONS, a1 … a(T-1)]               targets [a1 … aT]
    with plan:    inputs [START_PLAN, p1 … pk, END_PLAN, a1 … a(T-1)]  targets [p1 … pk, END_PLAN, a1 … aT]
    Rows are right-padded; padded targets are IGNORE (causal attention keeps padding invisible).
    Also returns, per row, the position whose output predicts the first action token.
    """
    batch, count = tokens.shape
    length = plans.shape[1] + count
    inputs = np.full((batch, length), vocab.start_actions, np.int64)
    targets = np.full((batch, length), IGNORE, np.int64)
    first_action = np.zeros(batch, np.int64)
    for row in range(batch):
        plan = plans[row][plans[row] != IGNORE] if with_plan[row] else np.zeros(0, np.int64)
        start = vocab.start_plan if with_plan[row] else vocab.start_actions
        generated = np.concatenate([plan, tokens[row]])
        inputs[row, : len(generated)] = np.concatenate([[start], generated[:-1]])
        targets[row, : len(generated)] = generated
        first_action[row] = len(plan)
    return inputs, targets, first_action


def shift_images(images: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Random translation by up to `pad` pixels (edge-replicated), per image: uint8 [B, H, W, 3]. A frame of
    several square views side by side (W a multiple of H) is shifted view by view, each by its own offset."""
    if pad <= 0:
        return images
    batch, height, width, _ = images.shape
    if width > height and width % height == 0:
        from vla_ros.policy.vision import join_views, split_views

        views = width // height
        return join_views(shift_images(split_views(images, views), pad, generator), views)
    padded = torch.nn.functional.pad(images.permute(0, 3, 1, 2).float(), (pad,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * pad + 1, (batch, 2), generator=generator)
    out = torch.stack([padded[i, :, y:y + height, x:x + width] for i, (y, x) in enumerate(offsets.tolist())])
    return out.round().to(torch.uint8).permute(0, 2, 3, 1)
