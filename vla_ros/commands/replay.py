"""`vla-ros replay`: the policy → decoder → executor → safety chain on a recorded bag, offline, deterministic."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    replay = subparsers.add_parser(
        "replay", help="run the policy → decoder → executor → safety chain on a bag, offline and deterministic",
        description="Replay a bag's camera frames, joint states and task through the same core logic as the "
                    "camera_ingest, vla_policy (greedy), action_decoder, chunk_executor and safety_monitor nodes, "
                    "single-threaded on the bag's clock. Writes OUT/replay (a bag with every output topic) and "
                    "OUT/summary.json (latency per stage, chunks, vetoes by rule, command statistics). With "
                    "--check, compares the output with a golden run and names the first divergence (docs/bags.md).",
        epilog="example: vla-ros replay --bag recording1 --out runs/replay1 --check test/data/replay/golden")
    replay.add_argument("--bag", type=Path, required=True,
                        help="input bag: /camera/image_raw (or .../compressed), /joint_states, /vla/task or "
                             "/vla/instruction")
    replay.add_argument("--out", type=Path,
                        help="output folder to create (required unless --check; with --check alone the output "
                             "goes to a temporary folder)")
    replay.add_argument("--graph", default="widowx",
                        help="graph whose node parameters the chain uses (name under config/ or a YAML path; "
                             "default widowx)")
    replay.add_argument("--arg", dest="graph_args", nargs="+", action="extend", default=[],
                        metavar="NAME:=VALUE",
                        help="graph arguments, as for `vla-ros launch`, e.g. image_size:=64 (repeatable)")
    replay.add_argument("--policy", type=Path,
                        help="policy directory (default: the graph's policy_path); its tokenizer/ decodes unless "
                             "--tokenizer is given")
    replay.add_argument("--tokenizer", type=Path,
                        help="the decoder's tokenizer directory (default: the policy's, or the graph's "
                             "tokenizer_path)")
    replay.add_argument("--task", help="use this task instead of the bag's /vla/task or /vla/instruction")
    replay.add_argument("--seed", type=int, default=0,
                        help="seed of the policy's sampling at the graph's temperature (default 0)")
    replay.add_argument("--check", type=Path, metavar="GOLDEN",
                        help="golden replay output (folder or bag) to compare with; exit 1 on a divergence")
    replay.add_argument("--write-golden", action="store_true",
                        help="with --check: (re)create GOLDEN from this run instead of comparing")
    replay.add_argument("--quiet", action="store_true", help="no progress bar")
    replay.set_defaults(func=_replay)


def _replay(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    from vla_ros.bags.errors import BagError
    from vla_ros.bags.golden import check_against_golden
    from vla_ros.bags.replay import ReplayOptions, run_replay

    if args.out is None and args.check is None:
        print("vla-ros replay: give --out DIR for the output, or --check GOLDEN to compare with a golden run",
              file=sys.stderr)
        return 2
    if args.write_golden and args.check is None:
        print("vla-ros replay: --write-golden needs --check GOLDEN (the golden to create)", file=sys.stderr)
        return 2
    scratch = Path(tempfile.mkdtemp(prefix="vla_ros_replay_")) if args.out is None else None
    out = args.out if args.out is not None else scratch / "output"
    options = ReplayOptions(bag=args.bag, out=out, graph=args.graph, graph_args=args.graph_args, policy=args.policy,
                            tokenizer=args.tokenizer, task=args.task, seed=args.seed)
    try:
        summary = run_replay(options, progress=not args.quiet, warn=lambda m: print(f"warning: {m}", file=sys.stderr))
        counts = summary["output_messages"]
        print(f"replayed {summary['bag_seconds']:.2f} s of {args.bag} in {summary['wall_seconds']:.2f} s "
              f"({summary['speed_vs_real_time']:.1f}x real time): {summary['chunks']} chunks, "
              f"{counts['/vla/arm_command']} arm commands, vetoes {summary['vetoes_by_rule'] or 'none'}")
        if args.out is not None:
            print(f"output: {out} (replay/ bag, summary.json)")
        if args.check is None:
            return 0
        if args.write_golden:
            if args.check.exists():
                shutil.rmtree(args.check)
            shutil.copytree(out, args.check)
            print(f"wrote golden {args.check}")
            return 0
        divergence = check_against_golden(args.check, out)
    except BagError as exc:
        print(f"vla-ros replay: {exc}", file=sys.stderr)
        return 2
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    if divergence is None:
        print(f"matches golden {args.check}")
        return 0
    print(f"vla-ros replay: differs from golden {args.check}: {divergence.sentence()}", file=sys.stderr)
    return 1
