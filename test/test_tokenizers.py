"""Tokenizer behaviour that needs no simulator: normalization, chunking, bins, metrics, save/load, ONNX."""

import json

import numpy as np
import pytest
import torch

from vla_ros.tokenizers import (
    BinTokenizer,
    OnnxActionDecoder,
    ResidualVQTokenizer,
    VQVAETokenizer,
    chunks_from_episode,
    export_decoder_onnx,
    load_tokenizer,
)
from vla_ros.tokenizers.chunking import chunks_from_episodes
from vla_ros.tokenizers.metrics import codebook_usage, reconstruction_errors
from vla_ros.tokenizers.normalization import ActionNormalizer
from vla_ros.tokenizers.onnx_decoding import available_providers
from vla_ros.tokenizers.synthetic import synthetic_episodes
from vla_ros.tokenizers.training import train_tokenizer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def episodes():
    return synthetic_episodes(60, seed=3)


@pytest.fixture(scope="module")
def trained(episodes):
    """Briefly trained tokenizers of every kind: enough for a non-trivial codebook, not for accuracy."""
    out = {}
    for kind, steps in (("vqvae", 120), ("rvq", 120), ("bins", 0)):
        out[kind], _ = train_tokenizer(kind, episodes, steps=steps, seed=0, batch_size=128, progress=False)
    return out


def test_normalizer_maps_q01_q99_to_unit_range_and_binarizes_gripper():
    rng = np.random.default_rng(0)
    actions = rng.normal(0, [0.01, 0.02, 0.03, 0.1, 0.2, 0.3, 1.0], size=(5000, 7)).astype(np.float32)
    normalizer = ActionNormalizer.from_actions(actions)
    normalized = normalizer.normalize(actions)
    q01, q99 = np.quantile(actions[:, :6], [0.01, 0.99], axis=0)
    np.testing.assert_allclose(normalizer.normalize(np.r_[q01, 0.7][None])[0, :6], -1, atol=1e-5)
    np.testing.assert_allclose(normalizer.normalize(np.r_[q99, 0.2][None])[0, :6], 1, atol=1e-5)
    assert normalized[:, :6].min() == -1.0 and normalized[:, :6].max() == 1.0  # the tails are clipped
    assert set(np.unique(normalized[:, 6])) == {0.0, 1.0}
    inside = np.all(np.abs(normalized[:, :6]) < 1, axis=1)
    back = normalizer.unnormalize(normalized)
    np.testing.assert_allclose(back[inside, :6], actions[inside, :6], atol=1e-6)
    np.testing.assert_array_equal(back[:, 6], (actions[:, 6] >= 0.5).astype(np.float32))


def test_constant_dimension_does_not_blow_up():
    actions = np.zeros((100, 7), np.float32)
    actions[::7, 3] = 1e-12  # float noise in an otherwise constant roll
    normalizer = ActionNormalizer.from_actions(actions)
    normalized = normalizer.normalize(actions)
    assert np.abs(normalized[:, 3]).max() < 1e-6


def test_chunks_cover_every_start_and_pad_with_zero_motion_and_last_gripper():
    actions = np.arange(5 * 7, dtype=np.float32).reshape(5, 7)
    actions[:, 6] = [1, 1, 0, 0, 1]
    chunks = chunks_from_episode(actions, horizon=3)
    assert chunks.shape == (5, 3, 7)
    for t in range(5):
        real = actions[t:t + 3]
        np.testing.assert_array_equal(chunks[t, : len(real)], real)
        np.testing.assert_array_equal(chunks[t, len(real):, :6], 0)
        np.testing.assert_array_equal(chunks[t, len(real):, 6], 1)
    assert chunks_from_episodes([actions, actions[:2]], 3).shape == (7, 3, 7)
    with pytest.raises(ValueError, match=r"\[T, 7\]"):
        chunks_from_episode(np.zeros((4, 6)), 3)


