"""The training recipe of the policy: teacher-forced cross-entropy on plan and action tokens.

Fixed seeds, a progress bar, periodic validation on the data set's `mask/valid` episodes,
resumable checkpoints (OUT/checkpoint.pt, every `checkpoint_every` steps), a GPU when present and
several processes with DDP under `accelerate launch`. Frames of an HDF5 data set stay on disk and are
read per batch by DataLoader workers (`Hdf5Frames`); everything else is held once in memory.
The saved policy is the validated one with the best teacher-forced token accuracy (early stopping
by selection: the schedule still runs to the end, the weights of the best evaluation are kept).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from vla_ros.policy.modeling_vla import VLAPolicy, new_policy
from vla_ros.policy.recipe import TrainRecipe
from vla_ros.policy.training_data import (IGNORE, TrainingSet, build_training_set, draw_phrasings, sequences,
                                         shift_images)

CHECKPOINT_FILE = "checkpoint.pt"
REPORT_FILE = "training_report.json"
CURVE_FILE = "loss_curve.png"


def _lr_factor(step: int, recipe: TrainRecipe) -> float:
    if step < recipe.warmup_steps:
        return (step + 1) / recipe.warmup_steps
    progress = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class TextTable:
    """MiniLM states of every phrasing a training set uses, computed once (the encoder is frozen)."""

    def __init__(self, instructions: list[str], text_tokens: int, layer: int | None = None,
                 role_words: list[tuple[str, str]] | None = None):
        from vla_ros.policy.text_encoding import TextEncoder

        encoder = TextEncoder(text_tokens, layer=layer)
        states, masks = [], []
        for start in range(0, len(instructions), 64):
            s, m = encoder.encode_batch(instructions[start:start + 64])
            states.append(s)
            masks.append(m)
        self.states = torch.from_numpy(np.concatenate(states)) if states else torch.zeros(0, text_tokens, 384)
        self.masks = torch.from_numpy(np.concatenate(masks)) if masks else torch.zeros(0, text_tokens, dtype=torch.bool)
        self.roles = torch.from_numpy(role_pieces(encoder.tokenizer, instructions, text_tokens, role_words))


def role_pieces(tokenizer, instructions: list[str], text_tokens: int,
                role_words: list[tuple[str, str]] | None = None) -> np.ndarray:
    """[N, 2]: the word-piece index of the word naming the block to move, and of the word naming the reference
    (the lower block, the receptacle) or the direction; -1 where an instruction names no such word (or matches
    no task). The labels of the role loss that teaches the instruction pools to read the roles. The words are
    `role_words` (per instruction, from the training set), or found by matching the instruction to a template."""
    from vla_ros.sim.tasks import parse_instruction

    roles = np.full((len(instructions), 2), -1, np.int64)
    for row, text in enumerate(instructions):
        if role_words is not None:
            words = role_words[row]
        else:
            try:
                task = parse_instruction(text)
            except ValueError:
                continue
            words = (task.target, task.reference or task.direction)
        ids = tokenizer(text, max_length=text_tokens, truncation=True)["input_ids"]
        for column, word in enumerate(words):
            piece = tokenizer(word, add_special_tokens=False)["input_ids"][:1] if word else []
            if piece and piece[0] in ids:
                roles[row, column] = ids.index(piece[0])
    return roles


def make_batch(data: TrainingSet, text: TextTable, index: np.ndarray, vocab, recipe: TrainRecipe,
               rng: np.random.Generator, generator: torch.Generator, train: bool) -> dict:
    """Tensors for one batch (`vocab`: the policy's `Vocabulary`); augmentation (phrasing, shift, proprio
    dropout, plan mode) only when `train`."""
    episodes = data.episode[index]
    if train:
        phrasing = draw_phrasings(data, episodes, rng, recipe.generated_share)
        with_plan = rng.random(len(index)) < recipe.plan_fraction
        present = (rng.random(len(index)) >= recipe.proprio_dropout).astype(np.float32)
    else:
        phrasing = np.array([data.phrasings[e][0] for e in episodes])
        with_plan = np.zeros(len(index), bool)
        present = np.ones(len(index), np.float32)
    inputs, targets, first_action = sequences(data.tokens[index], data.plans[index], with_plan, vocab)
    images = torch.from_numpy(data.images[index])
    if train:
        images = shift_images(images, recipe.shift_pixels, generator)
    return {
        "images": images, "text_states": text.states[phrasing], "text_mask": text.masks[phrasing],
        "proprio": torch.from_numpy(data.joint_pos[index]), "proprio_present": torch.from_numpy(present),
        "inputs": torch.from_numpy(inputs), "targets": torch.from_numpy(targets),
        "first_action": torch.from_numpy(first_action), "chunks": torch.from_numpy(data.chunks[index]),
        "places": torch.from_numpy(data.places[index]), "place_mask": torch.from_numpy(data.place_mask[index]),
        "roles": text.roles[phrasing],
    }


def batch_loss(policy: VLAPolicy, batch: dict, device: torch.device, chunk_weight: float = 0.0,
               grounding_weight: float = 0.0, role_weight: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(cross-entropy over plan and action targets + chunk_weight × chunk regression MSE
    + grounding_weight × masked MSE of the named objects' positions
    + role_weight × role loss of the instruction pools, logits, targets)."""
    moved = {k: v.to(device) for k, v in batch.items()}
    prefix = policy.prefix_embeddings(moved["images"], moved["text_states"], moved["text_mask"],
                                      moved["proprio"], moved["proprio_present"])
    hidden = policy.hidden_states(prefix, moved["inputs"])
    logits = policy.llama.lm_head(hidden)
    targets = moved["targets"]
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=IGNORE)
    rows = torch.arange(hidden.shape[0], device=device)
    first = hidden[rows, moved["first_action"]]
    if chunk_weight > 0:
        predicted = policy.chunk_head(first).view_as(moved["chunks"])
        loss = loss + chunk_weight * F.mse_loss(predicted, moved["chunks"])
    if grounding_weight > 0 and policy.grounding_head is not None:
        mask = moved["place_mask"].repeat_interleave(2, dim=1)  # [B, 4]: x and y share their object's flag
        error = (policy.grounding_head(first) - moved["places"]) ** 2 * mask
        loss = loss + grounding_weight * error.sum() / mask.sum().clamp(min=1.0)
    if role_weight > 0 and policy.instruction_queries is not None:
        loss = loss + role_weight * role_loss(policy, moved)
    return loss, logits, targets


