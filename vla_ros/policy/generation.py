"""Token generation: a lean KV-cached pass over the policy's Llama weights, constrained to valid ids.

Hugging Face's Llama forward costs ~2 ms of Python per call on this CPU, more than the maths of a
4-layer, 192-wide model; `KVCachedDecoder` runs the same layers (same modules, same weights) with
an explicit cache and precomputed rotary tables. It is also what the ONNX graphs are exported from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vla_ros.policy.modeling_vla import VLAPolicy
from vla_ros.policy.vocabulary import Vocabulary


@dataclass
class GeneratedChunk:
    """One generated chunk: action ids [B, T] and, in plan mode, the plan ids of each row."""

    tokens: np.ndarray
    plans: list[list[int]] | None = None


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], -1)


class KVCachedDecoder(nn.Module):
    """The policy's Llama as prefill + single-token steps over a stacked cache [layers, B, heads, L, head_dim]."""

    def __init__(self, policy: VLAPolicy):
        super().__init__()
        self.policy = policy
        llama = policy.llama.model
        self.layers = llama.layers
        self.norm = llama.norm
        self.head = policy.llama.lm_head
        self.embed = llama.embed_tokens
        config = policy.llama.config
        self.heads = config.num_attention_heads
        self.head_dim = config.hidden_size // self.heads
        positions = torch.arange(config.max_position_embeddings, device=policy.device)
        dummy = torch.zeros(1, 1, config.hidden_size, device=policy.device)
        with torch.no_grad():
            cos, sin = llama.rotary_emb(dummy, positions.unsqueeze(0))
        self.register_buffer("cos", cos[0].float(), persistent=False)  # [max_positions, head_dim]
        self.register_buffer("sin", sin[0].float(), persistent=False)

    def _layers(self, x: torch.Tensor, start: int | torch.Tensor, past_k: torch.Tensor | None,
                past_v: torch.Tensor | None, causal: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, length, width = x.shape
        cos = self.cos[start:start + length] if isinstance(start, int) else self.cos[start].unsqueeze(0)
        sin = self.sin[start:start + length] if isinstance(start, int) else self.sin[start].unsqueeze(0)
        keys, values = [], []
        for index, layer in enumerate(self.layers):
            attn = layer.self_attn
            normed = layer.input_layernorm(x)
            shape = (batch, length, self.heads, self.head_dim)
            q = attn.q_proj(normed).view(shape).transpose(1, 2)
            k = attn.k_proj(normed).view(shape).transpose(1, 2)
            v = attn.v_proj(normed).view(shape).transpose(1, 2)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            if past_k is not None:
                k = torch.cat([past_k[index], k], 2)
                v = torch.cat([past_v[index], v], 2)
            keys.append(k)
            values.append(v)
            out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            x = x + attn.o_proj(out.transpose(1, 2).reshape(batch, length, width))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return self.head(self.norm(x[:, -1])), torch.stack(keys), torch.stack(values)

    def prefill(self, embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Embeddings [B, L, width] from position 0 → (logits of the last position [B, V], keys, values)."""
        return self._layers(embeds, 0, None, None, causal=True)

    def step(self, ids: torch.Tensor, position: torch.Tensor, past_k: torch.Tensor,
             past_v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One token per row, ids [B, 1] at `position` (a 1-element int64 tensor) → (logits [B, V], keys, values)."""
        return self._layers(self.embed(ids), position, past_k, past_v, causal=False)


def choose(logits: np.ndarray, allowed: np.ndarray, temperature: float, rng: np.random.Generator | None) -> np.ndarray:
    """Greedy (temperature 0) or sampled ids [B] among the allowed ones; logits [B, V]."""
    masked = np.where(allowed, logits.astype(np.float64), -np.inf)
    if temperature <= 0:
        return masked.argmax(-1)
    rng = rng if rng is not None else np.random.default_rng()
    scaled = (masked - masked.max(-1, keepdims=True)) / temperature
    probs = np.exp(scaled)
    probs /= probs.sum(-1, keepdims=True)
    return np.array([rng.choice(len(row), p=row) for row in probs])


def decode(first_logits: np.ndarray, step: Callable[[np.ndarray, int], np.ndarray], position: int,
           vocab: Vocabulary, tokens_per_chunk: int, plan: bool, temperature: float,
           rng: np.random.Generator | None) -> tuple[np.ndarray, list[int]]:
    """The generation loop shared by every backend.

    `first_logits` [B, V] are those after the start token, `step(ids [B, 1], position) -> logits`
    feeds one token per row at `position`. A plan (B must be 1) is generated first: plan words
    until END_PLAN or `max_plan_tokens`, then END_PLAN is forced; then `tokens_per_chunk` action ids.
    """
    action_allowed = vocab.action_mask()
    plan_allowed = vocab.plan_mask()
    end_only = np.zeros_like(plan_allowed)
    end_only[vocab.end_plan] = True
    logits = first_logits
    plan_ids: list[int] = []
    if plan:
        if len(first_logits) != 1:
            raise ValueError("plans are generated one observation at a time")
        for index in range(vocab.max_plan_tokens + 1):
            chosen = choose(logits, end_only if index == vocab.max_plan_tokens else plan_allowed, temperature, rng)
            plan_ids.append(int(chosen[0]))
            logits = step(chosen.reshape(-1, 1), position)
            position += 1
            if plan_ids[-1] == vocab.end_plan:
                break
    tokens = []
    for index in range(tokens_per_chunk):
        chosen = choose(logits, action_allowed, temperature, rng)
        tokens.append(chosen)
        if index + 1 < tokens_per_chunk:
            logits = step(chosen.reshape(-1, 1), position)
            position += 1
    return np.stack(tokens, 1).astype(np.int64), plan_ids


class ChunkGenerator:
    """Generates action chunks (optionally after a plan) from observation prefixes with a KV cache (torch)."""

    def __init__(self, policy: VLAPolicy):
        self.policy = policy.eval()
        self.decoder = KVCachedDecoder(policy).eval()
        self.vocab: Vocabulary = policy.vocab

    @torch.inference_mode()
    def generate(self, prefix: torch.Tensor, plan: bool = False, temperature: float | None = None,
                 rng: np.random.Generator | None = None) -> GeneratedChunk:
        """prefix [B, P, width] (encoded once for the batch) → action ids [B, T], plus plans in plan mode."""
        temperature = self.policy.config.temperature if temperature is None else temperature
        if plan:
            rows = [self._generate_rows(prefix[i:i + 1], True, temperature, rng) for i in range(len(prefix))]
            return GeneratedChunk(np.concatenate([r[0] for r in rows]), [r[1] for r in rows])
        tokens, _ = self._generate_rows(prefix, False, temperature, rng)
        return GeneratedChunk(tokens)

    def _generate_rows(self, prefix, plan, temperature, rng) -> tuple[np.ndarray, list[int]]:
        batch, length = prefix.shape[:2]
        start = self.vocab.start_plan if plan else self.vocab.start_actions
        start_ids = torch.full((batch, 1), start, dtype=torch.long, device=prefix.device)
        logits, keys, values = self.decoder.prefill(torch.cat([prefix, self.decoder.embed(start_ids)], 1))
        cache = {"keys": keys, "values": values}
        device = prefix.device

        def step(ids: np.ndarray, position: int) -> np.ndarray:
            out, cache["keys"], cache["values"] = self.decoder.step(
                torch.from_numpy(ids).to(device), torch.tensor([position], device=device),
                cache["keys"], cache["values"])
            return out.float().cpu().numpy()

        return decode(logits.float().cpu().numpy(), step, length + 1, self.vocab,
                      self.policy.config.tokens_per_chunk, plan, temperature, rng)


@torch.inference_mode()
def generate_uncached(policy: VLAPolicy, prefix: torch.Tensor) -> np.ndarray:
    """Greedy action ids [B, T] by re-running the full Hugging Face forward for every token (no cache)."""
    vocab = policy.vocab
    allowed = vocab.action_mask()
    ids = torch.full((prefix.shape[0], 1), vocab.start_actions, dtype=torch.long, device=prefix.device)
    for _ in range(policy.config.tokens_per_chunk):
        logits = policy(prefix, ids)[:, -1].float().cpu().numpy()
        chosen = torch.from_numpy(choose(logits, allowed, 0.0, None)).to(prefix.device)
        ids = torch.cat([ids, chosen.unsqueeze(1)], 1)
    return ids[:, 1:].cpu().numpy()


@torch.inference_mode()
def generate_hf(policy: VLAPolicy, prefix: torch.Tensor, use_cache: bool = False) -> np.ndarray:
    """Greedy action ids [B, T] through Hugging Face `generate` (the latency baseline)."""
    from transformers import LogitsProcessor, LogitsProcessorList

    vocab = policy.vocab
    allowed = torch.from_numpy(vocab.action_mask()).to(prefix.device)

    class AllowActions(LogitsProcessor):
        def __call__(self, input_ids, scores):
            return scores.masked_fill(~allowed, float("-inf"))

    start = torch.full((prefix.shape[0], 1), vocab.start_actions, dtype=torch.long, device=prefix.device)
    embeds = torch.cat([prefix, policy.token_embeddings(start)], 1)
    out = policy.llama.generate(
        inputs_embeds=embeds, max_new_tokens=policy.config.tokens_per_chunk,
        min_new_tokens=policy.config.tokens_per_chunk, do_sample=False, use_cache=use_cache,
        logits_processor=LogitsProcessorList([AllowActions()]), pad_token_id=vocab.start_actions,
        eos_token_id=None, attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long, device=prefix.device),
    )
    return out[:, -policy.config.tokens_per_chunk:].cpu().numpy()
