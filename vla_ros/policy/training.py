"""The training recipe of the policy: teacher-forced cross-entropy on plan and action tokens.

Fixed seeds, a progress bar, periodic validation on the data set's `mask/valid` episodes,
resumable checkpoints (OUT/checkpoint.pt, every `checkpoint_every` steps), a GPU when present.
The saved policy is the validated one with the best teacher-forced token accuracy (early stopping
by selection: the schedule still runs to the end, the weights of the best evaluation are kept).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from vla_ros.policy.modeling_vla import VLAPolicy, new_policy
from vla_ros.policy.recipe import TrainRecipe
from vla_ros.policy.training_data import IGNORE, TrainingSet, build_training_set, sequences, shift_images

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

    def __init__(self, instructions: list[str], text_tokens: int):
        from vla_ros.policy.text_encoding import TextEncoder

        encoder = TextEncoder(text_tokens)
        states, masks = [], []
        for start in range(0, len(instructions), 64):
            s, m = encoder.encode_batch(instructions[start:start + 64])
            states.append(s)
            masks.append(m)
        self.states = torch.from_numpy(np.concatenate(states)) if states else torch.zeros(0, text_tokens, 384)
        self.masks = torch.from_numpy(np.concatenate(masks)) if masks else torch.zeros(0, text_tokens, dtype=torch.bool)
        self.roles = torch.from_numpy(role_pieces(encoder.tokenizer, instructions, text_tokens))


def role_pieces(tokenizer, instructions: list[str], text_tokens: int) -> np.ndarray:
    """[N, 2]: the word-piece index of the word naming the block to move, and of the word naming the reference
    (the lower block, the receptacle) or the direction; -1 where an instruction names no such word (or matches
    no task). The labels of the role loss that teaches the instruction pools to read the roles."""
    from vla_ros.sim.tasks import parse_instruction

    roles = np.full((len(instructions), 2), -1, np.int64)
    for row, text in enumerate(instructions):
        try:
            task = parse_instruction(text)
        except ValueError:
            continue
        ids = tokenizer(text, max_length=text_tokens, truncation=True)["input_ids"]
        for column, word in enumerate((task.target, task.reference or task.direction)):
            piece = tokenizer(word, add_special_tokens=False)["input_ids"][:1] if word else []
            if piece and piece[0] in ids:
                roles[row, column] = ids.index(piece[0])
    return roles


def make_batch(data: TrainingSet, text: TextTable, index: np.ndarray, policy: VLAPolicy, recipe: TrainRecipe,
               rng: np.random.Generator, generator: torch.Generator, train: bool) -> dict:
    """Tensors for one batch; augmentation (phrasing, shift, proprio dropout, plan mode) only when `train`."""
    vocab = policy.vocab
    episodes = data.episode[index]
    if train:
        phrasing = np.array([data.phrasings[e][rng.integers(len(data.phrasings[e]))] for e in episodes])
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
        batch = make_batch(data, text, index, policy, recipe, rng, torch.Generator(), train=False)
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


def load_split(data_dir: str | Path) -> tuple[list, list]:
    """(train, valid) successful episodes with images, by the data set's masks (every 10th is valid if none).

    Any data set kind `vla_ros.data.formats` reads: our HDF5, a LeRobotDataset (v3.0, v2.1) or demonstration bags.
    """
    from vla_ros.data.formats import dataset_splits, load_dataset_episodes

    episodes = load_dataset_episodes(data_dir, successful_only=True, with_images=True)
    names = dataset_splits(data_dir)
    if names.get("valid"):
        valid_names = set(names["valid"])
        return [e for e in episodes if e.name not in valid_names], [e for e in episodes if e.name in valid_names]
    return [e for i, e in enumerate(episodes) if i % 10 != 9], [e for i, e in enumerate(episodes) if i % 10 == 9]


def train_policy(data_dir: str | Path, tokenizer_dir: str | Path, out_dir: str | Path,
                 recipe: TrainRecipe | None = None, model_overrides: dict | None = None, resume: bool = True,
                 progress: bool = True, export_onnx: bool = True) -> dict:
    """Train a policy from scratch (or resume OUT/checkpoint.pt); save it, its ONNX graphs and a report in OUT."""
    from vla_ros.tokenizers.loading import load_tokenizer

    recipe = recipe or TrainRecipe()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(recipe.seed)
    torch.set_num_threads(recipe.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    started = time.perf_counter()

    tokenizer = load_tokenizer(tokenizer_dir)
    train_episodes, valid_episodes = load_split(data_dir)
    if not train_episodes:
        raise ValueError(f"{data_dir} has no successful training episodes")
    policy = new_policy(tokenizer, proprio=np.concatenate([e.joint_pos for e in train_episodes]),
                        **(model_overrides or {})).to(device)
    train_set = build_training_set(train_episodes, tokenizer, policy.vocab, paraphrase=recipe.paraphrase,
                                   terse=recipe.terse, extra=recipe.extra_phrasings)
    valid_set = build_training_set(valid_episodes, tokenizer, policy.vocab, paraphrase=False) if valid_episodes \
        else None
    train_text = TextTable(train_set.instructions, policy.config.text_tokens)
    valid_text = TextTable(valid_set.instructions, policy.config.text_tokens) if valid_set else None
    setup_seconds = time.perf_counter() - started

    decay = [p for n, p in policy.named_parameters() if p.ndim >= 2 and "embed" not in n and "position" not in n]
    no_decay = [p for n, p in policy.named_parameters() if not (p.ndim >= 2 and "embed" not in n and "position" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=recipe.learning_rate,
                                  betas=(0.9, 0.95))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, recipe))
    rng = np.random.default_rng(recipe.seed)
    generator = torch.Generator().manual_seed(recipe.seed)
    history: dict = {"step": [], "loss": [], "lr": [], "eval": []}
    first_step, trained_seconds = 0, 0.0
    best: dict = {"step": 0, "token_accuracy": -1.0, "model": None}
    checkpoint = out_dir / CHECKPOINT_FILE
    if resume and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        same_recipe = {k: v for k, v in state["recipe"].items() if k != "threads"} == \
            {k: v for k, v in dataclasses.asdict(recipe).items() if k != "threads"}
        if not same_recipe or state["config"] != policy.config.to_dict():
            raise ValueError(f"{checkpoint} was written by another recipe or model; remove it or pass --restart")
        policy.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        rng.bit_generator.state = state["numpy_rng"]
        generator.set_state(state["torch_rng"])
        history, first_step, trained_seconds = state["history"], state["step"], state["trained_seconds"]
        best = state.get("best", best)

    policy.train()
    bar = tqdm(range(first_step, recipe.steps), desc="train policy", unit="step", disable=not progress,
               initial=first_step, total=recipe.steps)
    window: list[float] = []
    resumed_at = time.perf_counter()
    for step in bar:
        index = rng.integers(0, len(train_set), recipe.batch_size)
        batch = make_batch(train_set, train_text, index, policy, recipe, rng, generator, train=True)
        loss, _, _ = batch_loss(policy, batch, device, recipe.chunk_loss_weight, recipe.grounding_loss_weight,
                                recipe.role_loss_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        window.append(loss.item())
        if (step + 1) % 25 == 0 or step + 1 == recipe.steps:
            history["step"].append(step + 1)
            history["loss"].append(float(np.mean(window)))
            history["lr"].append(schedule.get_last_lr()[0])
            bar.set_postfix(loss=f"{np.mean(window):.3f}")
            window = []
        last = step + 1 == recipe.steps
        if valid_set is not None and ((step + 1) % recipe.eval_every == 0 or last):
            metrics = validate(policy, valid_set, valid_text, recipe, device)
            history["eval"].append({"step": step + 1, **metrics})
            if metrics["token_accuracy"] > best["token_accuracy"]:
                best = {"step": step + 1, "token_accuracy": metrics["token_accuracy"],
                        "model": {k: v.detach().cpu().clone() for k, v in policy.state_dict().items()}}
            where = f", target place error {metrics['target_place_error_cm']:.1f} cm" \
                if "target_place_error_cm" in metrics else ""
            where += f", pools on the role words {metrics['pool_role_accuracy']:.3f}" \
                if "pool_role_accuracy" in metrics else ""
            bar.write(f"step {step + 1}: valid loss {metrics['loss']:.3f}, token accuracy "
                      f"{metrics['token_accuracy']:.3f}, chunk exact {metrics['chunk_exact']:.3f}{where}")
        if (step + 1) % recipe.checkpoint_every == 0 and not last:
            _save_checkpoint(checkpoint, policy, optimizer, schedule, rng, generator, history, step + 1,
                             trained_seconds + time.perf_counter() - resumed_at, recipe, best)
    bar.close()
    trained_seconds += time.perf_counter() - resumed_at

    policy = policy.cpu().eval()
    if best["model"] is not None:
        policy.load_state_dict(best["model"])
    policy.tokenizer = tokenizer
    policy.save_pretrained(out_dir)
    if export_onnx:
        from vla_ros.policy.onnx_export import export_policy_onnx

        export_policy_onnx(policy, out_dir)
    report = {
        "data": str(data_dir), "tokenizer": str(tokenizer_dir), "tokenizer_identity": tokenizer.identity,
        "device": str(device), "threads": recipe.threads, "recipe": dataclasses.asdict(recipe),
        "model": policy.config.to_dict(), "parameters": sum(p.numel() for p in policy.parameters()),
        "train_episodes": len(train_episodes), "valid_episodes": len(valid_episodes),
        "train_samples": len(train_set), "phrasings": len(train_set.instructions),
        "setup_seconds": round(setup_seconds, 1), "train_seconds": round(trained_seconds, 1),
        "final_eval": history["eval"][-1] if history["eval"] else None,
        "selected_step": best["step"] if best["model"] is not None else recipe.steps,
        "selected_eval": next((e for e in history["eval"] if e["step"] == best["step"]), None),
        "history": history,
    }
    (out_dir / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    write_curve(out_dir / CURVE_FILE, history)
    if checkpoint.is_file():
        checkpoint.unlink()  # the run is complete; the saved policy replaces it
    return report


def _save_checkpoint(path: Path, policy, optimizer, schedule, rng, generator, history, step, seconds, recipe,
                     best) -> None:
    state = {"model": policy.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
             "numpy_rng": rng.bit_generator.state, "torch_rng": generator.get_state(), "history": history,
             "step": step, "trained_seconds": seconds, "recipe": dataclasses.asdict(recipe),
             "config": policy.config.to_dict(), "best": best}
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
