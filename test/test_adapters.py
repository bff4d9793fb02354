"""LoRA adapters on real parts: the shipped policy as base, simulator demonstrations, peft, onnxruntime, replay.

One module-scoped `vla-ros finetune` run (seconds) on a few sim episodes feeds the tests: what the adapter holds,
that the base stays intact, that another base is refused, and that every backend (torch, merged ONNX, the
server's host, offline replay of a bag, `vla-ros eval`) runs base + adapter.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from vla_ros.cli import main
from vla_ros.data.episodes import load_episodes
from vla_ros.data.generate import generate_dataset
from vla_ros.policy.adapters import (
    ADAPTER_CONFIG, ADAPTER_WEIGHTS, AdapterMismatchError, AdapterSpec, add_lora, apply_adapter, base_identity,
    load_policy)
from vla_ros.policy.modeling_vla import VLAPolicy
from vla_ros.policy.runners import PolicyRunner

REPO = Path(__file__).resolve().parents[1]
BASE = REPO / "models" / "policy" / "vla"
REPLAY = Path(__file__).parent / "data" / "replay"


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """A LoRA adapter of the shipped policy trained for 60 steps on 12 sim episodes (one validates) through the CLI."""
    root = tmp_path_factory.mktemp("adapters")
    generate_dataset(root / "data", 12, seed=500_000, workers=1, show_progress=False)
    digest_before = base_identity(BASE)
    code = main(["finetune", "--policy", str(BASE), "--data", str(root / "data"), "--out", str(root / "adapter"),
                 "--steps", "60", "--eval-every", "30", "--workers", "1"])
    assert code == 0
    return {"root": root, "adapter": root / "adapter", "episodes": load_episodes(root / "data"),
            "digest_before": digest_before}


def observations(episodes, count: int = 16):
    images = np.concatenate([e.images for e in episodes])[:count]
    joints = np.concatenate([e.joint_pos for e in episodes])[:count].astype(np.float32)
    instructions = [e.instruction for e in episodes for _ in range(len(e.actions))][:count]
    return images, instructions, joints


def test_the_adapter_is_small_tied_to_its_base_and_leaves_the_base_untouched(tuned):
    adapter = tuned["adapter"]
    config = json.loads((adapter / ADAPTER_CONFIG).read_text())
    report = json.loads((adapter / "training_report.json").read_text())
    assert config["base_identity"] == base_identity(BASE) == tuned["digest_before"]
    assert config["targets"] == "attention" and config["rank"] == 8
    assert report["trainable_percent"] <= 2.0, report["trainable_percent"]
    assert (adapter / ADAPTER_WEIGHTS).stat().st_size <= 1 << 20
    assert (adapter / "loss_curve.png").is_file() and (adapter / "onnx" / "prefix.onnx").is_file()
    assert report["history"]["eval"] and report["peak_memory_mb"] > 0
    assert not (adapter / "checkpoint.pt").exists()
    from safetensors.torch import load_file

    matrices = load_file(str(adapter / ADAPTER_WEIGHTS))
    assert all("lora_A" in k or "lora_B" in k for k in matrices)
    assert any(float(v.abs().max()) > 0 for k, v in matrices.items() if "lora_B" in k)  # B starts at zero


def test_merged_weights_compute_what_the_unmerged_adapter_does(tuned):
    images, instructions, joints = observations(tuned["episodes"], 4)
    runner = PolicyRunner(BASE, "builtin-torch")
    states, mask = runner.encode_instructions(instructions)
    inputs = (torch.from_numpy(images), torch.from_numpy(states), torch.from_numpy(mask), torch.from_numpy(joints),
              torch.ones(len(images)))
    ids = torch.full((len(images), 3), 5, dtype=torch.long)

    def logits(policy):
        with torch.no_grad():
            return policy(policy.prefix_embeddings(*inputs), ids)

    unmerged = apply_adapter(VLAPolicy.from_pretrained(BASE), tuned["adapter"], BASE, merge=False).eval()
    merged = load_policy(BASE, tuned["adapter"])
    base = VLAPolicy.from_pretrained(BASE)
    assert torch.allclose(logits(unmerged), logits(merged), atol=1e-4)
    assert (logits(merged) - logits(base)).abs().max() > 1e-3  # the adapter changes the policy
    assert not any("lora_" in name for name, _ in merged.named_parameters())


def test_onnx_runs_the_merged_adapter_with_the_torch_tokens(tuned):
    images, instructions, joints = observations(tuned["episodes"])
    torch_runner = PolicyRunner(BASE, "builtin-torch", adapter=tuned["adapter"])
    onnx_runner = PolicyRunner(BASE, "builtin-onnx", adapter=tuned["adapter"])
    expected = torch_runner.infer(images, instructions, joints, temperature=0).tokens
    assert (onnx_runner.infer(images, instructions, joints, temperature=0).tokens == expected).all()
    assert main(["export-policy", "--policy", str(BASE), "--adapter", str(tuned["adapter"])]) == 0  # re-export
    stale = tuned["root"] / "stale"
    shutil.copytree(tuned["adapter"], stale)
    from safetensors.torch import load_file, save_file

    matrices = load_file(str(stale / ADAPTER_WEIGHTS))
    save_file({k: v * 0.5 for k, v in matrices.items()}, str(stale / ADAPTER_WEIGHTS))
    from vla_ros.policy.errors import PolicyLoadError

    with pytest.raises(PolicyLoadError, match="exported from other weights .* re-run 'vla-ros export-policy"):
        PolicyRunner(BASE, "builtin-onnx", adapter=stale)  # graphs of the adapter before it changed


def test_another_base_is_refused_in_one_sentence(tuned, tmp_path):
    other = tmp_path / "other"
    policy = VLAPolicy.from_pretrained(BASE)
    with torch.no_grad():
        policy.text_padding.add_(1e-3)
    policy.save_pretrained(other)
    with pytest.raises(AdapterMismatchError, match="was trained on base policy .* not on") as caught:
        PolicyRunner(other, "builtin-torch", adapter=tuned["adapter"])
    assert "\n" not in str(caught.value)
    with pytest.raises(SystemExit, match="--adapter adapter .* was trained on base policy"):
        main(["serve", "--policy", str(other), "--adapter", str(tuned["adapter"]), "--no-auth"])


def test_a_directory_that_is_no_adapter_is_named(tuned, tmp_path):
    from vla_ros.policy.errors import PolicyLoadError

    with pytest.raises(PolicyLoadError, match="is not a policy adapter"):
        PolicyRunner(BASE, "builtin-torch", adapter=tmp_path)
    with pytest.raises(SystemExit, match="vla-ros finetune: --data .* is not a data set"):
        main(["finetune", "--policy", str(BASE), "--data", str(tmp_path), "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="vla-ros finetune: .*fewer than the 500 asked for"):
        main(["finetune", "--policy", str(BASE), "--data", str(tuned["root"] / "data"), "--out",
              str(tmp_path / "y"), "--episodes", "500"])


def test_the_server_host_loads_base_and_adapter(tuned):
    from vla_ros.serving.host import PolicyHost

    images, instructions, joints = observations(tuned["episodes"], 4)
    host = PolicyHost.for_policy(str(BASE), adapter=str(tuned["adapter"]), device="cpu")
    assert host.name == "vla+adapter"
    local = PolicyRunner(BASE, "builtin-torch", adapter=tuned["adapter"])
    served = host.source.runner.infer(images, instructions, joints, temperature=0).tokens
    assert (served == local.infer(images, instructions, joints, temperature=0).tokens).all()


def test_eval_rolls_out_base_plus_adapter(tuned, tmp_path):
    out = tmp_path / "eval"
    assert main(["eval", "--policy", str(BASE), "--adapter", str(tuned["adapter"]), "--episodes", "2", "--split",
                 "unseen", "--videos", "0", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["adapter"] == str(tuned["adapter"].resolve()) and results["episodes"] == 2


def test_offline_replay_loads_an_adapter_of_its_policy(tmp_path):
    """The replay fixtures' tiny 64 px policy as base: its adapter changes the replayed tokens, deterministically."""
    generate_dataset(tmp_path / "data", 3, seed=0, workers=1, image_size=64, show_progress=False)
    assert main(["finetune", "--policy", str(REPLAY / "policy"), "--data", str(tmp_path / "data"), "--out",
                 str(tmp_path / "adapter"), "--steps", "30", "--lr", "1e-2", "--eval-every", "30", "--no-onnx"]) == 0
    from vla_ros.bags.reading import BagReader

    def tokens(out: Path, *extra: str) -> list[bytes]:
        assert main(["replay", "--policy", str(REPLAY / "policy"), "--bag", str(REPLAY / "episode"), "--out",
                     str(out), "--quiet", "--arg", "image_size:=64", *extra]) == 0
        with BagReader(out / "replay") as reader:
            return [m.data for m in reader.messages() if m.topic == "/vla/action_tokens"]

    plain = tokens(tmp_path / "plain")
    adapted = tokens(tmp_path / "a", f"adapter_path:={tmp_path / 'adapter'}")
    assert adapted == tokens(tmp_path / "b", f"adapter_path:={tmp_path / 'adapter'}")
    assert adapted != plain


