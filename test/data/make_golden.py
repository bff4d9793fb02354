"""Rebuild the golden-replay fixtures in test/data/replay/ (run from the repository root; a few minutes on 2 cores).

    python test/data/make_golden.py            # episode bag, tiny tokenizer + policy, golden output
    python test/data/make_golden.py --golden   # only the golden output (after a deliberate behaviour change)

What it writes:
    replay/episode/   the first episode of a 4-episode, 64 px sim data set, as a bag (`data generate --bags`)
    replay/policy/    a tiny VLA policy (64 px) with its VQ-VAE tokenizer in policy/tokenizer, trained on those
                      4 episodes until it has memorized them (no ONNX export: the golden run uses torch)
    replay/golden/    `vla-ros replay` output of the episode bag with that policy (the reference)
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent / "replay"
EPISODES = 4
IMAGE_SIZE = 64
TINY_MODEL = {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "intermediate_size": 128,
              "cnn_channels": [8, 16, 32, 32], "image_grid": 2, "image_size": IMAGE_SIZE}
# The graph arguments the golden run uses (the test passes the same ones).
GRAPH_ARGS = [f"image_size:={IMAGE_SIZE}"]


def build_inputs(work: Path) -> None:
    from vla_ros.data.generate import generate_dataset
    from vla_ros.data.episodes import load_episodes
    from vla_ros.policy.recipe import TrainRecipe
    from vla_ros.policy.training import train_policy
    from vla_ros.tokenizers.training import train_tokenizer

    generate_dataset(work / "data", EPISODES, seed=0, workers=1, image_size=IMAGE_SIZE, bags=True)
    episodes = load_episodes(work / "data")
    tokenizer, _ = train_tokenizer("vqvae", [e.actions for e in episodes], steps=1500, seed=0, batch_size=128,
                                   progress=False, codebook_size=64, hidden_dim=64)
    tokenizer.save_pretrained(work / "tokenizer")
    recipe = TrainRecipe(steps=400, batch_size=32, learning_rate=3e-3, warmup_steps=30, eval_every=400,
                         checkpoint_every=400, threads=1, shift_pixels=0, proprio_dropout=0.0)
    train_policy(work / "data", work / "tokenizer", work / "policy", recipe, TINY_MODEL, progress=True,
                 export_onnx=False)
    for stale in ("episode", "policy", "golden"):
        shutil.rmtree(HERE / stale, ignore_errors=True)
    HERE.mkdir(parents=True, exist_ok=True)
    shutil.copytree(work / "data" / "bags" / "episode_000000", HERE / "episode")
    (HERE / "policy").mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy2(work / "policy" / name, HERE / "policy" / name)
    shutil.copytree(work / "policy" / "tokenizer", HERE / "policy" / "tokenizer")


def build_golden() -> None:
    from vla_ros.bags.replay import ReplayOptions, run_replay

    shutil.rmtree(HERE / "golden", ignore_errors=True)
    run_replay(ReplayOptions(bag=HERE / "episode", out=HERE / "golden", graph="widowx", graph_args=GRAPH_ARGS,
                             policy=HERE / "policy"), progress=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--golden", action="store_true", help="only re-create replay/golden from the committed inputs")
    args = parser.parse_args()
    if not args.golden:
        with tempfile.TemporaryDirectory(prefix="vla_ros_golden_") as work:
            build_inputs(Path(work))
    build_golden()
    size = sum(f.stat().st_size for f in HERE.rglob("*") if f.is_file())
    print(f"wrote {HERE} ({size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
