"""The `episode` token source: a recorded episode's actions through the tokenizer, no learned model.

The chunk at control step k is actions[k:k+8] of the episode (past its end: hold still with the
last gripper value, the tokenizer's chunking convention), so the rest of the pipeline can be
tested end to end with known-good actions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vla_ros.core.stages.policy import SourceOutput
from vla_ros.policy.errors import PolicyLoadError


class EpisodeTokenSource:
    """Token chunks of one recorded episode, indexed by control step."""

    def __init__(self, data_dir: str | Path, episode: int, tokenizer_dir: str | Path):
        from vla_ros.data.episodes import load_episodes
        from vla_ros.tokenizers.chunking import chunks_from_episode
        from vla_ros.tokenizers.loading import load_tokenizer

        try:
            self.tokenizer = load_tokenizer(tokenizer_dir)
        except (FileNotFoundError, ValueError) as exc:
            raise PolicyLoadError(f"tokenizer {tokenizer_dir} cannot be loaded: {exc}") from None
        try:
            episodes = load_episodes(data_dir, successful_only=False, with_images=False)
        except (FileNotFoundError, OSError, KeyError) as exc:
            raise PolicyLoadError(f"episode data {data_dir} is not a readable data set: {exc}") from None
        if not 0 <= episode < len(episodes):
            raise PolicyLoadError(f"episode {episode} is outside the data set's {len(episodes)} episodes "
                                  f"(0 … {len(episodes) - 1})")
        chosen = episodes[episode]
        self.instruction = chosen.instruction
        chunks = chunks_from_episode(chosen.actions, self.tokenizer.chunk_size)
        hold = np.zeros((1, self.tokenizer.chunk_size, 7), np.float32)
        hold[..., 6] = chosen.actions[-1, 6]
        self.tokens = self.tokenizer.encode(np.concatenate([chunks, hold]))  # last row: after the episode

    image_size = None  # the chunk depends on the frame's time, not its pixels

    @property
    def identity(self) -> str:
        return self.tokenizer.identity

    def generate(self, rgb, task, joints, *, frame_time_s: float, temperature: float, plan: bool, rng,
                 stamp_ns: int = 0) -> SourceOutput:
        """The chunk of the control step at or after the frame (`core.scheduling.episode_step`)."""
        from vla_ros.core.scheduling import episode_step

        return SourceOutput(tokens=self.tokens_at(episode_step(frame_time_s)))

    @property
    def steps(self) -> int:
        return len(self.tokens) - 1

    def tokens_at(self, step: int) -> np.ndarray:
        """Token ids [T] of the chunk starting at control step `step` (hold-still after the episode)."""
        return self.tokens[min(max(0, step), len(self.tokens) - 1)]
