"""Early, middle and late fusion as configurations of one policy, on real parts: MiniLM, the shipped VQ-VAE
tokenizer, onnxruntime and the training loss. Tiny models keep the file to seconds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from vla_ros.policy.configuration_vla import FUSIONS, VLAConfig
from vla_ros.policy.modeling_vla import PolicyLoadError, VLAPolicy, new_policy
from vla_ros.policy.runners import PolicyRunner
from vla_ros.policy.text_encoding import TextEncoder, text_encoder_for

REPO = Path(__file__).resolve().parents[1]
TINY = {"hidden_size": 64, "num_layers": 1, "num_heads": 2, "intermediate_size": 128, "image_size": 64,
        "image_grid": 2, "cnn_channels": (8, 16, 32, 32)}
INSTRUCTIONS = ["stack the red block on the green block", "cover the green block with the red block",
                "push the blue block to the left", ""]


@pytest.fixture(scope="module")
def tokenizer():
    from vla_ros.tokenizers.loading import load_tokenizer

    return load_tokenizer(REPO / "models" / "tokenizers" / "vqvae")


@pytest.fixture(scope="module")
def encoders():
    """One MiniLM encoder per layer a tiny policy reads (loading MiniLM is the slow part)."""
    return {}


def encoder_for(encoders: dict, config: VLAConfig) -> TextEncoder:
    if config.text_states_layer not in encoders:
        encoders[config.text_states_layer] = text_encoder_for(config)
    return encoders[config.text_states_layer]


def tiny_policy(tokenizer, fusion: str, **overrides) -> VLAPolicy:
    torch.manual_seed(0)
    return new_policy(tokenizer, **{**TINY, "fusion": fusion, **overrides}).eval()


def observations(encoder: TextEncoder, size: int, count: int = len(INSTRUCTIONS)):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    states, mask = encoder.encode_batch(INSTRUCTIONS[:count])
    joints = rng.normal(0, 0.3, (count, 6)).astype(np.float32)
    return [torch.from_numpy(a) for a in (images, states, mask, joints)] + [torch.ones(count)]


@pytest.mark.parametrize("fusion", FUSIONS)
def test_each_fusion_builds_the_prefix_its_config_describes(tokenizer, encoders, fusion):
    policy = tiny_policy(tokenizer, fusion)
    config = policy.config
    images, states, mask, joints, present = observations(encoder_for(encoders, config), config.image_size)
    with torch.no_grad():
        prefix = policy.prefix_embeddings(images, states, mask, joints, present)
        swapped = policy.prefix_embeddings(images, states[[1, 0, 2, 3]], mask[[1, 0, 2, 3]], joints, present)
    words = {"early": 16, "middle": 16, "late": 0}[fusion]
    assert prefix.shape == (len(images), config.prefix_length, config.hidden_size)
    assert config.prefix_length == config.image_tokens + words + 1
    # what sees the instruction: early's CNN through FiLM (zero at the start, so not yet), late's and middle's
    # image tokens through the fusion MLP and MiniLM's layers
    image_part = slice(0, config.image_tokens)
    reads_instruction = not torch.allclose(prefix[0, image_part], swapped[0, image_part])
    assert reads_instruction == (fusion != "early")
    assert (policy.vision.film is not None) == (fusion == "early")
    assert (policy.instruction_queries is not None) == (fusion != "middle")  # film_queries 2 by default


@pytest.mark.parametrize("fusion", FUSIONS)
def test_save_and_load_give_identical_logits_and_save_only_trained_weights(tokenizer, encoders, fusion, tmp_path):
    policy = tiny_policy(tokenizer, fusion)
    policy.save_pretrained(tmp_path)
    again = VLAPolicy.from_pretrained(tmp_path)
    assert again.config == policy.config and again.config.fusion == fusion
    inputs = observations(encoder_for(encoders, policy.config), policy.config.image_size)
    ids = torch.full((len(inputs[0]), 3), policy.vocab.start_actions)
    with torch.no_grad():
        assert torch.equal(policy(policy.prefix_embeddings(*inputs), ids), again(again.prefix_embeddings(*inputs), ids))
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as saved:
        keys = set(saved.keys())
    trained = {name for name, p in policy.named_parameters() if p.requires_grad}
    assert trained <= keys and not any("language" in key for key in keys)
    frozen = {name for name, p in policy.named_parameters() if not p.requires_grad}
    assert bool(frozen) == (fusion == "middle")
    assert json.loads((tmp_path / "config.json").read_text())["fusion"] == fusion


def test_the_bridge_runs_minilms_last_layers_on_the_states_the_runner_encodes(tokenizer, encoders, tmp_path):
    """Middle fusion's text input is MiniLM after layer 6 − bridge_layers, and its frozen layers are MiniLM's
    last ones: on the word pieces alone they give back the encoder's final states."""
    last = encoder_for(encoders, VLAConfig())
    for bridge_layers in (2, 1):
        policy = tiny_policy(tokenizer, "middle", bridge_layers=bridge_layers)
        policy.save_pretrained(tmp_path / str(bridge_layers))
        runner = PolicyRunner(tmp_path / str(bridge_layers))
        states, mask = runner.encode_instructions(INSTRUCTIONS)
        with torch.no_grad():
            out = runner.policy.bridge.language(torch.from_numpy(states), torch.from_numpy(mask).float())
        expected, _ = last.encode_batch(INSTRUCTIONS)
        np.testing.assert_allclose(out.numpy() * mask[..., None], expected, atol=2e-5)
        assert not np.allclose(states, expected, atol=1e-2)  # the runner does not feed the final states