def test_codebook_usage_counts_codes_and_perplexity():
    uniform = codebook_usage(np.repeat(np.arange(16), 5), 64)
    assert uniform["used_codes"] == 16 and uniform["usage"] == 16 / 64
    assert uniform["perplexity"] == pytest.approx(16.0)
    skewed = codebook_usage(np.array([0] * 90 + [1] * 10), 4)
    p = np.array([0.9, 0.1])
    assert skewed["usage"] == 0.5
    assert skewed["perplexity"] == pytest.approx(np.exp(-(p * np.log(p)).sum()))
    assert codebook_usage(np.array([3, 3, 3]), 8)["perplexity"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        codebook_usage(np.array([8]), 8)


def test_bins_are_exact_on_bin_centres(trained):
    tokenizer: BinTokenizer = trained["bins"]
    rng = np.random.default_rng(1)
    bins = rng.integers(0, 256, size=(32, 8, 7))
    normalized = tokenizer.bin_centres().numpy()[bins]
    normalized[..., 6] = rng.integers(0, 2, size=(32, 8))
    actions = tokenizer.normalizer.unnormalize(normalized)
    tokens = tokenizer.encode(actions)
    assert tokens.shape == (32, 56) and tokens.dtype == np.int64
    expected = bins.copy()
    expected[..., 6] = np.where(normalized[..., 6] == 1, 255, 0)
    np.testing.assert_array_equal(tokens, expected.reshape(32, 56))
    np.testing.assert_allclose(tokenizer.decode(tokens), actions, rtol=0, atol=1e-7)


def test_bins_error_is_at_most_half_a_bin_inside_the_range(trained, episodes):
    tokenizer = trained["bins"]
    chunks = chunks_from_episodes(episodes, 8)
    inside = np.all(np.abs(tokenizer.normalizer.normalize(chunks)[..., :6]) < 1, axis=(1, 2))
    decoded = tokenizer.decode(tokenizer.encode(chunks[inside]))
    error = np.abs(decoded - chunks[inside])[..., :6] / tokenizer.normalizer.half_range
    assert error.max() <= 1 / 256 + 1e-5
    np.testing.assert_array_equal(decoded[..., 6], chunks[inside][..., 6])


def test_vq_token_shapes_and_ranges(trained, episodes):
    chunks = chunks_from_episodes(episodes[:5], 8)
    vq, rvq = trained["vqvae"], trained["rvq"]
    assert (vq.tokens_per_chunk, vq.vocab_size, vq.chunk_size) == (8, 1024, 8)
    assert (rvq.tokens_per_chunk, rvq.vocab_size) == (16, 2048)
    tokens = rvq.encode(chunks)
    assert tokens.shape == (len(chunks), 16)
    assert tokens[:, :8].max() < 1024 and tokens[:, 8:].min() >= 1024  # level-major, level 1 offset by 1024
    decoded = vq.decode(vq.encode(chunks))
    assert decoded.shape == chunks.shape and decoded.dtype == np.float32
    assert set(np.unique(decoded[..., 6])) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="outside"):
        vq.decode(np.full((1, 8), 1024))
    with pytest.raises(ValueError, match="position 0 is outside"):
        rvq.decode(np.full((1, 16), 1500))  # a fine-level id where a coarse one belongs
    with pytest.raises(ValueError, match=r"\[B, 8, 7\]"):
        vq.encode(chunks[:, :4])


def test_residual_levels_reduce_the_error_of_their_own_first_level(trained, episodes):
    rvq: ResidualVQTokenizer = trained["rvq"]
    chunks = chunks_from_episodes(episodes[:20], 8)
    normalized = torch.from_numpy(rvq.normalizer.normalize(chunks))
    with torch.no_grad():
        latents = rvq.model.encode(normalized)
        codes = rvq.model.quantizer(latents).codes
        coarse = rvq.model.quantizer.levels[0].lookup(codes[..., 0])
        both = rvq.model.quantizer.lookup(codes)
    assert (both - latents).pow(2).mean() < (coarse - latents).pow(2).mean()


@pytest.mark.parametrize("kind", ["vqvae", "rvq", "bins"])
def test_save_load_round_trip_keeps_identity_and_decoding(kind, trained, episodes, tmp_path):
    tokenizer = trained[kind]
    tokenizer.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["kind"] == kind and config["identity"] == tokenizer.identity
    assert len(config["normalization"]["q01"]) == 6
    loaded = load_tokenizer(tmp_path)
    assert type(loaded) is type(tokenizer)
    assert loaded.identity == tokenizer.identity and len(loaded.identity) == 16
    chunks = chunks_from_episodes(episodes[:3], 8)
    np.testing.assert_array_equal(loaded.encode(chunks), tokenizer.encode(chunks))
    np.testing.assert_array_equal(loaded.decode(tokenizer.encode(chunks)), tokenizer.decode(tokenizer.encode(chunks)))
    assert type(tokenizer).from_pretrained(tmp_path).identity == tokenizer.identity