def test_lora_targets_and_spec_checks():
    policy = VLAPolicy.from_pretrained(BASE)
    add_lora(policy, AdapterSpec(rank=4, alpha=8, targets="all"))
    adapted = {name.rsplit(".lora_", 1)[0] for name, _ in policy.named_parameters() if "lora_" in name}
    assert "vision.features.0.0" in adapted and "vision.film.0" in adapted
    assert "llama.model.layers.3.mlp.down_proj" in adapted and "llama.lm_head" not in adapted
    assert all(p.requires_grad == ("lora_" in n) for n, p in policy.named_parameters())
    with pytest.raises(ValueError, match="targets 'everything' is not one of attention, attention\\+mlp, all"):
        AdapterSpec(targets="everything")


def test_lazy_frames_give_the_batches_the_in_memory_set_gives(tuned):
    from vla_ros.policy.recipe import TrainRecipe
    from vla_ros.policy.training import BatchStream, TextTable, load_training_episodes
    from vla_ros.policy.training_data import Hdf5Frames, build_training_set

    policy = VLAPolicy.from_pretrained(BASE)
    data = load_training_episodes(tuned["root"] / "data")
    assert isinstance(data.train_frames, Hdf5Frames) and all(e.images is None for e in data.train)
    lazy = build_training_set(data.train, policy.tokenizer, policy.vocab, frames=data.train_frames)
    names = {e.name for e in data.train}
    held = build_training_set([e for e in tuned["episodes"] if e.name in names], policy.tokenizer, policy.vocab)
    index = np.array([0, 5, len(held) - 1, 3])
    assert np.array_equal(lazy.images[index], held.images[index])
    recipe = TrainRecipe(batch_size=8, seed=3)
    text = TextTable(lazy.instructions, policy.config.text_tokens)
    stream = BatchStream(lazy, text, policy.vocab, recipe, steps=4)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, sampler=range(4), num_workers=2)
    for step, batch in enumerate(loader):  # workers read the same samples the stream gives in this process
        direct = stream[step]
        assert all(torch.equal(batch[k], direct[k]) for k in direct)
    assert not torch.equal(stream[0]["images"], stream[1]["images"])
    pooled = load_training_episodes([tuned["root"] / "data", tuned["root"] / "data"], limit=3)
    assert [e.name for e in pooled.train] == [e.name for e in data.train[:3]] * 2
    both = build_training_set(pooled.train, policy.tokenizer, policy.vocab, frames=pooled.train_frames)
    half = len(both) // 2
    assert np.array_equal(both.images[np.array([1, half + 1])], lazy.images[np.array([1, 1])])