@pytest.mark.parametrize("fusion", ["late", "middle"])
def test_onnx_gives_the_same_greedy_tokens_as_torch(tokenizer, fusion, tmp_path):
    from vla_ros.policy.onnx_export import export_policy_onnx

    policy = tiny_policy(tokenizer, fusion)
    export_policy_onnx(policy, policy.save_pretrained(tmp_path))
    torch_runner, onnx_runner = PolicyRunner(tmp_path, "builtin-torch"), PolicyRunner(tmp_path, "builtin-onnx")
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    joints = rng.normal(0, 0.3, (8, 6)).astype(np.float32)
    instructions = INSTRUCTIONS * 2
    expected = torch_runner.infer(images, instructions, joints, temperature=0).tokens
    assert len({tuple(row) for row in expected}) > 1  # the observations lead to different chunks
    assert np.array_equal(onnx_runner.infer(images, instructions, joints, temperature=0).tokens, expected)
    plan_t = torch_runner.infer(images[:2], instructions[:2], None, plan=True, temperature=0)
    plan_o = onnx_runner.infer(images[:2], instructions[:2], None, plan=True, temperature=0)
    assert np.array_equal(plan_t.tokens, plan_o.tokens) and plan_t.plans == plan_o.plans


def random_training_set(config: VLAConfig, vocab, samples: int = 16):
    """Random frames, joints and action tokens under the two stacking phrasings (role labels included)."""
    from vla_ros.policy.training_data import IGNORE, EpisodeFrames, TrainingSet

    rng = np.random.default_rng(0)
    plans = np.full((samples, vocab.max_plan_tokens + 1), IGNORE, np.int64)
    plans[:, 0], plans[:, 1] = vocab.action_size, vocab.end_plan
    size = config.image_size
    return TrainingSet(
        images=EpisodeFrames([rng.integers(0, 256, (samples, size, size, 3), dtype=np.uint8)]),
        joint_pos=rng.normal(0, 0.3, (samples, 6)).astype(np.float32),
        tokens=rng.integers(0, config.action_vocab_size, (samples, config.tokens_per_chunk)),
        chunks=rng.normal(0, 0.5, (samples, config.chunk_size, 7)).astype(np.float32), plans=plans,
        places=rng.normal(0, 0.5, (samples, 4)).astype(np.float32), place_mask=np.ones((samples, 2), np.float32),
        episode=np.arange(samples) % 2, phrasings=[[0], [1]], instructions=INSTRUCTIONS[:2])


