"""What the policy makes of a preferences file's states and candidates: prefixes, log-probabilities, features."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from vla_ros.alignment.preferences import Preferences


def state_prefixes(policy, prefs: Preferences, batch: int = 64) -> torch.Tensor:
    """Prefix embeddings [S, P, width] of every state of `prefs` (the policy's observation encoding)."""
    from vla_ros.policy.text_encoding import text_encoder_for

    encoder = text_encoder_for(policy.config)
    out = []
    with torch.no_grad():
        for start in range(0, len(prefs.seed), batch):
            rows = slice(start, start + batch)
            states, mask = encoder.encode_batch(prefs.instruction[rows])
            joints = torch.from_numpy(prefs.joint_pos[rows])
            out.append(policy.prefix_embeddings(torch.from_numpy(prefs.image[rows]), torch.from_numpy(states),
                                                torch.from_numpy(mask), joints, torch.ones(len(joints))))
    return torch.cat(out)


def teacher_inputs(policy, tokens: torch.Tensor) -> torch.Tensor:
    """[START, a_1 … a_{T-1}] for action ids [B, T]: the inputs under which the policy predicts a_1 … a_T."""
    start = torch.full((tokens.shape[0], 1), policy.vocab.start_actions, dtype=torch.long, device=tokens.device)
    return torch.cat([start, tokens[:, :-1]], 1)


def sequence_logps(policy, prefix: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log π(chunk | observation) [B]: the sum over the chunk's ids of the log-probability among action ids
    (generation only ever chooses among those)."""
    logits = policy(prefix, teacher_inputs(policy, tokens))[..., :policy.vocab.action_size]
    return F.log_softmax(logits.float(), -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1).sum(-1)


def candidate_features(policy, prefix: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """[B, 3 × width]: the decoder's hidden state at the start token (the observation as read), its final hidden
    state after the whole chunk, and its mean over the chunk."""
    start = torch.full((tokens.shape[0], 1), policy.vocab.start_actions, dtype=torch.long, device=tokens.device)
    hidden = policy.hidden_states(prefix, torch.cat([start, tokens], 1)).float()
    return torch.cat([hidden[:, 0], hidden[:, -1], hidden[:, 1:].mean(1)], -1)


def per_candidate(score, prefixes: torch.Tensor, tokens: torch.Tensor, batch: int = 128) -> torch.Tensor:
    """`score(prefix, ids)` of every candidate, in batches and without gradients: prefixes [S, P, width] of the
    states, candidate ids [S, K, T] → [S, K, …]."""
    states, k = tokens.shape[:2]
    flat = tokens.reshape(states * k, -1)
    prefix = prefixes.repeat_interleave(k, 0)
    with torch.no_grad():
        out = torch.cat([score(prefix[i:i + batch], flat[i:i + batch]) for i in range(0, len(flat), batch)])
    return out.reshape(states, k, *out.shape[1:])


def held_out_states(prefs: Preferences, fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """Boolean [S]: states of a random `fraction` of the episodes (by layout seed), for validation."""
    seeds = np.unique(prefs.seed)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(seeds, size=max(1, int(round(fraction * len(seeds)))), replace=False) \
        if len(seeds) > 1 else np.array([], np.int64)
    return np.isin(prefs.seed, chosen)
