"""The VLA policy model: CNN visual tokens + projected MiniLM states + proprioception → a small Llama → token logits.

Sequence layout (fixed length prefix, so that every backend sees the same positions):

    [IMG × grid²][TXT × text_tokens][PROPRIO] [START_…][plan … END_PLAN][action tokens]
    '-------------------- prefix --------------------' '------------- generated -------------'

That is early fusion, the default (`VLAConfig.fusion`). Late fusion has no TXT part: the instruction is
fused into each image token (`fusion.LateFusion`). Middle fusion's IMG and TXT are MiniLM's last layers'
outputs over image tokens and word pieces together (`fusion.LanguageBridge`).

The instruction is padded to `text_tokens` word pieces with a learned padding embedding rather
than masked out: no attention mask is ever needed, training and inference positions agree, and
the ONNX graphs have static shapes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from vla_ros.policy.configuration_vla import PROPRIO_DIM, VLAConfig
from vla_ros.policy.errors import PolicyLoadError
from vla_ros.policy.fusion import LanguageBridge, LateFusion
from vla_ros.policy.vision import VisionEncoder
from vla_ros.policy.vocabulary import Vocabulary

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_DIR = "tokenizer"
IMAGE_SEGMENT, TEXT_SEGMENT, PROPRIO_SEGMENT = 0, 1, 2


class TokenizerMismatchError(PolicyLoadError):
    """The policy was trained on other action ids than the given tokenizer's."""


def llama_config(config: VLAConfig, vocab_size: int):
    from transformers import LlamaConfig

    llama = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=config.prefix_length + config.max_generated,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        attention_dropout=0.0,
        pad_token_id=None,
        bos_token_id=None,
        eos_token_id=None,
    )
    llama._attn_implementation = "sdpa"
    return llama


