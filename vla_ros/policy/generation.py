"""Token generation: a lean KV-cached pass over the policy's Llama weights, constrained to valid ids.

Hugging Face's Llama forward costs ~2 ms of Python per call on this CPU, more than the maths of a
4-layer, 192-wide model; `KVCachedDecoder` runs the same layers with an explicit cache and
precomputed rotary tables. It is also what the ONNX graphs are exported from, and on a model this
small onnxruntime's time goes to the number of graph nodes rather than to arithmetic, so the
decoder is written for few nodes: one projection for q, k and v and one for the MLP's gate and up
(the weights stacked once, at construction), the rotary embedding of q and k together as one
multiplication by a signed permutation (exact: its entries are 0 and ±1), and reshapes whose sizes
are known when the graph is traced (the batch is the only free size).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from vla_ros.policy.modeling_vla import VLAPolicy
from vla_ros.policy.vocabulary import Vocabulary


@dataclass
class GeneratedChunk:
    """One generated chunk: action ids [B, T] and, in plan mode, the plan ids of each row."""

    tokens: np.ndarray
    plans: list[list[int]] | None = None


def rotate_half_matrix(head_dim: int) -> torch.Tensor:
    """R [head_dim, head_dim] with x @ R == Llama's rotate_half(x) == cat(-x[half:], x[:half]), exactly."""
    half = head_dim // 2
    rotation = torch.zeros(head_dim, head_dim)
    index = torch.arange(half)
    rotation[index + half, index] = -1.0
    rotation[index, index + half] = 1.0
    return rotation


def _stacked_linear(*linears: nn.Linear) -> nn.Linear:
    """One frozen Linear computing the given ones side by side (their outputs concatenated)."""
    weight = torch.cat([linear.weight.detach() for linear in linears])
    has_bias = linears[0].bias is not None
    stacked = nn.Linear(weight.shape[1], weight.shape[0], bias=has_bias, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        stacked.weight.copy_(weight)
        if has_bias:
            stacked.bias.copy_(torch.cat([linear.bias.detach() for linear in linears]))
    return stacked.requires_grad_(False)


class _DecoderLayer(nn.Module):
    """One Llama layer's modules, with q/k/v and gate/up stacked into single projections."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        attention, mlp = layer.self_attn, layer.mlp
        self.input_norm, self.post_norm = layer.input_layernorm, layer.post_attention_layernorm
        self.qkv = _stacked_linear(attention.q_proj, attention.k_proj, attention.v_proj)
        self.out = attention.o_proj
        self.gate_up = _stacked_linear(mlp.gate_proj, mlp.up_proj)
        self.inner = mlp.gate_proj.out_features
        self.down, self.act = mlp.down_proj, mlp.act_fn


class KVCachedDecoder(nn.Module):
    """The policy's Llama as prefill + single-token steps over a key/value cache kept per layer.

    The stacked projections are copies made here: build the decoder after the weights are final.
    """

    def __init__(self, policy: VLAPolicy):
        super().__init__()
        llama = policy.llama.model
        self.layers = nn.ModuleList(_DecoderLayer(layer) for layer in llama.layers)
        self.norm = llama.norm
        self.head = policy.llama.lm_head
        self.embed = llama.embed_tokens
        config = policy.llama.config
        self.width = config.hidden_size
        self.heads = config.num_attention_heads
        self.head_dim = config.hidden_size // self.heads
        self.scale = self.head_dim ** -0.5
        device = policy.device
        positions = torch.arange(config.max_position_embeddings, device=device)
        dummy = torch.zeros(1, 1, config.hidden_size, device=device)
        with torch.no_grad():
            cos, sin = llama.rotary_emb(dummy, positions.unsqueeze(0))
        self.register_buffer("cos", cos[0].float(), persistent=False)  # [max_positions, head_dim]
        self.register_buffer("sin", sin[0].float(), persistent=False)
        self.register_buffer("rotation", rotate_half_matrix(self.head_dim).to(device), persistent=False)
        length = config.max_position_embeddings
        causal = torch.full((length, length), float("-inf"), device=device).triu(1)
        self.register_buffer("causal", causal, persistent=False)  # additive: -inf above the diagonal

    def _layers(self, x: torch.Tensor, start: int | torch.Tensor,
                past: list[torch.Tensor] | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        length = int(x.shape[1])  # fixed in each graph: the prefix length, or 1 for a step
        heads, head_dim, width = self.heads, self.head_dim, self.width
        if isinstance(start, int):
            cos, sin = self.cos[start:start + length], self.sin[start:start + length]
        else:
            cos, sin = self.cos[start], self.sin[start]
        mask = self.causal[:length, :length] if past is None and length > 1 else None
        cache = []
        for index, layer in enumerate(self.layers):
            qkv = layer.qkv(layer.input_norm(x))  # [B, L, 3 × width]
            if length == 1:  # [B, 1, 3H·d] and [B, 3H, 1, d] are the same memory
                qkv = qkv.reshape(-1, 3 * heads, 1, head_dim)
            else:
                qkv = qkv.reshape(-1, length, 3 * heads, head_dim).transpose(1, 2)
            qk, v = qkv.split([2 * heads, heads], 1)
            qk = qk * cos + (qk @ self.rotation) * sin  # rotary embedding of q and k at once
            q, k = qk.split([heads, heads], 1)  # split with sizes, not chunk: no shape arithmetic in ONNX
            if past is not None:
                k = torch.cat([past[2 * index], k], 2)
                v = torch.cat([past[2 * index + 1], v], 2)
            cache += [k, v]
            if index == len(self.layers) - 1 and length > 1:  # past the last keys and values only the
                q, x, mask, length = q[:, :, -1:], x[:, -1:], None, 1  # last position's output is used
            scores = (q * self.scale) @ k.transpose(-1, -2)
            if mask is not None:
                scores = scores + mask
            out = scores.softmax(-1) @ v  # [B, H, L, d]
            out = out.reshape(-1, 1, width) if length == 1 else out.transpose(1, 2).reshape(-1, length, width)
            x = x + layer.out(out)
            gate, up = layer.gate_up(layer.post_norm(x)).split([layer.inner, layer.inner], -1)
            x = x + layer.down(layer.act(gate) * up)
        return self.head(self.norm(x[:, -1])), cache

    def prefill(self, embeds: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Embeddings [B, L, width] from position 0 → (logits of the last position [B, V], cache).

        The cache is one tensor per layer and kind, [key_0, value_0, key_1, …], each [B, heads, L, head_dim].
        """
        return self._layers(embeds, 0, None)

    def step(self, ids: torch.Tensor, position: torch.Tensor,
             past: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One token per row, ids [B, 1] at `position` (a 1-element int64 tensor) → (logits [B, V], longer cache)."""
        return self._layers(self.embed(ids), position, past)


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
        logits, cache = self.decoder.prefill(torch.cat([prefix, self.decoder.embed(start_ids)], 1))
        device = prefix.device

        def step(ids: np.ndarray, position: int) -> np.ndarray:
            nonlocal cache
            out, cache = self.decoder.step(torch.from_numpy(ids).to(device), torch.tensor([position], device=device),
                                           cache)
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
