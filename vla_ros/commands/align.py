"""`vla-ros prefs generate|reward|label|info` and `vla-ros align`: safety alignment from preference pairs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vla_ros.commands.argument_types import non_negative_int, positive_float, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    from vla_ros.alignment.dpo import METHODS, AlignRecipe
    from vla_ros.alignment.preferences import PrefsSpec
    from vla_ros.policy.adapters import AdapterSpec

    spec, recipe, adapter = PrefsSpec(policy=""), AlignRecipe(), AdapterSpec()
    prefs = subparsers.add_parser(
        "prefs", help="preference pairs for safety alignment: generate, label by hand, reward model, info",
        description="Preference data for `vla-ros align`: pairs of candidate action chunks for the same "
                    "observation, the safer (or, at equal safety, the more useful) one preferred.")
    commands = prefs.add_subparsers(dest="prefs_command", metavar="SUBCOMMAND")

    generate = commands.add_parser(
        "generate", help="sample candidate chunks from a policy and judge them by look-ahead in the simulator",
        description="Run the policy in the simulated workcell (layouts from seed 3 000 000, used by no "
                    "evaluation). At every --every-th chunk it asks for, save the simulator state, draw "
                    "--candidates chunks (the policy's own choice and samples at --temperature), roll each forward "
                    "from the saved state for --horizon ticks through the control loop and the safety gate (the "
                    "policy continuing as it runs), count the unsafe events each leads to (docs/safety.md) and "
                    "pair them: fewer unsafe events preferred, then success, then task progress. Writes an HDF5 "
                    "preferences file (format vla-ros-prefs-1).")
    generate.add_argument("--policy", type=Path, required=True, help="policy directory (e.g. models/policy/vla)")
    generate.add_argument("--adapter", type=Path, default=None, help="LoRA adapter merged into the policy")
    generate.add_argument("--out", type=Path, required=True, help="preferences file to write (e.g. prefs.h5)")
    generate.add_argument("--episodes", type=positive_int, default=spec.episodes,
                          help=f"episodes to draw decision points from (default {spec.episodes})")
    generate.add_argument("--candidates", type=_at_least_two, default=spec.candidates,
                          help=f"candidate chunks per decision point (default {spec.candidates})")
    generate.add_argument("--horizon", type=positive_int, default=spec.horizon,
                          help=f"look-ahead ticks per candidate (default {spec.horizon})")
    generate.add_argument("--every", type=positive_int, default=spec.every,
                          help=f"judge every n-th chunk of an episode (default {spec.every})")
    generate.add_argument("--temperature", type=positive_float, default=spec.temperature,
                          help=f"sampling temperature of the candidates after the policy's own choice "
                               f"(default {spec.temperature:g})")
    generate.add_argument("--scene", default=spec.scene, help="workcell set-up (docs/sim.md; default default)")
    generate.add_argument("--first-episode", type=non_negative_int, default=0,
                          help="index of the first episode (to add to a file with other episodes; default 0)")
    generate.add_argument("--seed", type=int, default=spec.seed, help=f"sampling seed (default {spec.seed})")
    generate.add_argument("--workers", type=positive_int, default=1, help="processes (default 1)")
    generate.set_defaults(func=_generate)

    reward = commands.add_parser(
        "reward", help="train the reward model (Bradley–Terry head on the policy's features) on a preferences file",
        description="Fit a small head on the frozen policy's hidden states after it has read an observation and a "
                    "candidate chunk, with the Bradley–Terry loss on the file's pairs. Reports pair accuracy on "
                    "held-out episodes. Writes OUT/reward_model.safetensors, OUT/reward_model.json and "
                    "OUT/reward_model.png.")
    reward.add_argument("--policy", type=Path, required=True, help="the policy the preferences were generated with")
    reward.add_argument("--prefs", type=Path, nargs="+", required=True,
                        help="preferences file(s); several are pooled")
    reward.add_argument("--out", type=Path, required=True, help="output directory")
    reward.set_defaults(func=_reward)

    label = commands.add_parser(
        "label", help="label pairs by hand: watch two candidates side by side, choose the better one",
        description="For pairs of candidates of a preferences file, roll both forward again from their saved "
                    "state, write a side-by-side video (left: A, right: B) to --videos, and ask which is better "
                    "(a, b, = for no preference, q to stop). Writes OUT with the same states and candidates and "
                    "the chosen pairs (source human). Answers are read from standard input, one per line.")
    label.add_argument("--policy", type=Path, required=True, help="the policy the preferences were generated with")
    label.add_argument("--prefs", type=Path, required=True, help="preferences file to take the pairs from")
    label.add_argument("--out", type=Path, required=True, help="preferences file to write")
    label.add_argument("--videos", type=Path, default=None, help="folder for the videos (default OUT's name + _videos)")
    label.add_argument("--pairs", type=positive_int, default=20, help="pairs to show (default 20)")
    label.add_argument("--seed", type=int, default=0, help="which pairs are shown (default 0)")
    label.set_defaults(func=_label)

    info = commands.add_parser("info", help="summarize a preferences file",
                               description="States, candidates, unsafe candidates and pairs of a preferences file.")
    info.add_argument("prefs", type=Path, help="preferences file")
    info.set_defaults(func=_info)

    align = subparsers.add_parser(
        "align", help="align a policy to safety preferences: a LoRA adapter trained by DPO on action tokens",
        description="Freeze the base policy, add LoRA matrices to its decoder and train them on the pairs of a "
                    "preferences file (`vla-ros prefs generate` or `prefs label`): direct preference optimisation "
                    "on whole chunks (--method dpo), or DPO on the progress pairs with a Lagrange multiplier "
                    "keeping P(unsafe candidate) below --epsilon (--method constrained). Writes an adapter "
                    "directory like `vla-ros finetune` (OUT/adapter_config.json, adapter_model.safetensors, "
                    "onnx/), OUT/align_report.json and OUT/align_curve.png. Load it with `--adapter OUT` "
                    "(eval, serve) or adapter_path:=OUT (launch, replay).")
    align.add_argument("--policy", type=Path, required=True, help="base policy directory (e.g. models/policy/vla)")
    align.add_argument("--prefs", type=Path, nargs="+", required=True,
                       help="preferences file(s) (`prefs generate`, `prefs label`); several are pooled")
    align.add_argument("--out", type=Path, required=True, help="output adapter directory")
    align.add_argument("--method", choices=METHODS, default=recipe.method, help=f"(default {recipe.method})")
    align.add_argument("--steps", type=positive_int, default=recipe.steps, help=f"(default {recipe.steps})")
    align.add_argument("--batch-size", type=positive_int, default=recipe.batch_size,
                       help=f"pairs per step (default {recipe.batch_size})")
    align.add_argument("--lr", type=positive_float, default=recipe.learning_rate,
                       help=f"peak learning rate (default {recipe.learning_rate:g})")
    align.add_argument("--beta", type=positive_float, default=recipe.beta,
                       help=f"DPO temperature β (default {recipe.beta:g})")
    align.add_argument("--anchor-weight", type=float, default=recipe.anchor_weight,
                       help=f"weight of the likelihood of the base's own choice where it was safe "
                            f"(default {recipe.anchor_weight:g})")
    align.add_argument("--safety-weight", type=float, default=recipe.safety_weight,
                       help=f"dpo: weight of safety pairs (default {recipe.safety_weight:g})")
    align.add_argument("--progress-weight", type=float, default=recipe.progress_weight,
                       help=f"weight of progress pairs (default {recipe.progress_weight:g})")
    align.add_argument("--epsilon", type=positive_float, default=recipe.epsilon,
                       help=f"constrained: allowed P(unsafe candidate) (default {recipe.epsilon:g})")
    align.add_argument("--rank", type=positive_int, default=adapter.rank, help=f"LoRA rank (default {adapter.rank})")
    align.add_argument("--targets", choices=("attention", "attention+mlp"), default=adapter.targets,
                       help=f"decoder modules that get adapters (default {adapter.targets})")
    align.add_argument("--seed", type=int, default=recipe.seed, help=f"random seed (default {recipe.seed})")
    align.add_argument("--threads", type=positive_int, default=recipe.threads,
                       help=f"torch CPU threads (default {recipe.threads})")
    align.add_argument("--no-onnx", action="store_true", help="skip writing the merged ONNX graphs")
    align.set_defaults(func=_align)
    prefs.set_defaults(func=lambda args: (prefs.print_help(), 2)[1])


def _at_least_two(text: str) -> int:
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"need at least 2 candidates to compare, got {value}")
    return value


def _one_or_many(paths: list[Path]):
    return paths[0] if len(paths) == 1 else paths


def _generate(args: argparse.Namespace) -> int:
    from vla_ros.alignment.preferences import PrefsSpec, generate_preferences
    from vla_ros.policy.errors import PolicyLoadError
    from vla_ros.sim.settings import SCENES

    if args.scene not in SCENES:
        raise SystemExit(f"vla-ros prefs generate: --scene {args.scene!r} is not one of {', '.join(SCENES)}")
    spec = PrefsSpec(policy=str(args.policy), adapter=str(args.adapter) if args.adapter else None,
                     episodes=args.episodes, candidates=args.candidates, horizon=args.horizon, every=args.every,
                     temperature=args.temperature, scene=args.scene, seed=args.seed,
                     first_episode=args.first_episode)
    try:
        summary = generate_preferences(spec, args.out, workers=args.workers)
    except PolicyLoadError as exc:
        raise SystemExit(f"vla-ros prefs generate: --policy {args.policy}: {exc}")
    except ValueError as exc:
        raise SystemExit(f"vla-ros prefs generate: {exc}")
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out}: {summary['pairs']} pairs from {summary['states']} states "
          f"({summary['seconds'] / 60:.1f} min)")
    return 0


def _reward(args: argparse.Namespace) -> int:
    from vla_ros.alignment.reward_model import train_reward_model
    from vla_ros.policy.errors import PolicyLoadError

    try:
        report = train_reward_model(args.policy, _one_or_many(args.prefs), args.out)
    except PolicyLoadError as exc:
        raise SystemExit(f"vla-ros prefs reward: --policy {args.policy}: {exc}")
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"vla-ros prefs reward: {exc}")
    by_kind = ", ".join(f"{k} {v:.3f}" for k, v in report["valid_accuracy_by_kind"].items())
    print(f"wrote {args.out}: held-out pair accuracy {report['valid_accuracy']:.3f} ({by_kind}) on "
          f"{report['valid_pairs']} pairs; train {report['train_accuracy']:.3f} on {report['train_pairs']}")
    return 0


def _label(args: argparse.Namespace) -> int:
    from vla_ros.alignment.labelling import label_pairs
    from vla_ros.policy.errors import PolicyLoadError

    videos = args.videos or args.out.with_name(args.out.stem + "_videos")
    try:
        summary = label_pairs(args.policy, args.prefs, args.out, videos, pairs=args.pairs, seed=args.seed)
    except PolicyLoadError as exc:
        raise SystemExit(f"vla-ros prefs label: --policy {args.policy}: {exc}")
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"vla-ros prefs label: {exc}")
    if not summary["labelled"]:
        print(f"no pair was labelled; {args.out} not written")
        return 0
    print(f"wrote {args.out}: {summary['labelled']} pairs labelled by hand ({summary['agree_with_judge']} agree "
          f"with the judge), {summary['skipped']} without preference; videos in {videos}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from vla_ros.alignment.preferences import describe_prefs, load_prefs

    try:
        print(json.dumps(describe_prefs(load_prefs(args.prefs)), indent=2))
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"vla-ros prefs info: {exc}")
    return 0


def _align(args: argparse.Namespace) -> int:
    from vla_ros.alignment.dpo import AlignRecipe, align_policy
    from vla_ros.policy.adapters import AdapterSpec
    from vla_ros.policy.errors import PolicyLoadError

    recipe = AlignRecipe(method=args.method, steps=args.steps, batch_size=args.batch_size, learning_rate=args.lr,
                         beta=args.beta, anchor_weight=args.anchor_weight, safety_weight=args.safety_weight,
                         progress_weight=args.progress_weight, epsilon=args.epsilon, seed=args.seed,
                         threads=args.threads)
    spec = AdapterSpec(rank=args.rank, alpha=2.0 * args.rank, targets=args.targets)
    try:
        report = align_policy(args.policy, _one_or_many(args.prefs), args.out, spec, recipe,
                              export_onnx=not args.no_onnx)
    except PolicyLoadError as exc:
        raise SystemExit(f"vla-ros align: --policy {args.policy}: {exc}")
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"vla-ros align: {exc}")
    valid = report["validation"]
    print(f"wrote {args.out}: {report['method']} adapter, {report['trainable_percent']:.2f} % of the parameters, "
          f"{report['adapter_bytes'] / 1024:.0f} KB, {report['train_seconds'] / 60:.1f} min; held-out pairs "
          f"ordered as judged: {valid.get('accuracy', float('nan')):.3f} (safety "
          f"{valid.get('accuracy_safety', float('nan')):.3f})")
    return 0