def test_a_killed_finetune_resumes_to_the_weights_of_an_uninterrupted_run(tuned, tmp_path):
    """Batches are drawn per step from seeded streams, so a run killed after a checkpoint and started again
    ends with the weights of a run that was never interrupted."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from safetensors.torch import load_file

    data = tuned["root"] / "data"

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "vla_ros.cli", "finetune", "--policy", str(BASE), "--data", str(data),
                "--out", str(out), "--steps", "20", "--eval-every", "5", "--no-onnx", "--workers", "0",
                "--threads", "1"]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    assert subprocess.run(command(tmp_path / "whole"), env=env, capture_output=True).returncode == 0
    killed = subprocess.Popen(command(tmp_path / "killed"), env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (tmp_path / "killed" / "checkpoint.pt").is_file() and killed.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "killed" / ADAPTER_WEIGHTS).exists(), "the run finished before it could be killed"
    resumed = subprocess.run(command(tmp_path / "killed"), env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    report = json.loads((tmp_path / "killed" / "training_report.json").read_text())
    assert report["history"]["step"][-1] == 20
    whole = load_file(str(tmp_path / "whole" / ADAPTER_WEIGHTS))
    again = load_file(str(tmp_path / "killed" / ADAPTER_WEIGHTS))
    assert whole.keys() == again.keys()
    assert all(torch.allclose(whole[k], again[k], atol=1e-6) for k in whole)
    foreign = tmp_path / "foreign"  # a checkpoint of another run is refused, not silently continued
    foreign.mkdir()
    torch.save({"recipe": {}, "config": {}, "identity": {}}, foreign / "checkpoint.pt")
    with pytest.raises(SystemExit, match="another recipe, model or data; remove it or pass --restart"):
        main(["finetune", "--policy", str(BASE), "--data", str(data), "--out", str(foreign), "--steps", "5"])
