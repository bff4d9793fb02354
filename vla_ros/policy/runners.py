"""Observation → action tokens, one interface over the backends: `builtin-torch`, `builtin-onnx` and
`builtin-onnx-int8` (the ONNX graphs with int8 MatMul weights).

The evaluation and the `vla_policy` node call `infer(images, instructions, joint_pos)`; the
instruction encoder (torch, cached per string) is shared by both backends.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vla_ros.core.stages.policy import LOCAL_BACKENDS as BACKENDS
from vla_ros.policy.generation import GeneratedChunk, decode
from vla_ros.policy.modeling_vla import PolicyLoadError


class PolicyRunner:
    """Loads a saved policy and generates chunks of action ids for batches of observations."""

    def __init__(self, policy_dir: str | Path, backend: str = "builtin-torch", threads: int = 1,
                 tokenizer=None, device: str = "cpu", adapter: str | Path | None = None):
        """`adapter`: a LoRA adapter directory (`vla-ros finetune`) trained on this policy, merged at load;
        builtin-onnx then runs the merged graphs in ADAPTER/onnx (`vla-ros export-policy --adapter`)."""
        import torch

        from vla_ros.policy.adapters import load_policy
        from vla_ros.policy.text_encoding import text_encoder_for

        if backend not in BACKENDS:
            raise PolicyLoadError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
        torch.set_num_threads(threads)
        self.policy_dir = Path(policy_dir)
        self.backend = backend
        self.adapter = Path(adapter) if adapter else None
        try:
            self.policy = load_policy(policy_dir, self.adapter, tokenizer=tokenizer, map_location=device)
        except PolicyLoadError:
            raise
        except (FileNotFoundError, ValueError) as exc:
            raise PolicyLoadError(f"{policy_dir}: {exc}") from None
        if self.policy.tokenizer is None:
            raise PolicyLoadError(f"{policy_dir} has no tokenizer/ folder; a policy is saved together with its tokenizer")
        self.config = self.policy.config
        self.tokenizer = self.policy.tokenizer
        self.text = text_encoder_for(self.config)
        if backend == "builtin-torch":
            from vla_ros.policy.generation import ChunkGenerator

            self.generator = ChunkGenerator(self.policy)
            self.session = None
        else:
            from vla_ros.policy.onnx_export import OnnxPolicySession

            self.generator = None
            self.session = OnnxPolicySession(policy_dir, self.config.tokenizer_identity, threads=threads,
                                             adapter_dir=self.adapter, int8=backend == "builtin-onnx-int8")

    @property
    def identity(self) -> str:
        """Identity of the tokenizer the generated ids belong to."""
        return self.config.tokenizer_identity

    def encode_instructions(self, instructions: list[str]) -> tuple[np.ndarray, np.ndarray]:
        pairs = [self.text.encode(text) for text in instructions]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])

    def infer(self, images: np.ndarray, instructions: list[str], joint_pos: np.ndarray | None = None,
              plan: bool = False, temperature: float | None = None,
              rng: np.random.Generator | None = None) -> GeneratedChunk:
        """images uint8 [B, S, S × views, 3] at the model's size (`compose_views` for a policy with extra cameras),
        one instruction per image, joint_pos [B, 6] or None."""
        inputs = self._observation_arrays(images, instructions, joint_pos)
        temperature = self.config.temperature if temperature is None else temperature
        if self.session is None:
            return self.generator.generate(self._torch_prefix(*inputs), plan=plan, temperature=temperature, rng=rng)
        return self._infer_onnx(*inputs, plan, temperature, rng)

    def grounded_places(self, images: np.ndarray, instructions: list[str],
                        joint_pos: np.ndarray | None = None) -> np.ndarray:
        """Where the policy puts the named target and reference for these observations: table x, y in metres
        [B, 4] from the grounding head (`VLAPolicy.grounded_places`; torch, whichever the backend)."""
        return self.policy.grounded_places(self._torch_prefix(*self._observation_arrays(images, instructions,
                                                                                        joint_pos)))

    def _observation_arrays(self, images, instructions, joint_pos) -> tuple[np.ndarray, ...]:
        """Checked model inputs: images, MiniLM states and mask, joint positions and their presence flags."""
        images = np.asarray(images, np.uint8)
        size, width = self.config.image_size, self.config.image_width
        if images.ndim != 4 or images.shape[1:] != (size, width, 3):
            views = f" ({self.config.views} views side by side)" if self.config.views > 1 else ""
            raise ValueError(f"images must be uint8 [B, {size}, {width}, 3]{views}, got {list(images.shape)}")
        batch = images.shape[0]
        states, mask = self.encode_instructions(list(instructions))
        present = np.ones(batch, np.float32) if joint_pos is not None else np.zeros(batch, np.float32)
        joints = np.asarray(joint_pos, np.float32).reshape(batch, 6) if joint_pos is not None \
            else np.zeros((batch, 6), np.float32)
        return images, states, mask, joints, present

    def _torch_prefix(self, images, states, mask, joints, present):
        import torch

        with torch.inference_mode():
            device = self.policy.device
            return self.policy.prefix_embeddings(
                torch.from_numpy(images).to(device), torch.from_numpy(states).to(device),
                torch.from_numpy(mask).to(device), torch.from_numpy(joints).to(device),
                torch.from_numpy(present).to(device))

    def _infer_onnx(self, images, states, mask, joints, present, plan, temperature, rng) -> GeneratedChunk:
        vocab = self.policy.vocab
        rows = range(len(images)) if plan else [slice(None)]
        tokens, plans = [], []
        for row in rows:
            pick = (lambda a: a[row:row + 1]) if plan else (lambda a: a)
            start = np.full((len(pick(images)), 1), vocab.start_plan if plan else vocab.start_actions, np.int64)
            logits, cache = self.session.prefill(pick(images), pick(states), pick(mask), pick(joints), pick(present),
                                                 start)

            def step(ids: np.ndarray, position: int) -> np.ndarray:
                nonlocal cache
                out, cache = self.session.step(ids, position, cache)
                return out

            row_tokens, row_plan = decode(logits, step, self.config.prefix_length + 1, vocab,
                                          self.config.tokens_per_chunk, plan, temperature, rng)
            tokens.append(row_tokens)
            plans.append(row_plan)
        return GeneratedChunk(np.concatenate(tokens), plans if plan else None)

    def plan_text(self, plan_ids: list[int]) -> str:
        return self.policy.vocab.plan_text(plan_ids)
