"""The VLA policy on real parts: sim-expert demonstrations, a trained VQ-VAE tokenizer, MiniLM, onnxruntime.

One module-scoped tiny training run (seconds) feeds every test: round-trips, the tokenizer
check, cached vs uncached generation, ONNX parity on recorded observations, and overfitting.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vla_ros.data.episodes import load_episodes
from vla_ros.data.generate import generate_dataset
from vla_ros.policy.generation import ChunkGenerator, generate_hf, generate_uncached
from vla_ros.policy.modeling_vla import PolicyLoadError, TokenizerMismatchError, VLAPolicy
from vla_ros.policy.recipe import TrainRecipe
from vla_ros.policy.runners import PolicyRunner
from vla_ros.policy.training import train_policy
from vla_ros.tokenizers.training import train_tokenizer

TINY_MODEL = {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "intermediate_size": 128,
              "cnn_channels": [8, 16, 32, 32], "image_grid": 2,
              "film_queries": 0}  # the mean-only FiLM path here; role-aware FiLM has its own test
TINY_RECIPE = TrainRecipe(steps=400, batch_size=32, learning_rate=3e-3, warmup_steps=20, eval_every=400,
                          checkpoint_every=200, threads=1, shift_pixels=0, proprio_dropout=0.0,
                          extra_phrasings=False)  # the recorded phrasings only: a handful of episodes to memorize


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A 4-episode data set, a small VQ-VAE fitted to it and a tiny policy that memorized it."""
    root = tmp_path_factory.mktemp("policy")
    generate_dataset(root / "data", 4, seed=0, workers=1, show_progress=False)
    episodes = load_episodes(root / "data")
    tokenizer, _ = train_tokenizer("vqvae", [e.actions for e in episodes], steps=300, seed=0, batch_size=128,
                                   progress=False, codebook_size=64, hidden_dim=64)
    tokenizer.save_pretrained(root / "tokenizer")
    report = train_policy(root / "data", root / "tokenizer", root / "policy", TINY_RECIPE, TINY_MODEL,
                          progress=False)
    return {"root": root, "episodes": episodes, "tokenizer": tokenizer, "report": report}


@pytest.fixture(scope="module")
def runners(workspace):
    policy_dir = workspace["root"] / "policy"
    return PolicyRunner(policy_dir, "builtin-torch"), PolicyRunner(policy_dir, "builtin-onnx")


def recorded_observations(episodes, count: int):
    images = np.concatenate([e.images for e in episodes])[:count]
    joints = np.concatenate([e.joint_pos for e in episodes])[:count].astype(np.float32)
    instructions = [e.instruction for e in episodes for _ in range(len(e.actions))][:count]
    return images, instructions, joints


def test_training_writes_policy_onnx_report_and_curve(workspace):
    policy_dir = workspace["root"] / "policy"
    for name in ("config.json", "model.safetensors", "tokenizer/config.json", "onnx/prefix.onnx",
                 "onnx/step.onnx", "training_report.json", "loss_curve.png"):
        assert (policy_dir / name).is_file(), name
    assert not (policy_dir / "checkpoint.pt").exists()
    config = json.loads((policy_dir / "config.json").read_text())
    assert config["tokenizer_identity"] == workspace["tokenizer"].identity
    assert config["action_normalization"]["q01"] == workspace["tokenizer"].normalizer.to_dict()["q01"]


def test_a_tiny_policy_memorizes_a_handful_of_episodes(workspace, runners):
    """The training loop really learns: training chunks come back from greedy generation."""
    history = workspace["report"]["history"]
    assert history["loss"][-1] < 0.2 * history["loss"][0], history["loss"]
    torch_runner, _ = runners
    episodes, tokenizer = workspace["episodes"], workspace["tokenizer"]
    from vla_ros.tokenizers.chunking import chunks_from_episode

    expected = np.concatenate([tokenizer.encode(chunks_from_episode(e.actions, 8)) for e in episodes])
    images, instructions, joints = recorded_observations(episodes, len(expected))
    generated = torch_runner.infer(images, instructions, joints, temperature=0).tokens
    token_accuracy = (generated == expected).mean()
    assert token_accuracy > 0.9, f"greedy tokens match the demonstrations only {token_accuracy:.0%} of the time"