def role_weights(policy: VLAPolicy, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(attention of the first two instruction pools [B, 2, T], their role labels [B, 2], -1 = none)."""
    weights = policy.instruction_queries.weights(batch["text_states"].float(), batch["text_mask"].float())
    pools = min(2, weights.shape[1])
    return weights[:, :pools], batch["roles"][:, :pools]


def role_loss(policy: VLAPolicy, batch: dict) -> torch.Tensor:
    """Negative log of the attention the first pool gives the word naming the block to move, and the second
    the word naming the reference or direction (`role_pieces`), over the labelled pools of the batch."""
    weights, labels = role_weights(policy, batch)
    known = labels >= 0
    picked = weights.gather(2, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return -(torch.log(picked + 1e-6) * known).sum() / known.sum().clamp(min=1)


@torch.no_grad()
def validate(policy: VLAPolicy, data: TrainingSet, text: TextTable, recipe: TrainRecipe, device,
             limit: int = 1024) -> dict:
    """Teacher-forced loss, action-token accuracy and whole-chunk exact match on (up to `limit`) samples."""
    policy.eval()
    rng = np.random.default_rng(0)
    order = np.arange(len(data)) if len(data) <= limit else np.sort(rng.choice(len(data), limit, replace=False))
    losses, correct, total, exact = [], 0, 0, 0
    place_error, place_count = 0.0, 0
    role_hits, role_count = 0, 0
    for start in range(0, len(order), recipe.batch_size):
        index = order[start:start + recipe.batch_size]
        batch = make_batch(data, text, index, policy.vocab, recipe, rng, torch.Generator(), train=False)
        loss, logits, targets = batch_loss(policy, batch, device)
        losses.append(loss.item() * len(index))
        predicted = logits.argmax(-1)
        valid = targets != IGNORE
        hits = (predicted == targets) & valid
        correct += int(hits.sum())
        total += int(valid.sum())
        exact += int((hits | ~valid).all(1).sum())
        if policy.grounding_head is not None:
            error, count = grounding_error(policy, batch, device)
            place_error, place_count = place_error + error, place_count + count
        if policy.instruction_queries is not None:
            weights, labels = role_weights(policy, {k: v.to(device) for k, v in batch.items()})
            known = labels >= 0
            role_hits += int(((weights.argmax(-1) == labels) & known).sum())
            role_count += int(known.sum())
    policy.train()
    metrics = {"loss": sum(losses) / len(order), "token_accuracy": correct / max(1, total),
               "chunk_exact": exact / len(order), "samples": int(len(order))}
    if place_count:
        metrics["target_place_error_cm"] = 100.0 * place_error / place_count
    if role_count:  # the share of role words each instruction pool attends to most
        metrics["pool_role_accuracy"] = role_hits / role_count
    return metrics


def grounding_error(policy: VLAPolicy, batch: dict, device) -> tuple[float, int]:
    """(sum of the grounding head's target-position errors in metres, samples) over a batch's reach steps."""
    from vla_ros.policy.training_data import PLACE_SCALE

    moved = {k: v.to(device) for k, v in batch.items()}
    prefix = policy.prefix_embeddings(moved["images"], moved["text_states"], moved["text_mask"],
                                      moved["proprio"], moved["proprio_present"])
    hidden = policy.hidden_states(prefix, moved["inputs"])
    first = hidden[torch.arange(hidden.shape[0], device=device), moved["first_action"]]
    scale = torch.as_tensor(PLACE_SCALE[:2], device=device)
    distance = ((policy.grounding_head(first)[:, :2] - moved["places"][:, :2]) * scale).norm(dim=1)
    known = moved["place_mask"][:, 0] > 0
    return float(distance[known].sum()), int(known.sum())


@dataclass
class TrainingEpisodes:
    """A data set's successful episodes split into train and valid, with readers of their frames."""

    train: list
    valid: list
    train_frames: object | None  # Hdf5Frames (read lazily) or None (frames held by the episodes)
    valid_frames: object | None


def load_split(data_dir: str | Path, *, lazy: bool = False, limit: int | None = None) -> tuple[list, list]:
    """(train, valid) successful episodes, by the data set's masks (every 10th is valid if none).

    Any data set kind `vla_ros.data.formats` reads: our HDF5, a LeRobotDataset (v3.0, v2.1) or demonstration bags.
    With `lazy`, HDF5 episodes are loaded without their frames (`load_training_episodes` reads them on demand).
    `limit` keeps the first N training episodes (data-efficiency curves); validation is not cut.
    """
    from vla_ros.data.formats import HDF5, dataset_kind, dataset_splits, load_dataset_episodes

    with_images = not (lazy and dataset_kind(data_dir) == HDF5)
    episodes = load_dataset_episodes(data_dir, successful_only=True, with_images=with_images)
    names = dataset_splits(data_dir)
    if names.get("valid"):
        valid_names = set(names["valid"])
        train, valid = [e for e in episodes if e.name not in valid_names], [e for e in episodes if e.name in valid_names]
    else:
        train = [e for i, e in enumerate(episodes) if i % 10 != 9]
        valid = [e for i, e in enumerate(episodes) if i % 10 == 9]
    if limit is not None:
        if limit > len(train):
            raise ValueError(f"{data_dir} has {len(train)} successful training episodes, fewer than the "
                             f"{limit} asked for")
        train = train[:limit]
    return train, valid


def load_training_episodes(data_dir, limit: int | None = None,
                           extra_cameras: tuple[str, ...] = ()) -> TrainingEpisodes:
    """`load_split` with the frames of an HDF5 data set left on disk: one copy of the small arrays in memory,
    frames read per batch (by the DataLoader's workers). `data_dir` may be a list of data sets (of any kinds):
    their episodes are pooled, `limit` applies to each (e.g. a new cell's demonstrations plus some of the old
    cell's, so that an adapter learns the new one without forgetting the old).
    With `extra_cameras` each frame is the primary view and those cameras side by side (a policy with several
    views); an episode without one of them is an error naming it."""
    from vla_ros.policy.training_data import ConcatFrames, EpisodeFrames, Hdf5Frames

    if isinstance(data_dir, (list, tuple)):
        if len(data_dir) == 1:
            return load_training_episodes(data_dir[0], limit, extra_cameras)
        parts = [load_training_episodes(path, limit, extra_cameras) for path in data_dir]

        def pooled(kind: str):
            episodes = [getattr(part, kind) for part in parts]
            frames = [getattr(part, f"{kind}_frames") for part in parts]
            if all(f is None for f in frames):
                return None
            return ConcatFrames([f if f is not None else EpisodeFrames([e.images for e in group])
                                 for f, group in zip(frames, episodes) if group])

        return TrainingEpisodes([e for p in parts for e in p.train], [e for p in parts for e in p.valid],
                                pooled("train"), pooled("valid"))
    train, valid = load_split(data_dir, lazy=True, limit=limit)
    if not train:
        raise ValueError(f"{data_dir} has no successful training episodes")
    lazy = train[0].images is None
    if not lazy and extra_cameras:
        for episode in (*train, *valid):
            missing = [name for name in extra_cameras if name not in episode.cameras]
            if missing:
                raise ValueError(f"{data_dir}: episode {episode.name} has no {', '.join(missing)} camera "
                                 f"(it has {', '.join(episode.cameras) or 'only the primary one'})")
            episode.images = np.concatenate([episode.images, *(episode.cameras[n] for n in extra_cameras)], 2)

    def frames(episodes):
        return Hdf5Frames(data_dir, [e.name for e in episodes], [len(e.actions) for e in episodes],
                          extra_cameras) if lazy and episodes else None

    return TrainingEpisodes(train, valid, frames(train), frames(valid))


class BatchStream(torch.utils.data.Dataset):
    """Training batches by step: batch `step` of process `rank` is drawn from its own seeded streams, so a
    resumed run, any number of DataLoader workers and every DDP process see reproducible, distinct batches."""

    def __init__(self, data: TrainingSet, text: TextTable, vocab, recipe: TrainRecipe, steps: int, rank: int = 0):
        self.data, self.text, self.vocab, self.recipe, self.steps, self.rank = data, text, vocab, recipe, steps, rank

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> dict:
        rng = np.random.default_rng([self.recipe.seed, int(step), self.rank])
        generator = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
        index = rng.integers(0, len(self.data), self.recipe.batch_size)
        return make_batch(self.data, self.text, index, self.vocab, self.recipe, rng, generator, train=True)


class TrainingObjective(nn.Module):
    """The policy plus its training loss as one module, so that DDP (through accelerate) sees one forward."""

    def __init__(self, policy: VLAPolicy, recipe: TrainRecipe):
        super().__init__()
        self.policy, self.recipe = policy, recipe

    def forward(self, batch: dict) -> torch.Tensor:
        loss, _, _ = batch_loss(self.policy, batch, next(self.policy.parameters()).device,
                                self.recipe.chunk_loss_weight, self.recipe.grounding_loss_weight,
                                self.recipe.role_loss_weight)
        return loss


@dataclass
class FitResult:
    history: dict
    best: dict  # {"step", "token_accuracy", "model": state dict of the best validation, or None}
    trained_seconds: float
    device: str
    processes: int
    main: bool  # this process writes the outputs


def fit(policy: VLAPolicy, train_set: TrainingSet, valid_set: TrainingSet | None, recipe: TrainRecipe,
        out_dir: Path, *, identity: dict, resume: bool = True, progress: bool = True, workers: int = 1,
        description: str = "train policy") -> FitResult:
    """The optimisation loop `vla-ros train` and `vla-ros finetune` share: the parameters of `policy` that
    require gradients are trained (AdamW, warm-up + cosine), batches come through a DataLoader, and the run is
    driven by Hugging Face accelerate (CPU, a GPU, or several processes with DDP under `accelerate launch`).
    Validation every `eval_every` steps keeps the best weights; OUT/checkpoint.pt every `checkpoint_every`
    steps (only a run of the same recipe, model and `identity` resumes from it)."""
    from accelerate import Accelerator, DistributedDataParallelKwargs

    accelerator = Accelerator(cpu=not torch.cuda.is_available(),
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    device = accelerator.device
    policy = policy.to(device)
    train_text = TextTable(train_set.instructions, policy.config.text_tokens, policy.config.text_states_layer,
                           train_set.role_words)
    valid_text = TextTable(valid_set.instructions, policy.config.text_tokens,
                           policy.config.text_states_layer, valid_set.role_words) if valid_set else None
    named = [(n, p) for n, p in policy.named_parameters() if p.requires_grad]
    decays = [p for n, p in named if p.ndim >= 2 and "embed" not in n and "position" not in n]
    flat = [p for n, p in named if not (p.ndim >= 2 and "embed" not in n and "position" not in n)]
    optimizer = torch.optim.AdamW([{"params": decays, "weight_decay": recipe.weight_decay},
                                   {"params": flat, "weight_decay": 0.0}], lr=recipe.learning_rate,
                                  betas=(0.9, 0.95))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, recipe))
    history: dict = {"step": [], "loss": [], "lr": [], "eval": []}
    first_step, trained_seconds = 0, 0.0
    best: dict = {"step": 0, "token_accuracy": -1.0, "model": None}
    checkpoint = out_dir / CHECKPOINT_FILE
    recipe_record = {k: v for k, v in dataclasses.asdict(recipe).items() if k not in ("threads", "workers")}
    if resume and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        if state["recipe"] != recipe_record or state["config"] != policy.config.to_dict() \
                or state.get("identity") != identity:
            raise ValueError(f"{checkpoint} was written by another recipe, model or data; remove it or pass "
                             f"--restart")
        policy.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        history, first_step, trained_seconds = state["history"], state["step"], state["trained_seconds"]
        best = state.get("best", best)

    objective, optimizer = accelerator.prepare(TrainingObjective(policy, recipe), optimizer)
    stream = BatchStream(train_set, train_text, policy.vocab, recipe, recipe.steps, accelerator.process_index)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, sampler=range(first_step, recipe.steps),
                                         num_workers=workers, pin_memory=device.type == "cuda",
                                         persistent_workers=False)
    main = accelerator.is_main_process
    policy.train()
    bar = tqdm(total=recipe.steps, initial=first_step, desc=description, unit="step",
               disable=not (progress and main))
    window: list[float] = []
    resumed_at = time.perf_counter()
    trainable = [p for p in policy.parameters() if p.requires_grad]
    for step, batch in enumerate(loader, start=first_step):
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        loss = objective(batch)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        schedule.step()
        window.append(loss.item())
        bar.update(1)
        if (step + 1) % 25 == 0 or step + 1 == recipe.steps:
            history["step"].append(step + 1)
            history["loss"].append(float(np.mean(window)))
            history["lr"].append(schedule.get_last_lr()[0])
            bar.set_postfix(loss=f"{np.mean(window):.3f}")
            window = []
        last = step + 1 == recipe.steps
        if main and valid_set is not None and ((step + 1) % recipe.eval_every == 0 or last):
            metrics = validate(policy, valid_set, valid_text, recipe, device)
            history["eval"].append({"step": step + 1, **metrics})
            if metrics["token_accuracy"] > best["token_accuracy"]:
                best = {"step": step + 1, "token_accuracy": metrics["token_accuracy"],
                        "model": {k: v.detach().cpu().clone() for k, v in policy.state_dict().items()}}
            bar.write(describe_metrics(step + 1, metrics))
        if main and (step + 1) % recipe.checkpoint_every == 0 and not last:
            _save_checkpoint(checkpoint, policy, optimizer, schedule, history, step + 1,
                             trained_seconds + time.perf_counter() - resumed_at, recipe_record, identity, best)
        if accelerator.num_processes > 1:
            accelerator.wait_for_everyone()
    bar.close()
    trained_seconds += time.perf_counter() - resumed_at
    policy.cpu().eval()
    if best["model"] is not None:
        policy.load_state_dict(best["model"])
    return FitResult(history, best, trained_seconds, str(device), accelerator.num_processes, main)


