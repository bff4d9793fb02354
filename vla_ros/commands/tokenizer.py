"""`vla-ros tokenizer …`: train, compare and export action tokenizers.

Heavy imports (torch, MuJoCo) stay inside the handlers so that `vla-ros --help` is instant.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from vla_ros.commands.argument_types import non_negative_int, positive_int

KINDS = ("vqvae", "rvq", "bins")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "tokenizer", help="train, compare and export action tokenizers",
        description="Action tokenizers turn 8-step chunks of 7-D actions into discrete tokens for the VLA policy "
                    "and back: VQ-VAE (8 tokens), residual VQ (8 × levels tokens) or 256 uniform bins (56 tokens).")
    sub = parser.add_subparsers(dest="tokenizer_command", metavar="SUBCOMMAND")

    train = sub.add_parser(
        "train", help="fit a tokenizer to a demonstration data set",
        description="Fit a tokenizer to the successful episodes of a data set: q01/q99 normalization statistics, "
                    "then (vqvae, rvq) the autoencoder on every 8-step chunk. Writes OUT/model.safetensors, "
                    "OUT/config.json, OUT/training_report.json and OUT/loss_curve.png.")
    train.add_argument("--data", type=Path, required=True, help="data set directory holding dataset.hdf5 (or the file)")
    train.add_argument("--kind", choices=KINDS, required=True, help="tokenizer kind")
    train.add_argument("--out", type=Path, required=True, help="output directory (created if missing)")
    train.add_argument("--steps", type=non_negative_int, default=None,
                       help="optimizer steps for vqvae/rvq (default 8000; ignored for bins)")
    train.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    train.add_argument("--levels", type=positive_int, default=None, help="rvq only: quantizer levels (default 2)")
    train.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads (default 1)")
    train.set_defaults(func=_train)

    compare = sub.add_parser(
        "compare", help="evaluate tokenizers side by side on held-out episodes",
        description="Evaluate tokenizers on the same held-out episodes: tokens per chunk, normalized RMSE per "
                    "dimension, max error, gripper accuracy, codebook usage/perplexity, and closed-loop fidelity "
                    "(scripted-expert success in the simulated workcell when every chunk goes through "
                    "encode → decode, against raw actions). Writes FILE.md and FILE.json.")
    compare.add_argument("--data", type=Path, required=True, help="training data set (for training-set codebook usage)")
    compare.add_argument("--heldout", type=Path, required=True, help="held-out data set directory")
    compare.add_argument("--tokenizers", type=Path, nargs="+", required=True, help="tokenizer directories")
    compare.add_argument("--out", type=Path, required=True, help="markdown file to write; the JSON goes next to it")
    compare.add_argument("--fidelity-episodes", type=non_negative_int, default=None,
                         help="held-out episodes replayed in closed loop (default all; 0 skips closed-loop fidelity)")
    compare.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads (default 1)")
    compare.set_defaults(func=_compare)

    export = sub.add_parser(
        "export-onnx", help="export a tokenizer's decoder to ONNX",
        description="Export the decoder (token ids [B, T] int64 → un-normalized actions [B, 8, 7] float32) to ONNX, "
                    "then check onnxruntime against torch on random tokens and print the largest difference.")
    export.add_argument("--tokenizer", type=Path, required=True, help="tokenizer directory")
    export.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    export.set_defaults(func=_export_onnx)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _load_episodes(command: str, option: str, path: Path, *, successful_only: bool = True):
    from vla_ros.tokenizers.demonstrations import load_action_episodes

    try:
        episodes = load_action_episodes(path, successful_only=successful_only)
    except (FileNotFoundError, OSError, KeyError) as exc:
        raise SystemExit(f"vla-ros tokenizer {command}: {option} {path} is not a readable data set "
                         f"(a directory holding dataset.hdf5 in robomimic layout): {exc}")
    if not episodes:
        raise SystemExit(f"vla-ros tokenizer {command}: {option} {path} has no successful episodes to use")
    return episodes


def _load_tokenizer(command: str, path: Path):
    from vla_ros.tokenizers.loading import load_tokenizer

    try:
        return load_tokenizer(path)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"vla-ros tokenizer {command}: {path} is not a saved tokenizer: {exc}")


def _train(args: argparse.Namespace) -> int:
    import torch

    from vla_ros.tokenizers.training import DEFAULT_STEPS, train_tokenizer, write_training_outputs

    if args.out.exists() and not args.out.is_dir():
        raise SystemExit(f"vla-ros tokenizer train: --out {args.out} is a file; give a directory")
    if args.levels is not None and args.kind != "rvq":
        raise SystemExit("vla-ros tokenizer train: --levels applies to --kind rvq only")
    torch.set_num_threads(args.threads)
    episodes = _load_episodes("train", "--data", args.data)
    overrides = {"levels": args.levels} if args.levels is not None else {}
    tokenizer, result = train_tokenizer(args.kind, [e.actions for e in episodes],
                                        steps=args.steps if args.steps is not None else DEFAULT_STEPS,
                                        seed=args.seed, **overrides)
    result["report"]["data"] = str(args.data)
    write_training_outputs(args.out, tokenizer, result)
    report = result["report"]
    recon = report["train_reconstruction"]
    print(f"wrote {args.out}: {args.kind} tokenizer {tokenizer.identity}, {tokenizer.tokens_per_chunk} tokens/chunk, "
          f"train nRMSE {recon['nrmse_mean']:.4f}, gripper accuracy {recon['gripper_accuracy']:.4f}, "
          f"codebook usage {report['train_codebook']['usage']:.0%}, {report['train_seconds']:.0f} s")
    return 0


def _compare(args: argparse.Namespace) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")
    import torch

    from vla_ros.tokenizers.comparison import compare_tokenizers, write_comparison
    from vla_ros.tokenizers.demonstrations import dataset_split

    torch.set_num_threads(args.threads)
    tokenizers = {}
    for path in args.tokenizers:
        name = path.name if path.name not in tokenizers else str(path)
        tokenizers[name] = _load_tokenizer("compare", path)
    train = _load_episodes("compare", "--data", args.data)
    heldout = _load_episodes("compare", "--heldout", args.heldout)
    # Closed loop replays every held-out task, failed demonstrations included: the baseline counts them too.
    tasks = _load_episodes("compare", "--heldout", args.heldout, successful_only=False)
    if args.fidelity_episodes is not None:
        tasks = tasks[: args.fidelity_episodes]
    try:
        result = compare_tokenizers(tokenizers, train, heldout, split=dataset_split(args.heldout),
                                    fidelity_episodes=tasks)
    except ValueError as exc:
        raise SystemExit(f"vla-ros tokenizer compare: {exc}")
    md, js = write_comparison(result, args.out)
    print(md.read_text())
    print(f"wrote {md} and {js}")
    return 0


def _export_onnx(args: argparse.Namespace) -> int:
    import numpy as np

    from vla_ros.tokenizers.onnx_decoding import OnnxActionDecoder, export_decoder_onnx

    tokenizer = _load_tokenizer("export-onnx", args.tokenizer)
    if args.out.suffix != ".onnx":
        raise SystemExit(f"vla-ros tokenizer export-onnx: --out {args.out} must end in .onnx")
    export_decoder_onnx(tokenizer, args.out)
    decoder = OnnxActionDecoder(args.out)
    low, high = tokenizer.token_ranges()
    tokens = low + np.random.default_rng(0).integers(0, high - low, (64, tokenizer.tokens_per_chunk))
    difference = float(np.abs(decoder.decode(tokens) - tokenizer.decode(tokens)).max())
    print(f"wrote {args.out} ({tokenizer.kind} {tokenizer.identity}); onnxruntime {decoder.providers[0]} vs torch "
          f"max |difference| {difference:.2e} over 64 random chunks")
    return 0 if difference <= 1e-4 else 1