@pytest.mark.parametrize("fusion", FUSIONS)
def test_a_few_training_steps_reduce_the_loss(tokenizer, fusion):
    """The shared loss (tokens, chunk, grounding, role where the policy has pools) trains every fusion; middle's
    frozen MiniLM layers pass gradients to the bridge but get none and do not change."""
    from vla_ros.policy.recipe import TrainRecipe
    from vla_ros.policy.training import TextTable, batch_loss, make_batch

    policy = tiny_policy(tokenizer, fusion).train()
    data = random_training_set(policy.config, policy.vocab)
    text = TextTable(data.instructions, policy.config.text_tokens, policy.config.text_states_layer)
    recipe = TrainRecipe(batch_size=16, shift_pixels=0, proprio_dropout=0.0, plan_fraction=0.0)
    batch = make_batch(data, text, np.arange(16), policy.vocab, recipe, np.random.default_rng(0),
                       torch.Generator().manual_seed(0), train=True)
    frozen = {n: p.detach().clone() for n, p in policy.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.Adam([p for p in policy.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(12):
        loss, _, _ = batch_loss(policy, batch, torch.device("cpu"), 1.0, 1.0, 1.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    assert (policy.instruction_queries is not None) == (fusion != "middle")  # the role loss applies, or is skipped
    if fusion == "middle":
        assert frozen and all(policy.get_parameter(n).grad is None for n in frozen)
        assert all(torch.equal(policy.get_parameter(n), value) for n, value in frozen.items())
        assert policy.bridge.image_in.weight.grad.abs().sum() > 0  # through the frozen layers to the bridge


def test_an_unknown_fusion_or_bridge_depth_is_refused_in_one_sentence(tmp_path):
    with pytest.raises(ValueError) as caught:
        VLAConfig(fusion="intermediate")
    message = str(caught.value)
    assert all(name in message for name in FUSIONS) and "\n" not in message and message.count(". ") == 0
    with pytest.raises(ValueError, match="between 1 and 6"):
        VLAConfig(fusion="middle", bridge_layers=7)
    values = VLAConfig().to_dict()
    values["fusion"] = "intermediate"
    (tmp_path / "config.json").write_text(json.dumps(values))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(PolicyLoadError, match="fusion 'intermediate' is not one of early, middle, late"):
        VLAPolicy.from_pretrained(tmp_path)


def test_the_train_command_passes_fusion_and_bridge_layers_to_the_model(monkeypatch, tmp_path):
    import vla_ros.commands.policy as commands
    import vla_ros.policy.training as training
    from vla_ros.cli import main

    seen = {}

    def fake_train(data, tokenizer, out, recipe, overrides, **_):
        seen.update(overrides)
        return {"written": False}

    monkeypatch.setattr(commands, "check_training_paths", lambda *args: None)
    monkeypatch.setattr(training, "train_policy", fake_train)
    base = ["train", "--data", str(tmp_path), "--tokenizer", str(tmp_path), "--out", str(tmp_path / "out")]
    assert main(base + ["--model", '{"hidden_size": 96}', "--fusion", "middle", "--bridge-layers", "3"]) == 0
    assert seen == {"hidden_size": 96, "fusion": "middle", "bridge_layers": 3}
    with pytest.raises(SystemExit, match="applies to --fusion middle only"):
        main(base + ["--fusion", "late", "--bridge-layers", "3"])
    with pytest.raises(SystemExit):  # argparse: not one of the choices
        main(base + ["--fusion", "intermediate"])


def test_the_shipped_policy_loads_as_early_fusion_and_matches_its_onnx_export():
    """v5's config.json predates the key; its ONNX graphs were exported before fusion existed and still give
    the tokens the torch path gives."""
    directory = REPO / "models" / "policy" / "vla"
    assert "fusion" not in json.loads((directory / "config.json").read_text())
    torch_runner = PolicyRunner(directory, "builtin-torch")
    config = torch_runner.config
    assert config.fusion == "early" and config.prefix_length == 16 + 16 + 1 and config.text_states_layer is None
    with safe_open(str(directory / "model.safetensors"), "pt") as saved:
        assert set(saved.keys()) == set(torch_runner.policy.state_dict())
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (4, 128, 128, 3), dtype=np.uint8)
    joints = rng.normal(0, 0.3, (4, 6)).astype(np.float32)
    expected = torch_runner.infer(images, INSTRUCTIONS, joints, temperature=0).tokens
    onnx = PolicyRunner(directory, "builtin-onnx").infer(images, INSTRUCTIONS, joints, temperature=0).tokens
    assert np.array_equal(onnx, expected)
