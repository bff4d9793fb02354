"""A second camera view (the wrist camera) on real parts: MuJoCo renders it, data generation records it, the CNN
encodes each view alone, training reads both, ONNX matches torch, the policy runs closed-loop in the workcell
and the graph's stages compose and read the views."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from vla_ros.core.preprocess import compose_views
from vla_ros.data.episodes import load_episodes
from vla_ros.data.generate import generate_dataset
from vla_ros.policy.recipe import TrainRecipe
from vla_ros.policy.runners import PolicyRunner
from vla_ros.policy.training import train_policy
from vla_ros.policy.training_data import shift_images
from vla_ros.policy.vision import VisionEncoder

REPO = Path(__file__).resolve().parents[1]
TOKENIZER = REPO / "models" / "tokenizers" / "vqvae"
TINY_MODEL = {"hidden_size": 64, "num_layers": 1, "num_heads": 2, "intermediate_size": 128, "image_size": 64,
              "image_grid": 2, "cnn_channels": [8, 16, 32, 32], "extra_cameras": ["wrist"]}
TINY_RECIPE = TrainRecipe(steps=30, batch_size=16, learning_rate=3e-3, warmup_steps=5, eval_every=30,
                          checkpoint_every=30, threads=1, extra_phrasings=False)


@pytest.fixture(scope="module")
def two_view_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("views")
    summary = generate_dataset(root / "data", 3, seed=5, workers=1, image_size=64, extra_cameras=("wrist",),
                               show_progress=False)
    return root, summary


def test_generation_records_the_wrist_view_beside_the_primary_one(two_view_data):
    root, summary = two_view_data
    with h5py.File(root / "data" / "dataset.hdf5", "r") as f:
        assert json.loads(f["data"].attrs["env_args"])["env_kwargs"]["extra_cameras"] == ["wrist"]
        demo = f["data/demo_0"]
        assert json.loads(demo.attrs["extra_cameras"]) == ["wrist"]
        primary, wrist = demo["obs/agentview_image"][()], demo["obs/wrist_image"][()]
    assert wrist.shape == primary.shape and wrist.dtype == np.uint8
    assert not np.array_equal(wrist, primary)
    assert np.abs(np.diff(wrist.astype(float), axis=0)).mean() > 1.0  # the wrist camera moves with the arm
    episodes = load_episodes(root / "data", successful_only=False)
    assert all(list(e.cameras) == ["wrist"] and e.cameras["wrist"].shape == e.images.shape for e in episodes)


def test_a_camera_named_twice_is_refused(tmp_path):
    with pytest.raises(ValueError, match="repeat a camera"):
        generate_dataset(tmp_path / "d", 1, image_size=32, camera="wrist", extra_cameras=("wrist",),
                         show_progress=False)


def test_each_view_is_encoded_on_its_own_with_its_own_positions():
    torch.manual_seed(0)
    encoder = VisionEncoder(64, 2, (8, 16, 32, 32), 32, condition_dim=12, views=2).eval()
    assert encoder.position.shape == (8, 32)
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (3, 64, 128, 3), dtype=np.uint8))
    condition = torch.randn(3, 12)
    with torch.no_grad():
        tokens = encoder(images, condition)
        changed = images.clone()
        changed[:, :, 64:] = 255 - changed[:, :, 64:]  # only the second view
        other = encoder(changed, condition)
        # the same frame in both places gives the same features, told apart only by the position embeddings
        same = torch.cat([images[:, :, :64], images[:, :, :64]], 2)
        twin = encoder(same, condition) - encoder.position
    assert tokens.shape == (3, 8, 32)
    assert torch.allclose(tokens[:, :4], other[:, :4], atol=1e-6)
    assert not torch.allclose(tokens[:, 4:], other[:, 4:], atol=1e-3)
    assert torch.allclose(twin[:, :4], twin[:, 4:], atol=1e-5)


def test_a_shift_moves_each_view_alone():
    left = np.full((4, 16, 16, 3), 10, np.uint8)
    right = np.full((4, 16, 16, 3), 200, np.uint8)
    left[:, :, :8] = 50  # an edge that a shift moves
    frames = torch.from_numpy(np.concatenate([left, right], 2))
    shifted = shift_images(frames, 3, torch.Generator().manual_seed(0)).numpy()
    assert shifted.shape == frames.shape
    assert set(np.unique(shifted[:, :, :16])) <= {10, 50} and set(np.unique(shifted[:, :, 16:])) == {200}
    assert not np.array_equal(shifted[:, :, :16], left)  # something did move


def test_compose_views_names_a_missing_camera():
    primary = np.zeros((32, 32, 3), np.uint8)
    wrist = np.full((48, 64, 3), 7, np.uint8)
    frame = compose_views(primary, {"wrist": wrist}, ("wrist",), 32)
    assert frame.shape == (32, 64, 3) and (frame[:, 32:] == 7).all() and (frame[:, :32] == 0).all()
    with pytest.raises(ValueError, match="wrist.*this observation has none"):
        compose_views(primary, {}, ("wrist",), 32)


@pytest.fixture(scope="module")
def two_view_policy(two_view_data):
    root, _ = two_view_data
    report = train_policy(root / "data", TOKENIZER, root / "policy", TINY_RECIPE, TINY_MODEL, progress=False)
    return root / "policy", report


def test_a_two_view_policy_trains_and_its_onnx_export_matches_torch(two_view_policy, two_view_data):
    policy_dir, report = two_view_policy
    assert report["model"]["extra_cameras"] == ["wrist"]
    assert report["history"]["loss"][-1] < report["history"]["loss"][0]
    root, _ = two_view_data
    episode = load_episodes(root / "data", successful_only=False)[0]
    frames = np.stack([compose_views(episode.images[t], {"wrist": episode.cameras["wrist"][t]}, ("wrist",), 64)
                       for t in range(0, len(episode.images), max(1, len(episode.images) // 6))])
    joints = np.asarray(episode.joint_pos[: len(frames)], np.float32)
    instructions = [episode.instruction] * len(frames)
    torch_runner, onnx_runner = PolicyRunner(policy_dir, "builtin-torch"), PolicyRunner(policy_dir, "builtin-onnx")
    expected = torch_runner.infer(frames, instructions, joints, temperature=0).tokens
    assert np.array_equal(onnx_runner.infer(frames, instructions, joints, temperature=0).tokens, expected)
    with pytest.raises(ValueError, match=r"\[B, 64, 128, 3\] \(2 views side by side\)"):
        torch_runner.infer(frames[:, :, :64], instructions, joints)


def test_a_two_view_policy_runs_closed_loop_in_the_workcell(two_view_policy):
    from vla_ros.policy.evaluation import evaluate

    policy_dir, _ = two_view_policy
    summary = evaluate(PolicyRunner(policy_dir, "builtin-onnx"), "unseen", 2, max_steps=6, progress=False)
    assert summary["episodes"] == 2 and summary["inferences"] >= 2  # every chunk came from a two-view frame


def _frame_message(rgb: np.ndarray, stamp_ns: int):
    from vla_ros.nodes.messages import RCLPY

    from std_msgs.msg import Header

    return RCLPY.model_image(Header(stamp=RCLPY.stamp(stamp_ns), frame_id="camera"), rgb)


def _colour(height: int, width: int, rgb) -> np.ndarray:
    return np.broadcast_to(np.asarray(rgb, np.uint8), (height, width, 3)).copy()


def test_camera_ingest_composes_the_newest_wrist_frame_beside_each_primary_frame():
    from std_msgs.msg import Header

    from vla_ros.core.stages.ingest import IngestSettings, IngestStage
    from vla_ros.nodes.messages import RCLPY

    stage = IngestStage(IngestSettings(image_size=16, max_age=0.5, extra_cameras="wrist"), RCLPY)
    second = 1_000_000_000
    header = lambda t: Header(stamp=RCLPY.stamp(t), frame_id="camera")  # noqa: E731
    red, blue = _colour(20, 24, (200, 0, 0)), _colour(32, 32, (0, 0, 200))
    result = stage.on_frame(header(10 * second), lambda: red, 10 * second)
    assert result.image is None and result.drop == "view"
    assert "no frame from the wrist camera (/camera/wrist/image_raw) yet" in result.reason
    assert stage.on_extra_frame("wrist", header(10 * second), lambda: blue) is None
    result = stage.on_frame(header(10 * second + 1), lambda: red, 10 * second + 1)
    assert (result.image.height, result.image.width) == (16, 32)
    pixels = np.frombuffer(bytes(result.image.data), np.uint8).reshape(16, 32, 3)
    assert np.all(pixels[:, :16] == (200, 0, 0)) and np.all(pixels[:, 16:] == (0, 0, 200))  # primary first
    # a wrist frame from another moment is not composed with this one
    result = stage.on_frame(header(11 * second), lambda: red, 11 * second)
    assert result.drop == "view" and "wrist camera's newest frame is 1.000 s from it" in result.reason


def test_the_policy_stage_runs_a_two_view_policy_and_names_a_one_view_frame(two_view_policy):
    from vla_ros.core.image_msgs import ImageRejected
    from vla_ros.core.stages.policy import Job, PolicySettings, PolicyStage, model_frame
    from vla_ros.nodes.messages import RCLPY
    from vla_ros.policy.sources import RunnerTokenSource

    policy_dir, _ = two_view_policy
    source = RunnerTokenSource(PolicyRunner(policy_dir, "builtin-onnx"))
    assert source.extra_cameras == ("wrist",)
    stage = PolicyStage(PolicySettings(temperature=0.0), source, RCLPY)
    task = "pick up the red block"
    stage.on_task(task, 0.0)
    wide = np.random.default_rng(0).integers(0, 256, (64, 128, 3), dtype=np.uint8)
    generated = stage.run(Job(_frame_message(wide, 5), task, None, 0.0, 0.0))
    assert generated.tokens is not None
    with pytest.raises(ImageRejected, match=r"reads 2 camera views .* is 64×64, not 128×64: start camera_ingest "
                                            r"with extra_cameras:=wrist"):
        stage.run(Job(_frame_message(wide[:, :64], 5), task, None, 0.0, 0.0))
    # a composed frame at another size: each view is resized on its own, nothing bleeds across the seam
    halves = np.concatenate([_colour(32, 32, (200, 0, 0)), _colour(32, 32, (0, 0, 200))], 1)
    frame = model_frame(halves, 16, ("wrist",))
    assert frame.shape == (16, 32, 3)
    assert np.all(frame[:, :16] == (200, 0, 0)) and np.all(frame[:, 16:] == (0, 0, 200))


def test_the_simulator_renders_only_workcell_cameras_besides_its_primary_one():
    from vla_ros.core.settings import SettingsError
    from vla_ros.sim.settings import SimSettings

    assert SimSettings(extra_cameras="wrist").extra_cameras == "wrist"
    with pytest.raises(SettingsError, match="names no workcell camera: 'elbow'"):
        SimSettings(extra_cameras="wrist, elbow")


def test_a_policy_server_refuses_a_two_view_policy_in_one_sentence(two_view_policy):
    from vla_ros.serving.host import PolicyHost

    policy_dir, _ = two_view_policy
    with pytest.raises(ValueError, match="reads the cameras wrist beside the primary one; the policy server takes "
                                         "one image"):
        PolicyHost.for_policy(str(policy_dir), backend="builtin-onnx")


def test_with_views_adds_a_view_and_keeps_what_the_primary_view_gave():
    from vla_ros.policy.modeling_vla import new_policy, with_views
    from vla_ros.tokenizers.loading import load_tokenizer

    torch.manual_seed(0)
    one_view = {k: v for k, v in TINY_MODEL.items() if k != "extra_cameras"}
    policy = new_policy(load_tokenizer(TOKENIZER), **one_view).eval()
    widened = with_views(policy, ["wrist"]).eval()
    assert widened.config.extra_cameras == ("wrist",) and widened.config.image_tokens == 8
    assert policy.config.extra_cameras == ()  # the base policy is left as it was
    primary = torch.randint(0, 255, (2, 64, 64, 3), dtype=torch.uint8)
    wrist = torch.randint(0, 255, (2, 64, 64, 3), dtype=torch.uint8)
    condition = torch.randn(2, policy.config.condition_dim)
    with torch.no_grad():
        alone = policy.vision(primary, condition)
        both = widened.vision(torch.cat([primary, wrist], dim=2), condition)
    assert torch.equal(both[:, :4], alone)  # the primary view's tokens are what the base computed
    added = (widened.vision.position[4:] - widened.vision.position[:4]).detach()
    assert 0.005 < float(added.std()) < 0.05  # the new view starts near the primary view's positions, not on them
    with pytest.raises(ValueError, match="already reads camera 'wrist'"):
        with_views(widened, ["wrist"])
    with pytest.raises(ValueError, match="name a camera twice"):
        with_views(policy, ["wrist", "wrist"])
    middle = new_policy(load_tokenizer(TOKENIZER), fusion="middle", bridge_layers=1, **one_view)
    with pytest.raises(ValueError, match="middle-fusion"):
        with_views(middle, ["wrist"])


def test_full_finetuning_gives_a_trained_policy_the_wrist_view(two_view_data, tmp_path):
    from vla_ros.policy.adapters import AdapterSpec
    from vla_ros.policy.finetuning import FinetuneRecipe, finetune_policy

    root, _ = two_view_data
    one_view = {k: v for k, v in TINY_MODEL.items() if k != "extra_cameras"}
    recipe = TrainRecipe(steps=4, batch_size=8, eval_every=4, checkpoint_every=4, threads=1, extra_phrasings=False)
    train_policy(root / "data", TOKENIZER, tmp_path / "base", recipe, one_view, progress=False, export_onnx=False)
    tune = FinetuneRecipe(steps=6, batch_size=8, eval_every=6, checkpoint_every=6, threads=1, extra_phrasings=False,
                          learning_rate=3e-4)
    with pytest.raises(ValueError, match="only be added with full fine-tuning"):
        finetune_policy(tmp_path / "base", root / "data", tmp_path / "lora", AdapterSpec(), tune,
                        add_cameras=("wrist",), progress=False)
    report = finetune_policy(tmp_path / "base", root / "data", tmp_path / "tuned", None, tune,
                             add_cameras=("wrist",), progress=False, export_onnx=True)
    assert report["added_cameras"] == ["wrist"] and report["extra_cameras"] == ["wrist"]
    assert json.loads((tmp_path / "tuned" / "config.json").read_text())["extra_cameras"] == ["wrist"]
    episode = load_episodes(root / "data", successful_only=False)[0]
    frames = np.stack([compose_views(episode.images[t], {"wrist": episode.cameras["wrist"][t]}, ("wrist",), 64)
                       for t in range(3)])
    joints = np.asarray(episode.joint_pos[:3], np.float32)
    expected = PolicyRunner(tmp_path / "tuned", "builtin-torch").infer(frames, [episode.instruction] * 3, joints,
                                                                       temperature=0).tokens
    tokens = PolicyRunner(tmp_path / "tuned", "builtin-onnx").infer(frames, [episode.instruction] * 3, joints,
                                                                    temperature=0).tokens
    assert np.array_equal(tokens, expected)
