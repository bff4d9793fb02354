"""A local policy answering batches of observations with continuous chunks (and their tokens): what a server runs.

Any local backend (`builtin-torch` on the GPU when present, `builtin-onnx`, `builtin-onnx-int8`, `episode`) through the same policy
sources the graph's vla_policy uses (`vla_ros.policy.sources`); the tokens are decoded with the policy's own
tokenizer, so a reply carries both the chunk [8, 7] and the 8 tokens it came from. Requests of one batch that
share sampling settings run as one forward pass. No Ray and no network here: `vla_ros.serving.deployment` puts
this behind Ray Serve.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from vla_ros.core.action_chunks import EE_DELTA
from vla_ros.core.preprocess import center_crop_resize
from vla_ros.core.stages.policy import SERVED_BACKENDS, PolicySettings
from vla_ros.serving import protocol
from vla_ros.serving.protocol import Observation


def pick_device(requested: str = "auto") -> str:
    """'cuda' when asked for or when `auto` finds a GPU, else 'cpu'."""
    if requested != "auto":
        return requested
    try:
        import torch  # noqa: PLC0415

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


class PolicyHost:
    def __init__(self, settings: PolicySettings, *, threads: int = 1, device: str = "auto", seed: int = 0,
                 name: str = ""):
        from vla_ros.policy.sources import load_token_source  # noqa: PLC0415 - torch

        if settings.backend not in SERVED_BACKENDS:
            raise ValueError(f"backend {settings.backend!r} cannot be served; one of {', '.join(SERVED_BACKENDS)}")
        self.settings = settings
        self.device = pick_device(device)
        self.source = load_token_source(settings, threads=threads, device=self.device)
        if getattr(self.source, "extra_cameras", ()):
            raise ValueError(f"{settings.model_path} reads the cameras {', '.join(self.source.extra_cameras)} beside "
                             "the primary one; the policy server takes one image per observation: run this policy "
                             "in the graph (extra_cameras) or with 'vla-ros eval'")
        self.tokenizer = self.source.tokenizer
        self.rng = np.random.default_rng(seed)
        self.name = name or Path(settings.model_path).name + \
            (f"+{Path(settings.adapter_path).name}" if settings.adapter_path else "")
        self.batches = self.requests = 0

    @classmethod
    def for_policy(cls, policy: str, backend: str = "builtin-torch", adapter: str = "", **kwargs) -> PolicyHost:
        return cls(replace(PolicySettings(), backend=backend, model_path=str(policy), adapter_path=str(adapter or "")),
                   **kwargs)

    @property
    def image_size(self) -> int | None:
        return self.source.image_size

    def metadata(self, max_request_bytes: int) -> dict:
        """What a client hears on connecting (openpi: free-form; ours under vla_ros/ keys)."""
        return {"vla_ros/protocol": protocol.PROTOCOL_VERSION, "vla_ros/policy": self.name,
                "vla_ros/backend": self.settings.backend, "vla_ros/device": self.device,
                "vla_ros/identity": self.source.identity, "vla_ros/image_size": self.image_size or 0,
                "vla_ros/action_space": EE_DELTA, "vla_ros/action_horizon": int(self.tokenizer.chunk_size),
                "vla_ros/action_dim": 7, "vla_ros/state_dim": 6, "vla_ros/tokens": True,
                "vla_ros/accepts_jpeg": True, "vla_ros/max_request_bytes": int(max_request_bytes)}

    def _image(self, observation: Observation) -> np.ndarray | None:
        size = self.image_size
        if size is None or observation.image is None:
            return None
        image = observation.image
        return image if image.shape[:2] == (size, size) else center_crop_resize(image, size)

    def infer_batch(self, observations: list[Observation]) -> list[dict]:
        """One reply map per observation (`protocol.reply_message`), in order."""
        started = time.perf_counter()
        replies: list[dict | None] = [None] * len(observations)
        default_t = self.settings.temperature
        groups: dict[tuple, list[int]] = {}
        for i, obs in enumerate(observations):
            t = default_t if obs.temperature is None else obs.temperature
            groups.setdefault((t, obs.plan, obs.state is not None), []).append(i)
        batched = hasattr(self.source, "generate_batch")
        for (temperature, plan, with_state), rows in groups.items():
            if batched:
                images = np.stack([self._image(observations[i]) for i in rows])
                states = np.stack([observations[i].state for i in rows]) if with_state else None
                outputs = self.source.generate_batch(images, [observations[i].prompt for i in rows], states,
                                                     temperature=temperature, plan=plan, rng=self.rng)
            else:
                outputs = [self.source.generate(self._image(observations[i]), observations[i].prompt,
                                                observations[i].state, frame_time_s=observations[i].frame_time_s,
                                                temperature=temperature, plan=plan, rng=self.rng)
                           for i in rows]
            actions = self.tokenizer.decode(np.stack([np.asarray(o.tokens, np.int64) for o in outputs]))
            for i, out, chunk in zip(rows, outputs, actions):
                replies[i] = protocol.reply_message(chunk, stamp_ns=observations[i].stamp_ns, tokens=out.tokens,
                                                    tokenizer=self.source.identity, plan=out.plan)
        infer_ms = (time.perf_counter() - started) * 1e3
        for reply in replies:
            reply[protocol.SERVER_TIMING] = {"infer_ms": infer_ms, "batch_size": len(observations)}
        self.batches += 1
        self.requests += len(observations)
        return replies