def test_the_grounding_head_learns_where_the_named_objects_stand(workspace):
    """The auxiliary grounding loss is applied: the head places the named block within a few cm (untrained: ~10 cm)."""
    from vla_ros.policy.training import TextTable, validate
    from vla_ros.policy.training_data import build_training_set

    policy = VLAPolicy.from_pretrained(workspace["root"] / "policy")
    assert policy.config.film and policy.grounding_head is not None
    samples = build_training_set(workspace["episodes"], policy.tokenizer, policy.vocab, paraphrase=False)
    metrics = validate(policy, samples, TextTable(samples.instructions, policy.config.text_tokens), TINY_RECIPE,
                       torch.device("cpu"))
    assert metrics["target_place_error_cm"] < 3.0, metrics


def test_grounded_places_reads_the_named_objects_off_a_frame_in_metres(workspace, runners):
    """The probe of benchmarks/bench_roles.py: the head's estimate, in table metres, before any action token."""
    from vla_ros.policy.training_data import PLACE_CENTER, PLACE_SCALE, object_places

    episodes = workspace["episodes"]
    expected = np.stack([object_places(e)[0] for e in episodes]) * PLACE_SCALE + PLACE_CENTER
    for runner in runners:  # the same torch probe whichever backend generates the tokens
        places = runner.grounded_places(np.stack([e.images[0] for e in episodes]), [e.instruction for e in episodes],
                                        np.stack([e.joint_pos[0] for e in episodes]))
        assert places.shape == (len(episodes), 4)
        errors = np.linalg.norm(places[:, :2] - expected[:, :2], axis=1)
        assert errors.max() < 0.04, errors  # metres; the blocks stand 5-20 cm apart
    policy = runners[0].policy
    policy.grounding_head, head = None, policy.grounding_head
    try:
        with pytest.raises(ValueError, match="without the grounding head"):
            runners[0].grounded_places(episodes[0].images[:1], [episodes[0].instruction])
    finally:
        policy.grounding_head = head


def test_grounding_labels_are_where_the_workcell_puts_the_named_objects(workspace):
    from vla_ros.policy.training_data import PLACE_CENTER, PLACE_SCALE, object_places
    from vla_ros.sim.workcell import Workcell

    with Workcell(render=False) as workcell:
        for episode in workspace["episodes"]:
            normalized, known = object_places(episode)
            assert known[0] == 1.0
            workcell.reset(episode.seed, family=episode.family)
            assert workcell.task.instruction == episode.instruction
            places = normalized * PLACE_SCALE + PLACE_CENTER
            world = workcell.world_state().objects
            assert np.allclose(places[:2], world[workcell.task.target].pos[:2], atol=1e-4)
            if workcell.task.reference:
                assert known[1] == 1.0
                assert np.allclose(places[2:], world[workcell.task.reference].pos[:2], atol=1e-4)
            else:
                assert known[1] == 0.0


def test_film_conditioning_starts_as_identity_and_then_depends_on_the_instruction():
    from vla_ros.policy.vision import VisionEncoder

    torch.manual_seed(0)
    plain = VisionEncoder(32, 2, (4, 8), 16)
    torch.manual_seed(0)
    film = VisionEncoder(32, 2, (4, 8), 16, condition_dim=6)
    film.load_state_dict(plain.state_dict(), strict=False)
    images = torch.randint(0, 255, (2, 32, 32, 3), dtype=torch.uint8)
    condition = torch.randn(2, 6)
    assert torch.allclose(film(images, condition), plain(images))  # zero-initialised γ, β
    with torch.no_grad():
        film.film[0].weight.normal_()
    assert not torch.allclose(film(images, condition), film(images, -condition))
    with pytest.raises(ValueError, match="instruction vector"):
        film(images)