def describe_metrics(step: int, metrics: dict) -> str:
    where = f", target place error {metrics['target_place_error_cm']:.1f} cm" \
        if "target_place_error_cm" in metrics else ""
    where += f", pools on the role words {metrics['pool_role_accuracy']:.3f}" \
        if "pool_role_accuracy" in metrics else ""
    return (f"step {step}: valid loss {metrics['loss']:.3f}, token accuracy {metrics['token_accuracy']:.3f}, "
            f"chunk exact {metrics['chunk_exact']:.3f}{where}")


def training_sets(episodes: TrainingEpisodes, tokenizer, vocab, recipe: TrainRecipe
                  ) -> tuple[TrainingSet, TrainingSet | None]:
    train_set = build_training_set(episodes.train, tokenizer, vocab, paraphrase=recipe.paraphrase,
                                   terse=recipe.terse, extra=recipe.extra_phrasings, frames=episodes.train_frames,
                                   generated=recipe.generated_phrasings)
    valid_set = build_training_set(episodes.valid, tokenizer, vocab, paraphrase=False,
                                   frames=episodes.valid_frames) if episodes.valid else None
    return train_set, valid_set


def data_names(data_dir) -> str | list[str]:
    """A data set path, or a list of them, as recorded in reports and checkpoints."""
    return [str(p) for p in data_dir] if isinstance(data_dir, (list, tuple)) else str(data_dir)


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far (MB; Linux reports ru_maxrss in KB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def train_policy(data_dir: str | Path, tokenizer_dir: str | Path, out_dir: str | Path,
                 recipe: TrainRecipe | None = None, model_overrides: dict | None = None, resume: bool = True,
                 progress: bool = True, export_onnx: bool = True, episodes: int | None = None,
                 workers: int = 1) -> dict:
    """Train a policy from scratch (or resume OUT/checkpoint.pt); save it, its ONNX graphs and a report in OUT."""
    from vla_ros.tokenizers.loading import load_tokenizer

    recipe = recipe or TrainRecipe()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(recipe.seed)
    torch.set_num_threads(recipe.threads)
    started = time.perf_counter()

    tokenizer = load_tokenizer(tokenizer_dir)
    data = load_training_episodes(data_dir, limit=episodes,
                                  extra_cameras=tuple((model_overrides or {}).get("extra_cameras", ())))
    policy = new_policy(tokenizer, proprio=np.concatenate([e.joint_pos for e in data.train]),
                        **(model_overrides or {}))
    train_set, valid_set = training_sets(data, tokenizer, policy.vocab, recipe)
    setup_seconds = time.perf_counter() - started
    identity = {"kind": "train", "data": data_names(data_dir), "episodes": episodes}
    result = fit(policy, train_set, valid_set, recipe, out_dir, identity=identity, resume=resume,
                 progress=progress, workers=workers)
    policy.tokenizer = tokenizer
    report = {
        "data": data_names(data_dir), "tokenizer": str(tokenizer_dir), "tokenizer_identity": tokenizer.identity,
        "device": result.device, "processes": result.processes, "threads": recipe.threads, "workers": workers,
        "recipe": dataclasses.asdict(recipe), "model": policy.config.to_dict(),
        "parameters": sum(p.numel() for p in policy.parameters()),
        "train_episodes": len(data.train), "valid_episodes": len(data.valid),
        "train_samples": len(train_set), "phrasings": len(train_set.instructions),
        **_run_summary(result, recipe, setup_seconds),
    }
    report["written"] = result.main  # under DDP only the main process writes OUT
    if result.main:
        policy.save_pretrained(out_dir)
        if export_onnx:
            from vla_ros.policy.onnx_export import export_policy_onnx

            export_policy_onnx(policy, out_dir)
        _write_outputs(out_dir, report, result.history)
    return report


def _run_summary(result: FitResult, recipe: TrainRecipe, setup_seconds: float) -> dict:
    history = result.history
    return {
        "setup_seconds": round(setup_seconds, 1), "train_seconds": round(result.trained_seconds, 1),
        "peak_memory_mb": round(peak_memory_mb(), 1),
        "final_eval": history["eval"][-1] if history["eval"] else None,
        "selected_step": result.best["step"] if result.best["model"] is not None else recipe.steps,
        "selected_eval": next((e for e in history["eval"] if e["step"] == result.best["step"]), None),
        "history": history,
    }


def _write_outputs(out_dir: Path, report: dict, history: dict) -> None:
    (out_dir / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    write_curve(out_dir / CURVE_FILE, history)
    checkpoint = out_dir / CHECKPOINT_FILE
    if checkpoint.is_file():
        checkpoint.unlink()  # the run is complete; the saved policy replaces it


def _save_checkpoint(path: Path, policy, optimizer, schedule, history, step, seconds, recipe_record: dict,
                     identity: dict, best) -> None:
    state = {"model": policy.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
             "history": history, "step": step, "trained_seconds": seconds, "recipe": recipe_record,
             "config": policy.config.to_dict(), "identity": identity, "best": best}
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    partial.replace(path)  # atomic: a run killed mid-write keeps the previous checkpoint


def write_curve(path: Path, history: dict) -> None:
    """Training loss and validation metrics against steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].semilogy(history["step"], history["loss"], label="train loss")
    if history["eval"]:
        axes[0].semilogy([e["step"] for e in history["eval"]], [e["loss"] for e in history["eval"]], "o-",
                         label="valid loss")
        axes[1].plot([e["step"] for e in history["eval"]], [e["token_accuracy"] for e in history["eval"]], "o-",
                     label="valid token accuracy")
        axes[1].plot([e["step"] for e in history["eval"]], [e["chunk_exact"] for e in history["eval"]], "o-",
                     label="valid chunk exact match")
        axes[1].set_ylim(0, 1)
        axes[1].legend()
    axes[0].set_xlabel("step")
    axes[0].legend()
    axes[1].set_xlabel("step")
    axes[0].set_title("policy cross-entropy (plan + action tokens)")
    axes[1].set_title("teacher-forced accuracy on valid episodes")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