class InstructionQueries(nn.Module):
    """Learned attention pools over the instruction's word-piece states: [B, T, D] → [B, queries × D].

    The mean of the states hardly depends on word order, so a vision encoder conditioned on it can
    bring out the blocks an instruction names but not tell "stack the red block on the blue block"
    from "cover the red block with the blue block". Each query scores every word piece (the states
    are contextual, so "red" after "cover the" differs from "red" after "stack the") and returns the
    weighted sum of the states: one query can learn to find the block to move, another the block
    below. Tiny initial queries give near-uniform weights: at the start every pool is the mean.
    Padding gets no weight; an instruction without word pieces pools to zeros.
    """

    def __init__(self, text_dim: int, queries: int, key_dim: int = 64):
        super().__init__()
        self.keys = nn.Linear(text_dim, key_dim)
        self.queries = nn.Parameter(torch.randn(queries, key_dim) * 0.02)
        self.scale = key_dim ** -0.5

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """states [B, T, D] (zeros at padding), mask [B, T] (1 at word pieces) → [B, queries × D]."""
        return torch.einsum("bqt,btd->bqd", self.weights(states, mask), states).flatten(1)

    def weights(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Each query's attention over the word pieces [B, queries, T]; zero at padding."""
        scores = torch.einsum("btk,qk->bqt", self.keys(states), self.queries) * self.scale
        present = mask.unsqueeze(1)  # [B, 1, T]
        return scores.masked_fill(present < 0.5, -1e4).softmax(-1) * present  # a finite fill: ONNX-safe


class VLAPolicy(nn.Module):
    """Decoder-only policy (early, middle or late fusion); `forward` gives logits for teacher-forced generated
    tokens."""

    def __init__(self, config: VLAConfig):
        super().__init__()
        from transformers import LlamaForCausalLM

        self.config = config
        self.vocab = Vocabulary(config.action_vocab_size, tuple(config.plan_words), config.max_plan_tokens)
        width = config.hidden_size
        self.vision = VisionEncoder(config.image_size, config.image_grid, tuple(config.cnn_channels), width,
                                    condition_dim=config.condition_dim, views=config.views)
        self.instruction_queries = InstructionQueries(config.text_dim, config.instruction_pools) \
            if config.instruction_pools > 0 else None
        # late: the instruction vector meets each image token here; middle: MiniLM's last layers see both
        self.late_fusion = LateFusion(width, config.instruction_dim) if config.fusion == "late" else None
        self.bridge = LanguageBridge(width, config.image_tokens, config.bridge_layers, config.text_dim) \
            if config.fusion == "middle" else None
        self.image_projection = nn.Linear(config.text_dim, width) if self.bridge is not None else None
        has_text = config.prefix_text_tokens > 0
        self.text_projection = nn.Linear(config.text_dim, width) if has_text else None
        self.text_padding = nn.Parameter(torch.zeros(width)) if has_text else None
        self.proprio_projection = nn.Linear(PROPRIO_DIM, width)
        self.proprio_missing = nn.Parameter(torch.zeros(width))
        self.segments = nn.Embedding(3, width)
        self.llama = LlamaForCausalLM(llama_config(config, self.vocab.size))
        # Training-only: regresses the normalized chunk where the first action token is predicted, a smooth
        # signal next to the cross-entropy on code ids (codes of a VQ-VAE say nothing about their distances).
        self.chunk_head = nn.Linear(width, config.chunk_size * 7)
        # Training-only: regresses where the instruction's target (and reference) object stands on the table
        # from the same hidden state. It supervises grounding on every sample, where the action tokens only
        # reveal the named block in the first steps of an episode (later, "the nearest block" predicts them).
        self.grounding_head = nn.Linear(width, 4) if config.grounding_head else None
        self.register_buffer("proprio_mean", torch.tensor(config.proprio_mean, dtype=torch.float32), persistent=False)
        self.register_buffer("proprio_std", torch.tensor(config.proprio_std, dtype=torch.float32), persistent=False)
        for parameter in (self.text_padding, self.proprio_missing):
            if parameter is not None:
                nn.init.normal_(parameter, std=0.02)
        self.tokenizer = None  # the ActionTokenizer the action ids belong to, when loaded with one

    # ------------------------------------------------------------------------------------ encoding
    def prefix_embeddings(self, images: torch.Tensor, text_states: torch.Tensor, text_mask: torch.Tensor,
                          proprio: torch.Tensor | None = None,
                          proprio_present: torch.Tensor | None = None) -> torch.Tensor:
        """Observation → prefix embeddings [B, prefix_length, width].

        images uint8 [B, S, S × views, 3] (the views side by side); text_states [B, text_tokens, 384] and text_mask [B, text_tokens]
        from `text_encoder_for(config)`; proprio [B, 6] joint positions (rad) with proprio_present [B] (0/1).
        """
        dtype = self.segments.weight.dtype
        mask = text_mask.to(dtype).unsqueeze(-1)
        states = text_states.to(dtype)
        fusion = self.config.fusion
        if fusion == "early":
            condition = self.instruction_vector(states, mask) if self.config.film else None
            image_tokens = self.vision(images, condition) + self.segments.weight[IMAGE_SEGMENT]
            parts = [image_tokens, self._text_tokens(states, mask)]
        elif fusion == "late":
            fused = self.late_fusion(self.vision(images), self.instruction_vector(states, mask))
            parts = [fused + self.segments.weight[IMAGE_SEGMENT]]
        else:
            image_states, text_out = self.bridge(self.vision(images), states, mask.squeeze(-1))
            parts = [self.image_projection(image_states) + self.segments.weight[IMAGE_SEGMENT],
                     self._text_tokens(text_out, mask)]
        if self.config.use_proprio:
            parts.append(self._proprio_token(parts[0], images.shape[0], proprio, proprio_present))
        return torch.cat(parts, 1)

    def instruction_vector(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The instruction as one vector [B, instruction_dim]: its mean word-piece state (states are zero at
        padding), then the learned pools (which block is which) when the policy has them; mask [B, T, 1]."""
        vector = states.sum(1) / mask.sum(1).clamp(min=1.0)
        if self.instruction_queries is not None:
            vector = torch.cat([vector, self.instruction_queries(states, mask.squeeze(-1))], 1)
        return vector

    def _text_tokens(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Word-piece states [B, T, 384] → decoder tokens, the learned padding embedding where mask [B, T, 1] is 0."""
        text = self.text_projection(states)
        return text * mask + self.text_padding * (1.0 - mask) + self.segments.weight[TEXT_SEGMENT]

    def _proprio_token(self, like: torch.Tensor, batch: int, proprio: torch.Tensor | None,
                       proprio_present: torch.Tensor | None) -> torch.Tensor:
        """[B, 1, width]; the learned "missing" embedding where proprio_present is 0 (or no proprio is given)."""
        if proprio is None:
            proprio = torch.zeros(batch, PROPRIO_DIM, dtype=like.dtype, device=like.device)
            proprio_present = torch.zeros(batch, dtype=like.dtype, device=like.device)
        present = proprio_present.to(like.dtype).reshape(batch, 1)
        normalized = (proprio.to(like.dtype) - self.proprio_mean) / self.proprio_std
        token = self.proprio_projection(normalized) * present + self.proprio_missing * (1.0 - present)
        return (token + self.segments.weight[PROPRIO_SEGMENT]).unsqueeze(1)

    def token_embeddings(self, ids: torch.Tensor) -> torch.Tensor:
        return self.llama.model.embed_tokens(ids)

    def forward(self, prefix: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: prefix [B, P, width] + generated inputs [B, G] → logits [B, G, vocab]."""
        return self.llama.lm_head(self.hidden_states(prefix, input_ids))

    def hidden_states(self, prefix: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """Final hidden states [B, G, width] at the generated positions."""
        embeds = torch.cat([prefix, self.token_embeddings(input_ids)], 1)
        hidden = self.llama.model(inputs_embeds=embeds, use_cache=False).last_hidden_state
        return hidden[:, prefix.shape[1]:]

    @torch.no_grad()
    def grounded_places(self, prefix: torch.Tensor) -> np.ndarray:
        """Where the grounding head puts the named objects for prefixes [B, P, width] before any action token:
        table x, y of the target and of the reference in metres [B, 4]: a probe of how the policy read the
        instruction (models trained with the grounding head only)."""
        from vla_ros.policy.training_data import PLACE_CENTER, PLACE_SCALE

        if self.grounding_head is None:
            raise ValueError("this policy was trained without the grounding head (config grounding_head: false)")
        start = torch.full((prefix.shape[0], 1), self.vocab.start_actions, dtype=torch.long, device=prefix.device)
        normalized = self.grounding_head(self.hidden_states(prefix, start)[:, 0]).float().cpu().numpy()
        return normalized * PLACE_SCALE + PLACE_CENTER

    # ------------------------------------------------------------------------------------ persistence
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def save_pretrained(self, directory: str | Path) -> Path:
        """config.json + model.safetensors, and the tokenizer in tokenizer/ (a self-contained policy)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_FILE),
                  metadata={"format": "pt", "tokenizer_identity": self.config.tokenizer_identity})
        (directory / CONFIG_FILE).write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(directory / TOKENIZER_DIR)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, tokenizer=None, map_location: str = "cpu") -> "VLAPolicy":
        """Load a saved policy; its tokenizer is the bundled one unless `tokenizer` is given (then it must match)."""
        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
        if not config_path.is_file() or not weights_path.is_file():
            raise PolicyLoadError(f"{directory} is not a saved VLA policy (it needs {CONFIG_FILE} and {WEIGHTS_FILE}; "
                                  f"train one with 'vla-ros train')")
        try:
            config = VLAConfig.from_dict(json.loads(config_path.read_text()))
        except (ValueError, TypeError) as exc:
            raise PolicyLoadError(f"{config_path} is not a VLA policy config this version can read: {exc}") from None
        if tokenizer is None and (directory / TOKENIZER_DIR).is_dir():
            from vla_ros.tokenizers.loading import load_tokenizer

            tokenizer = load_tokenizer(directory / TOKENIZER_DIR)
        if tokenizer is not None:
            check_tokenizer(config, tokenizer, directory)
        model = cls(config)
        try:
            state = load_file(str(weights_path), device=map_location)
            model.load_state_dict(state)
        except (RuntimeError, OSError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise PolicyLoadError(f"{weights_path} does not match its {CONFIG_FILE} ({first})") from None
        model.tokenizer = tokenizer
        return model.to(map_location).eval()


def check_tokenizer(config: VLAConfig, tokenizer, where: str | Path = "the policy") -> None:
    """Refuse a tokenizer other than the one the policy was trained with (identity, vocabulary, chunk)."""
    if tokenizer.identity != config.tokenizer_identity:
        raise TokenizerMismatchError(
            f"{where} was trained with {config.tokenizer_kind} tokenizer {config.tokenizer_identity}, "
            f"not with {tokenizer.kind} tokenizer {tokenizer.identity}; use the tokenizer saved with the policy")
    if (tokenizer.vocab_size, tokenizer.tokens_per_chunk) != (config.action_vocab_size, config.tokens_per_chunk):
        raise TokenizerMismatchError(
            f"{where} expects {config.tokens_per_chunk} tokens per chunk from {config.action_vocab_size} ids, "
            f"the tokenizer gives {tokenizer.tokens_per_chunk} from {tokenizer.vocab_size}")


def new_policy(tokenizer, proprio: np.ndarray | None = None, **overrides) -> VLAPolicy:
    """An untrained policy for `tokenizer`, with proprioception statistics from joint positions [N, 6]."""
    values = dict(overrides)
    if proprio is not None and len(proprio):
        values.setdefault("proprio_mean", np.asarray(proprio).mean(0).astype(float).tolist())
        values.setdefault("proprio_std", np.maximum(np.asarray(proprio).std(0), 1e-3).astype(float).tolist())
    config = VLAConfig(action_vocab_size=tokenizer.vocab_size, tokens_per_chunk=tokenizer.tokens_per_chunk,
                       chunk_size=tokenizer.chunk_size, tokenizer_kind=tokenizer.kind,
                       tokenizer_identity=tokenizer.identity,
                       action_normalization=tokenizer.normalizer.to_dict(), **values)
    policy = VLAPolicy(config)
    policy.tokenizer = tokenizer
    return policy


def with_views(policy: VLAPolicy, cameras) -> VLAPolicy:
    """A copy of `policy` that also reads `cameras` beside its views, for full fine-tuning to teach it to use them.

    The CNN is shared by every view, so only position embeddings are new: each added view starts from the primary
    view's (the same place in the frame) plus noise of the initial scale, which tells the views apart. Every
    other weight is the policy's.
    """
    cameras = tuple(cameras)
    if not cameras:
        return policy
    config = policy.config
    if config.fusion == "middle":
        raise ValueError("a middle-fusion policy's language bridge is built for its number of image tokens; "
                         "train a policy with more views from scratch (--model '{\"extra_cameras\": [...]}')")
    repeated = sorted(set(cameras) & set(config.extra_cameras))
    if repeated:
        raise ValueError(f"the policy already reads camera {repeated[0]!r}")
    if len(set(cameras)) != len(cameras):
        raise ValueError(f"cameras {list(cameras)} name a camera twice")
    widened = VLAPolicy(dataclasses.replace(config, extra_cameras=tuple(config.extra_cameras) + cameras))
    state = policy.state_dict()
    primary = state["vision.position"][:config.image_grid ** 2]
    state["vision.position"] = torch.cat(
        [state["vision.position"], *(primary + 0.02 * torch.randn_like(primary) for _ in cameras)])
    widened.load_state_dict(state)
    widened.tokenizer = policy.tokenizer
    return widened.to(policy.device).train(policy.training)