def test_instruction_queries_start_as_the_mean_ignore_padding_and_can_pick_one_word_piece():
    from vla_ros.policy.modeling_vla import InstructionQueries

    torch.manual_seed(0)
    pools = InstructionQueries(text_dim=6, queries=2, key_dim=4)
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    states = torch.randn(2, 4, 6) * mask.unsqueeze(-1)
    pooled = pools(states, mask).reshape(2, 2, 6)
    mean = states[0, :3].mean(0)
    assert torch.allclose(pooled[0, 0], mean, atol=0.05) and torch.allclose(pooled[0, 1], mean, atol=0.05)
    assert torch.equal(pooled[1], torch.zeros(2, 6))  # no word pieces (a blanked instruction): zeros, no NaN
    assert pools.weights(states, mask)[0, :, 3].abs().max() == 0  # padding gets no weight
    with torch.no_grad():  # a sharp query finds the word piece whose key matches it, wherever it stands
        pools.keys.weight.copy_(torch.eye(4, 6))
        pools.keys.bias.zero_()
        pools.queries.copy_(torch.tensor([[50.0, 0, 0, 0], [0, 50.0, 0, 0]]))
    marked = torch.zeros(1, 4, 6)
    marked[0, 2, 0] = marked[0, 0, 1] = 1.0
    pooled = pools(marked, torch.tensor([[1.0, 1.0, 1.0, 1.0]])).reshape(2, 6)
    assert torch.allclose(pooled[0], marked[0, 2], atol=1e-3) and torch.allclose(pooled[1], marked[0, 0], atol=1e-3)
    swapped = pools(marked[:, [2, 1, 0, 3]], torch.ones(1, 4)).reshape(2, 6)
    assert torch.allclose(swapped, pooled, atol=1e-3)  # the pool follows the word piece, not its position


def test_a_policy_with_instruction_queries_trains_round_trips_and_exports_to_onnx(workspace, tmp_path):
    """film_queries > 0 (role-aware FiLM): the same training loop, save/load and the same ONNX tokens as torch."""
    recipe = TrainRecipe(steps=60, batch_size=32, learning_rate=3e-3, warmup_steps=10, eval_every=60,
                         checkpoint_every=60, threads=1, shift_pixels=0, proprio_dropout=0.0)
    report = train_policy(workspace["root"] / "data", workspace["root"] / "tokenizer", tmp_path / "queries", recipe,
                          {**TINY_MODEL, "film_queries": 2}, progress=False)
    assert report["history"]["loss"][-1] < report["history"]["loss"][0]
    policy = VLAPolicy.from_pretrained(tmp_path / "queries")
    from vla_ros.policy.training import TextTable, validate
    from vla_ros.policy.training_data import build_training_set

    samples = build_training_set(workspace["episodes"], policy.tokenizer, policy.vocab)
    metrics = validate(policy, samples, TextTable(samples.instructions, policy.config.text_tokens), recipe,
                       torch.device("cpu"))
    assert metrics["pool_role_accuracy"] > 0.5, metrics  # the role loss trains the pools (chance: about 1/9)
    assert policy.config.film_queries == 2 and policy.instruction_queries is not None
    assert policy.vision.film[0].in_features == 3 * policy.config.text_dim  # mean + two pools
    images, instructions, joints = recorded_observations(workspace["episodes"], 20)
    expected = PolicyRunner(tmp_path / "queries", "builtin-torch").infer(images, instructions, joints,
                                                                        temperature=0).tokens
    onnx = PolicyRunner(tmp_path / "queries", "builtin-onnx").infer(images, instructions, joints, temperature=0)
    assert np.array_equal(onnx.tokens, expected)
    blanked = PolicyRunner(tmp_path / "queries", "builtin-onnx").infer(images[:2], ["", ""], None, temperature=0)
    assert blanked.tokens.shape == (2, policy.config.tokens_per_chunk)  # no word pieces: zero pools, no NaN


