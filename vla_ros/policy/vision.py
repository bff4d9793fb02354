"""The vision encoder, trained from scratch: a small CNN that turns a frame into a grid of visual tokens."""

from __future__ import annotations

import torch
from torch import nn

# Per-channel statistics of the workcell's frames are close to these; exact values matter little
# because GroupNorm follows the first convolution.
PIXEL_MEAN, PIXEL_STD = 0.5, 0.25


def split_views(images: torch.Tensor, views: int) -> torch.Tensor:
    """[B, S, S × views, C] (the views side by side) → [B × views, S, S, C], view by view."""
    _, size, _, channels = images.shape
    return images.reshape(-1, size, views, size, channels).transpose(1, 2).reshape(-1, size, size, channels)


def join_views(images: torch.Tensor, views: int) -> torch.Tensor:
    """The inverse of `split_views`: [B × views, S, S, C] → [B, S, S × views, C]."""
    _, size, _, channels = images.shape
    return images.reshape(-1, views, size, size, channels).transpose(1, 2).reshape(-1, size, views * size, channels)


def _block(inputs: int, outputs: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inputs, outputs, kernel, stride, padding=kernel // 2),
        nn.GroupNorm(min(8, outputs // 4), outputs),
        nn.GELU(),
    )


class VisionEncoder(nn.Module):
    """uint8 frames [B, H, W, 3] (+ an instruction vector) → visual tokens [B, grid², width].

    Stride-2 convolutions bring 128 px to 8 px; a patchify convolution then makes the grid.
    Two coordinate channels (CoordConv) are appended to the pixels: the policy has to say
    *where* to move, and explicit coordinates make absolute position cheap to read.

    With `condition_dim` > 0 every stage is FiLM-conditioned on the instruction (RT-1's
    FiLM-EfficientNet idea, Perez et al. 2018): after each normalization the features are
    scaled and shifted by `1 + γ(text)` and `β(text)`, so the CNN can bring out the block the
    instruction names *before* the frame is pooled into a few coarse tokens. γ and β start at
    zero: an untrained conditioned encoder computes what the unconditioned one does.
    """

    def __init__(self, image_size: int, grid: int, channels: tuple[int, ...], width: int, condition_dim: int = 0,
                 views: int = 1):
        super().__init__()
        self.image_size, self.views = image_size, views
        stages = len(channels)
        reduced = image_size // (2 ** stages)
        if image_size % (2 ** stages) or reduced % grid:
            raise ValueError(f"image_size {image_size} must reduce by 2^{stages} to a multiple of grid {grid}")
        layers, previous = [], 5
        for index, out in enumerate(channels):
            layers.append(_block(previous, out, 5 if index == 0 else 3, 2))
            previous = out
        self.features = nn.Sequential(*layers)
        self.film = nn.ModuleList(nn.Linear(condition_dim, 2 * out) for out in channels) if condition_dim else None
        for layer in self.film or ():
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        patch = reduced // grid
        self.patchify = nn.Conv2d(previous, width, patch, patch)
        self.position = nn.Parameter(torch.zeros(views * grid * grid, width))  # a set per view: which camera
        nn.init.normal_(self.position, std=0.02)
        axis = torch.linspace(-1.0, 1.0, image_size)
        coords = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), 0)  # [2, H, W]: row, column
        self.register_buffer("coords", coords, persistent=False)

    def forward(self, images: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """`condition` [B, condition_dim] is required when the encoder was built FiLM-conditioned.

        With several views, `images` [B, S, S × views, 3] holds them side by side: each is encoded alone (the same
        CNN and condition) and the tokens follow view by view, [B, views × grid², width].
        """
        if (self.film is None) != (condition is None):
            raise ValueError("a FiLM-conditioned vision encoder needs the instruction vector (and only it does)")
        views = self.views
        if views > 1:
            images = split_views(images, views)
            if condition is not None:
                condition = condition.unsqueeze(1).expand(-1, views, -1).reshape(-1, condition.shape[-1])
        pixels = images.permute(0, 3, 1, 2).float() * (1.0 / 255.0)
        pixels = (pixels - PIXEL_MEAN) / PIXEL_STD
        coords = self.coords.unsqueeze(0).expand(pixels.shape[0], -1, -1, -1)
        features = torch.cat([pixels, coords], 1)
        for index, (conv, norm, activation) in enumerate(self.features):
            features = norm(conv(features))
            if self.film is not None:
                scale, shift = self.film[index](condition).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
                features = features * (1.0 + scale) + shift
            features = activation(features)
        grid = self.patchify(features)  # [B × views, width, g, g]
        tokens = grid.flatten(2).transpose(1, 2)
        if views > 1:
            tokens = tokens.reshape(-1, views * tokens.shape[1], tokens.shape[2])
        return tokens + self.position
