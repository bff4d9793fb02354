"""`vla-ros finetune`: adapt a trained policy to a changed set-up with LoRA (or full fine-tuning)."""

from __future__ import annotations

import argparse
from pathlib import Path

from vla_ros.commands.argument_types import check_training_paths, non_negative_int, positive_float, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    from vla_ros.policy.adapters import TARGETS, AdapterSpec
    from vla_ros.policy.finetuning import FinetuneRecipe

    recipe, spec = FinetuneRecipe(), AdapterSpec()
    parser = subparsers.add_parser(
        "finetune", help="adapt a trained policy to a new cell with LoRA adapters",
        description="Freeze a trained policy and train LoRA adapters (low-rank matrices on the Llama decoder's "
                    "projections, optionally the vision encoder's convolutions and FiLM) on demonstrations from "
                    "the new set-up. Writes OUT/adapter_config.json (with the base policy's identity), "
                    "OUT/adapter_model.safetensors, OUT/onnx/ (the merged graphs for builtin-onnx), "
                    "OUT/training_report.json and OUT/loss_curve.png; a re-run resumes OUT/checkpoint.pt. Load "
                    "the adapter with `vla-ros eval --adapter OUT`, `vla-ros launch widowx adapter_path:=OUT`, "
                    "`vla-ros serve --adapter OUT` or `vla-ros replay --arg adapter_path:=OUT`. With --full every "
                    "weight trains and OUT is a whole policy (the comparison of docs/benchmarks.md). Runs under "
                    "Hugging Face accelerate: `torchrun --nproc_per_node N -m vla_ros.cli finetune …` (or "
                    "`accelerate launch`) trains with DDP over N processes.")
    parser.add_argument("--policy", type=Path, required=True, help="base policy directory (e.g. models/policy/vla)")
    parser.add_argument("--data", type=Path, nargs="+", required=True,
                        help="demonstrations from the new set-up: dataset.hdf5 directory, LeRobotDataset or "
                             "demonstration bags (as for `vla-ros train`); several are pooled (add some of the old "
                             "cell's to keep what the base could do there)")
    parser.add_argument("--out", type=Path, required=True, help="output adapter directory (created if missing)")
    parser.add_argument("--rank", type=positive_int, default=spec.rank, help=f"LoRA rank (default {spec.rank})")
    parser.add_argument("--alpha", type=positive_float, default=spec.alpha,
                        help=f"LoRA alpha: the update is scaled by alpha / rank (default {spec.alpha:g})")
    parser.add_argument("--targets", choices=tuple(TARGETS), default=spec.targets,
                        help="modules that get adapters: attention (q, k, v, o projections), attention+mlp, or all "
                             f"(also the vision encoder and the input projections) (default {spec.targets})")
    parser.add_argument("--full", action="store_true",
                        help="full fine-tuning instead of LoRA: every weight trains, OUT is a whole policy")
    parser.add_argument("--episodes", type=positive_int, default=None,
                        help="use the first N successful training episodes of each data set only (default: all)")
    parser.add_argument("--steps", type=positive_int, default=recipe.steps,
                        help=f"optimizer steps (default {recipe.steps})")
    parser.add_argument("--batch-size", type=positive_int, default=recipe.batch_size,
                        help=f"samples per step (default {recipe.batch_size})")
    parser.add_argument("--lr", type=positive_float, default=None,
                        help=f"peak learning rate (default {recipe.learning_rate:g} for LoRA, 3e-4 with --full)")
    parser.add_argument("--seed", type=int, default=recipe.seed, help=f"random seed (default {recipe.seed})")
    parser.add_argument("--threads", type=positive_int, default=recipe.threads,
                        help=f"torch CPU threads (default {recipe.threads})")
    parser.add_argument("--workers", type=non_negative_int, default=1,
                        help="DataLoader worker processes reading frames (default 1; 0 = in the training process)")
    parser.add_argument("--eval-every", type=positive_int, default=recipe.eval_every,
                        help=f"validate every N steps (default {recipe.eval_every})")
    parser.add_argument("--generated-phrasings", type=non_negative_int, default=recipe.generated_phrasings,
                        metavar="N",
                        help="also paraphrase with N requests per task from the training request generator "
                             "(vla_ros/sim/requests.py), to adapt a policy to how people ask "
                             f"(default {recipe.generated_phrasings})")
    parser.add_argument("--add-camera", action="append", default=[], metavar="CAMERA",
                        help="with --full: the policy also reads this camera (repeatable), recorded in the data "
                             "with 'vla-ros data generate --extra-camera CAMERA'; its view starts from the "
                             "primary view's position embeddings (docs/policy.md, \"A second view\")")
    parser.add_argument("--no-onnx", action="store_true", help="skip writing the merged ONNX graphs")
    parser.add_argument("--restart", action="store_true", help="ignore an existing OUT/checkpoint.pt")
    parser.set_defaults(func=_finetune)


FULL_LEARNING_RATE = 3e-4


def _finetune(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from vla_ros.policy.adapters import AdapterSpec
    from vla_ros.policy.errors import PolicyLoadError
    from vla_ros.policy.finetuning import FinetuneRecipe, finetune_policy

    for data in args.data:
        check_training_paths("finetune", data, args.out)
    recipe = FinetuneRecipe(steps=args.steps, batch_size=args.batch_size, seed=args.seed, threads=args.threads,
                            eval_every=args.eval_every, checkpoint_every=args.eval_every,
                            generated_phrasings=args.generated_phrasings)
    if args.full:
        recipe = replace(recipe, learning_rate=FULL_LEARNING_RATE, weight_decay=0.05)
    if args.lr is not None:
        recipe = replace(recipe, learning_rate=args.lr)
    spec = None if args.full else AdapterSpec(rank=args.rank, alpha=args.alpha, targets=args.targets)
    try:
        data = args.data[0] if len(args.data) == 1 else args.data
        report = finetune_policy(args.policy, data, args.out, spec, recipe, episodes=args.episodes,
                                 resume=not args.restart, workers=args.workers, export_onnx=not args.no_onnx,
                                 add_cameras=tuple(args.add_camera))
    except PolicyLoadError as exc:
        raise SystemExit(f"vla-ros finetune: --policy {args.policy}: {exc}")
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"vla-ros finetune: {exc}")
    if not report["written"]:
        return 0  # another process of a distributed run writes OUT and reports
    selected = report["selected_eval"] or report["final_eval"] or {}
    size = f", adapter {report['adapter_bytes'] / 1024:.0f} KB" if "adapter_bytes" in report else ""
    print(f"wrote {args.out}: {report['method']} on {report['train_episodes']} episodes, "
          f"{report['trainable_parameters']:,} trainable parameters ({report['trainable_percent']:.2f} % of the "
          f"base){size}, {report['train_seconds'] / 60:.1f} min on {report['device']}; weights of step "
          f"{report['selected_step']}, valid token accuracy {selected.get('token_accuracy', float('nan')):.3f}, "
          f"peak memory {report['peak_memory_mb']:.0f} MB")
    return 0