def test_generated_share_sets_how_often_a_sample_reads_a_generated_request(workspace):
    """--generated-share p: a generated request with probability p, else a training phrasing; without it every
    phrasing is drawn alike, exactly as before the option (same random stream)."""
    from vla_ros.policy.training_data import build_training_set, draw_phrasings, training_phrasings

    policy = VLAPolicy.from_pretrained(workspace["root"] / "policy")
    data = build_training_set(workspace["episodes"], policy.tokenizer, policy.vocab, extra=True, generated=8)
    episodes = np.repeat(np.arange(len(data.phrasings)), 1000)
    for episode, options in enumerate(data.phrasings):
        lead = len(training_phrasings(workspace["episodes"][episode].instruction, extra=True))
        assert data.leading[episode] == lead and len(options) == lead + 8
    generated = {index for episode, options in enumerate(data.phrasings) for index in options[data.leading[episode]:]}

    def share(drawn):
        return np.isin(drawn, list(generated)).mean()

    assert share(draw_phrasings(data, episodes, np.random.default_rng(0), 1.0)) == 1.0
    assert share(draw_phrasings(data, episodes, np.random.default_rng(0), 0.0)) == 0.0
    assert 0.22 < share(draw_phrasings(data, episodes, np.random.default_rng(0), 0.25)) < 0.28
    alike = draw_phrasings(data, episodes, np.random.default_rng(0))
    rng = np.random.default_rng(0)
    assert np.array_equal(alike, [data.phrasings[e][rng.integers(len(data.phrasings[e]))] for e in episodes])
    assert share(alike) > 0.5  # 8 generated requests against 4-6 training phrasings per task


def test_role_labels_point_at_the_words_naming_each_role_in_any_word_order():
    from transformers import AutoTokenizer

    from vla_ros.policy.text_encoding import text_encoder_directory
    from vla_ros.policy.training import role_pieces

    tokenizer = AutoTokenizer.from_pretrained(str(text_encoder_directory()))
    texts = ["stack the red block on the green block", "cover the green block with the red block",
             "on top of the green block, stack the red block", "put the blue block on the plate",
             "push the red block to the left", "pick up the yellow block", "stack red on green"]
    roles = role_pieces(tokenizer, texts, 16)
    words = [[tokenizer.convert_ids_to_tokens(tokenizer(t)["input_ids"])[i] if i >= 0 else None for i in row]
             for t, row in zip(texts, roles)]
    assert words == [["red", "green"], ["red", "green"], ["red", "green"], ["blue", "plate"], ["red", "left"],
                     ["yellow", None], [None, None]]  # the last matches no task: no labels


def test_policies_saved_before_film_and_grounding_load_without_them():
    from vla_ros.policy.configuration_vla import VLAConfig

    values = VLAConfig().to_dict()
    del values["film"], values["grounding_head"], values["film_queries"]
    config = VLAConfig.from_dict(values)
    assert not config.film and not config.grounding_head and config.film_queries == 0
    assert VLAConfig.from_dict(VLAConfig().to_dict()).film


def test_save_load_round_trip_gives_identical_outputs(workspace, tmp_path):
    policy = VLAPolicy.from_pretrained(workspace["root"] / "policy")
    policy.save_pretrained(tmp_path / "copy")
    again = VLAPolicy.from_pretrained(tmp_path / "copy")
    assert again.config == policy.config
    assert again.tokenizer.identity == policy.tokenizer.identity
    for (name, a), (_, b) in zip(sorted(policy.state_dict().items()), sorted(again.state_dict().items())):
        assert torch.equal(a, b), name
    images, instructions, joints = recorded_observations(workspace["episodes"], 5)
    runner_a = PolicyRunner(workspace["root"] / "policy")
    runner_b = PolicyRunner(tmp_path / "copy")
    assert np.array_equal(runner_a.infer(images, instructions, joints, temperature=0).tokens,
                          runner_b.infer(images, instructions, joints, temperature=0).tokens)


def test_a_foreign_tokenizer_is_refused_with_one_sentence(workspace, tmp_path):
    other, _ = train_tokenizer("vqvae", [e.actions for e in workspace["episodes"]], steps=20, seed=1,
                               batch_size=64, progress=False, codebook_size=64, hidden_dim=64)
    with pytest.raises(TokenizerMismatchError) as caught:
        VLAPolicy.from_pretrained(workspace["root"] / "policy", tokenizer=other)
    message = str(caught.value)
    assert workspace["tokenizer"].identity in message and other.identity in message
    assert "\n" not in message
    # a policy folder whose bundled tokenizer was swapped is refused the same way
    policy = VLAPolicy.from_pretrained(workspace["root"] / "policy")
    policy.save_pretrained(tmp_path / "swapped")
    other.save_pretrained(tmp_path / "swapped" / "tokenizer")
    with pytest.raises(TokenizerMismatchError):
        PolicyRunner(tmp_path / "swapped")