def test_identity_changes_when_weights_or_statistics_change(trained, tmp_path):
    tokenizer = trained["vqvae"]
    tokenizer.save_pretrained(tmp_path)
    copy = load_tokenizer(tmp_path)
    before = copy.identity
    with torch.no_grad():
        copy.model.decoder[0].weight[0, 0] += 1e-3
    copy.invalidate_identity()
    assert copy.identity != before
    other_stats = VQVAETokenizer(copy.config, ActionNormalizer(copy.normalizer.q01, copy.normalizer.q99 * 1.01))
    other_stats.load_state_dict(tokenizer.state_dict())
    assert other_stats.identity != tokenizer.identity


def test_load_rejects_non_tokenizers(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a saved tokenizer"):
        load_tokenizer(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"kind": "fast"}))
    trained_weights = tmp_path / "model.safetensors"
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(trained_weights))
    with pytest.raises(ValueError, match="known kinds"):
        load_tokenizer(tmp_path)


@pytest.mark.parametrize("kind", ["vqvae", "rvq", "bins"])
def test_onnx_decoder_matches_torch(kind, trained, tmp_path):
    tokenizer = trained[kind]
    path = export_decoder_onnx(tokenizer, tmp_path / f"{kind}.onnx")
    decoder = OnnxActionDecoder(path)
    assert decoder.providers[-1] == "CPUExecutionProvider"
    assert decoder.identity == tokenizer.identity and decoder.tokens_per_chunk == tokenizer.tokens_per_chunk
    low, high = tokenizer.token_ranges()
    tokens = low + np.random.default_rng(0).integers(0, high - low, size=(50, tokenizer.tokens_per_chunk))
    onnx_actions = decoder.decode(tokens)
    torch_actions = tokenizer.decode(tokens)
    assert onnx_actions.shape == (50, 8, 7)
    np.testing.assert_allclose(onnx_actions, torch_actions, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(onnx_actions[..., 6], torch_actions[..., 6])
    with pytest.raises(ValueError, match="outside"):
        decoder.decode(high[None] + 0)


def test_decoder_from_tokenizer_exports_to_a_temporary_file(trained):
    decoder = OnnxActionDecoder.from_tokenizer(trained["bins"], providers=["CPUExecutionProvider"])
    tokens = trained["bins"].encode(np.zeros((2, 8, 7), np.float32))
    np.testing.assert_allclose(decoder.decode(tokens), trained["bins"].decode(tokens), atol=1e-6)


def test_provider_choice_keeps_order_and_falls_back_to_cpu():
    assert available_providers(["NoSuchExecutionProvider"]) == ["CPUExecutionProvider"]
    chosen = available_providers(["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert chosen[-1] == "CPUExecutionProvider" and chosen[0] in ("CUDAExecutionProvider", "CPUExecutionProvider")


def test_reconstruction_errors_are_in_normalized_units():
    normalizer = ActionNormalizer(q01=np.full(6, -0.02, np.float32), q99=np.full(6, 0.02, np.float32))
    original = np.zeros((4, 8, 7), np.float32)
    reconstructed = original.copy()
    reconstructed[..., 0] = 0.002  # a tenth of the half-range
    reconstructed[0, 0, 6] = 1.0
    errors = reconstruction_errors(original, reconstructed, normalizer)
    assert errors["nrmse_per_dim"][0] == pytest.approx(0.1, rel=1e-5)
    assert errors["nrmse_per_dim"][1] == 0.0
    assert errors["gripper_accuracy"] == pytest.approx(1 - 1 / 32)


def test_a_config_without_newer_training_fields_loads_with_a_stable_identity(trained, tmp_path):
    trained["vqvae"].save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    for field in ("splice_fraction", "rotate_fraction", "identity"):  # as written before these fields existed
        config.pop(field)
    (tmp_path / "config.json").write_text(json.dumps(config))
    first = load_tokenizer(tmp_path)
    assert first.identity != trained["vqvae"].identity  # the config text differs, so the identity does
    first.save_pretrained(tmp_path / "again")
    assert "splice_fraction" not in json.loads((tmp_path / "again" / "config.json").read_text())
    assert load_tokenizer(tmp_path / "again").identity == first.identity