def test_missing_or_broken_policy_files_are_one_clear_error(workspace, tmp_path):
    with pytest.raises(PolicyLoadError, match="is not a saved VLA policy"):
        PolicyRunner(tmp_path / "nowhere")
    policy = VLAPolicy.from_pretrained(workspace["root"] / "policy")
    policy.save_pretrained(tmp_path / "broken")
    config = json.loads((tmp_path / "broken" / "config.json").read_text())
    config["hidden_size"] = 96  # weights no longer fit
    (tmp_path / "broken" / "config.json").write_text(json.dumps(config))
    with pytest.raises(PolicyLoadError, match="does not match its config.json"):
        PolicyRunner(tmp_path / "broken")
    with pytest.raises(PolicyLoadError, match="has no ONNX export"):
        PolicyRunner(policy.save_pretrained(tmp_path / "no_onnx"), "builtin-onnx")


def test_kv_cached_generation_equals_uncached_and_hf_generate(workspace):
    policy = VLAPolicy.from_pretrained(workspace["root"] / "policy")
    runner = PolicyRunner(workspace["root"] / "policy")
    images, instructions, joints = recorded_observations(workspace["episodes"], 24)
    states, mask = runner.encode_instructions(instructions)
    with torch.inference_mode():
        prefix = policy.prefix_embeddings(torch.from_numpy(images), torch.from_numpy(states),
                                          torch.from_numpy(mask), torch.from_numpy(joints), torch.ones(len(images)))
    cached = ChunkGenerator(policy).generate(prefix, temperature=0).tokens
    assert np.array_equal(cached, generate_uncached(policy, prefix))
    assert np.array_equal(cached, generate_hf(policy, prefix, use_cache=False))
    # the cached decoder's logits are the Hugging Face forward's, not merely the same argmax
    generator = ChunkGenerator(policy)
    start = torch.full((len(images), 1), policy.vocab.start_actions)
    with torch.inference_mode():
        first, _ = generator.decoder.prefill(torch.cat([prefix, policy.token_embeddings(start)], 1))
        reference = policy(prefix, start)[:, -1]
    torch.testing.assert_close(first, reference, atol=1e-4, rtol=1e-4)


def test_the_decoders_rotation_matrix_is_llamas_rotate_half_exactly():
    from transformers.models.llama.modeling_llama import rotate_half

    from vla_ros.policy.generation import rotate_half_matrix

    x = torch.randn(3, 4, 5, 48)
    assert torch.equal(x @ rotate_half_matrix(48), rotate_half(x))


def test_an_onnx_export_with_the_old_stacked_cache_is_refused(workspace, tmp_path):
    """Exports made before the cache was kept per layer carry the same weights digest; the format tells them apart."""
    import shutil

    import onnx
    from onnx import TensorProto, helper

    copy = tmp_path / "old_export"
    shutil.copytree(workspace["root"] / "policy", copy)
    current = onnx.load(str(copy / "onnx" / "step.onnx"))
    tensor = lambda name, kind=TensorProto.FLOAT: helper.make_tensor_value_info(name, kind, None)  # noqa: E731
    graph = helper.make_graph(
        [helper.make_node("Identity", [a], [b]) for a, b in (("past_keys", "keys"), ("past_values", "values"))]
        + [helper.make_node("Constant", [], ["logits"], value_floats=[0.0])],
        "stacked_cache_step", [tensor("ids", TensorProto.INT64), tensor("position", TensorProto.INT64),
                               tensor("past_keys"), tensor("past_values")],
        [tensor("logits"), tensor("keys"), tensor("values")])
    old = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    old.ir_version = current.ir_version
    # same tokenizer, same weights; the older exporter wrote no format
    old.metadata_props.extend(p for p in current.metadata_props if p.key != "export_format")
    onnx.save(old, str(copy / "onnx" / "step.onnx"))
    with pytest.raises(PolicyLoadError, match="re-run 'vla-ros export-policy"):
        PolicyRunner(copy, "builtin-onnx")


def test_plans_are_generated_before_constrained_action_ids(workspace, runners):
    torch_runner, _ = runners
    images, instructions, joints = recorded_observations(workspace["episodes"], 3)
    generated = torch_runner.infer(images, instructions, joints, plan=True, temperature=0.5,
                                   rng=np.random.default_rng(0))
    vocab = torch_runner.policy.vocab
    assert generated.tokens.shape == (3, workspace["tokenizer"].tokens_per_chunk)
    assert (generated.tokens >= 0).all() and (generated.tokens < vocab.action_size).all()
    for plan in generated.plans:
        assert plan[-1] == vocab.end_plan and len(plan) <= vocab.max_plan_tokens + 1
        assert all(vocab.action_size <= i < vocab.end_plan for i in plan[:-1])
    # the memorized first step of every episode starts with reaching
    assert torch_runner.plan_text(generated.plans[0]).startswith("reach")


def test_onnx_gives_the_same_tokens_as_torch_on_100_recorded_observations(workspace, runners):
    torch_runner, onnx_runner = runners
    assert onnx_runner.session.providers[-1] == "CPUExecutionProvider"
    images, instructions, joints = recorded_observations(workspace["episodes"], 100)
    assert len(images) >= 40, "the fixture data set is too short"
    expected = torch_runner.infer(images, instructions, joints, temperature=0).tokens
    assert np.array_equal(onnx_runner.infer(images, instructions, joints, temperature=0).tokens, expected)
    plan_t = torch_runner.infer(images[:5], instructions[:5], None, plan=True, temperature=0)
    plan_o = onnx_runner.infer(images[:5], instructions[:5], None, plan=True, temperature=0)
    assert np.array_equal(plan_t.tokens, plan_o.tokens) and plan_t.plans == plan_o.plans


def test_the_int8_backend_runs_int8_matmul_weights_and_keeps_most_chunks(workspace, runners):
    """builtin-onnx-int8 quantizes the exported graphs at load: every product with a weight matrix (MatMul, Gemm)
    becomes an int8 MatMulInteger (attention's activation products stay float), the graphs keep their metadata checks, and greedy chunks on
    recorded observations mostly equal float32's."""
    import onnx

    from vla_ros.policy.onnx_export import quantized_graph

    policy_dir = workspace["root"] / "policy"
    for name in ("prefix.onnx", "step.onnx"):
        original = onnx.load(str(policy_dir / "onnx" / name))
        quantized = onnx.load_from_string(quantized_graph(policy_dir / "onnx" / name))
        weights = {init.name for init in original.graph.initializer}
        weight_matmuls = sum(n.op_type in ("MatMul", "Gemm") and n.input[1] in weights for n in original.graph.node)
        integer = [n for n in quantized.graph.node if n.op_type == "MatMulInteger"]
        assert weight_matmuls > 0 and len(integer) == weight_matmuls, name
        int8 = {init.name for init in quantized.graph.initializer if init.data_type == onnx.TensorProto.INT8}
        assert all(n.input[1] in int8 for n in integer), name
        kept = {p.key: p.value for p in quantized.metadata_props}
        assert all(kept.get(p.key) == p.value for p in original.metadata_props), kept
    _, float_runner = runners
    # the node's setting takes it, and its policy source (the vla_policy node's, serving's) runs it
    from dataclasses import replace

    from vla_ros.core.stages.policy import PolicySettings
    from vla_ros.policy.sources import load_token_source

    source = load_token_source(replace(PolicySettings(), backend="builtin-onnx-int8", model_path=str(policy_dir)))
    int8_runner = source.runner
    assert int8_runner.session.int8 and not float_runner.session.int8
    assert sorted(p.name for p in (policy_dir / "onnx").iterdir()) == ["prefix.onnx", "step.onnx"]  # nothing written
    images, instructions, joints = recorded_observations(workspace["episodes"], 100)
    expected = float_runner.infer(images, instructions, joints, temperature=0).tokens
    got = int8_runner.infer(images, instructions, joints, temperature=0).tokens
    assert got.shape == expected.shape and got.min() >= 0 and got.max() < workspace["tokenizer"].vocab_size
    assert np.mean(got[:, 0] == expected[:, 0]) >= 0.8, np.mean(got[:, 0] == expected[:, 0])


def test_onnx_export_of_other_weights_is_refused(workspace, tmp_path):
    import shutil

    copy = tmp_path / "retrained"
    shutil.copytree(workspace["root"] / "policy", copy)
    policy = VLAPolicy.from_pretrained(copy)
    with torch.no_grad():
        policy.llama.lm_head.weight.add_(0.01)
    policy.save_pretrained(copy)  # new weights, old onnx/ left behind
    with pytest.raises(PolicyLoadError, match="exported from other weights"):
        PolicyRunner(copy, "builtin-onnx")


def test_closed_loop_evaluation_with_switching_and_with_temporal_ensembling(runners, tmp_path):
    from vla_ros.core.executor import ExecutorSettings
    from vla_ros.policy.evaluation import evaluate

    torch_runner, _ = runners
    switching = evaluate(torch_runner, "train", 2, max_steps=12, progress=False)
    blended = evaluate(torch_runner, "train", 2, max_steps=12, progress=False, executor=ExecutorSettings(blend=True),
                       out_dir=tmp_path)
    for summary in (switching, blended):
        assert summary["episodes"] == 2 and 0.0 <= summary["success_rate"] <= 1.0
    # Switching replans every 3 steps; ensembling asks for a chunk at every step.
    details = json.loads((tmp_path / "results.json").read_text())["episodes_detail"]
    assert all(e["inferences"] == e["steps"] for e in details)
    # every failed episode says why, and the summary counts it under its family
    assert all((e["failure"] == "") == e["success"] for e in details)
    failed = sum(sum(f.get("failures", {}).values()) for f in blended["per_family"].values())
    assert failed == sum(not e["success"] for e in details)
    assert "Why episodes failed" in (tmp_path / "results.md").read_text()
    assert switching["inferences"] < blended["inferences"]
    # Per-family Wilson intervals: never a zero-width interval, even at 0 or n successes.
    for row in blended["per_family"].values():
        low, high = row["wilson95"]
        assert 0.0 <= low <= row["success_rate"] <= high <= 1.0 and high - low > 0.2


def test_the_mean_over_families_carries_a_95_percent_interval_that_narrows_with_more_episodes():
    from vla_ros.policy.evaluation import EpisodeResult, markdown_table, summarize

    def results(per_family: int) -> list:
        # pick always succeeds, stack in 40 % of episodes
        rows = [EpisodeResult(seed=i, family="pick", instruction="", success=True, steps=10, inferences=4,
                              candidates=3, chance=0.3) for i in range(per_family)]
        rows += [EpisodeResult(seed=i, family="stack", instruction="", success=i % 5 < 2, steps=80, inferences=27,
                               candidates=3, chance=0.2) for i in range(per_family)]
        return rows

    small, large = summarize(results(25), "unseen", "", 1.0, False, False), \
        summarize(results(100), "unseen", "", 1.0, False, False)
    assert small["mean_over_families"] == pytest.approx(0.7)
    # only stack varies: 1.96 * sqrt(0.4 * 0.6 / n) / 2 families
    assert small["mean_over_families_ci95"] == pytest.approx(1.96 * (0.24 / 25) ** 0.5 / 2)
    assert large["mean_over_families_ci95"] == pytest.approx(small["mean_over_families_ci95"] / 2)
    assert "**70.0%** ± 9.6%" in markdown_table([small])


def test_per_family_wilson_intervals_are_not_zero_width_at_the_extremes():
    from vla_ros.policy.evaluation import wilson_interval

    low, high = wilson_interval(25, 25)
    assert low == pytest.approx(0.8668, abs=1e-4) and high == 1.0  # 25/25 is not "± 0"
    assert wilson_interval(0, 25)[0] == 0.0 and wilson_interval(0, 25)[1] == pytest.approx(1 - 0.8668, abs=1e-4)
    low, high = wilson_interval(70, 100)
    assert (low, high) == (pytest.approx(0.6041, abs=1e-3), pytest.approx(0.7817, abs=1e-3))
