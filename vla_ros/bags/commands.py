"""`vla-ros bag record|play|info`: rosbag2 bags through the rosbags library (mcap or sqlite3)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vla_ros.commands.arguments import non_negative_float as _non_negative_float
from vla_ros.commands.arguments import positive_float as _positive_float
from vla_ros.commands.arguments import positive_int as _positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    bag = subparsers.add_parser("bag", help="record, play and inspect rosbag2 bags (mcap or sqlite3)",
                                description="Record topics to rosbag2 bags and play them back with their "
                                            "original timing, without a ROS 2 distribution (docs/bags.md).")
    sub = bag.add_subparsers(dest="bag_command", metavar="SUBCOMMAND")

    record = sub.add_parser(
        "record", help="record topics to a new bag",
        description="Record the chosen topics to a new rosbag2 bag (a directory with metadata.yaml and one "
                    "storage file). Subscriptions match each publisher's reliability and durability; messages are "
                    "stored serialized, stamped with their receive time. Ctrl-C or SIGTERM stops and closes the "
                    "bag; until then it is written under OUT.partial, which an error deletes.",
        epilog="example: vla-ros bag record --topics /camera/image_raw /joint_states --duration 30 -o session1")
    record.add_argument("-o", "--out", type=Path, required=True, help="bag directory to create (must not exist)")
    which = record.add_mutually_exclusive_group(required=True)
    which.add_argument("--topics", nargs="+", metavar="TOPIC", help="topics to record (absolute names)")
    which.add_argument("--all", action="store_true",
                       help="every topic with a publisher, including ones that appear later "
                            "(except /rosout and /parameter_events)")
    record.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap",
                        help="storage format (default mcap, as rosbag2 since Iron)")
    record.add_argument("--duration", type=_positive_float, metavar="S", help="stop after S seconds")
    record.add_argument("--max-messages", type=_positive_int, metavar="N", help="stop after N messages in all")
    record.add_argument("--wait", type=_positive_float, default=10.0, metavar="S",
                        help="seconds to wait for the --topics to appear before giving up (default 10)")
    record.set_defaults(func=_record)

    play = sub.add_parser(
        "play", help="publish a bag with its original timing",
        description="Publish a bag's messages (byte-for-byte as recorded) with their original timing. Plays bags "
                    "from `vla-ros bag record`, `ros2 bag record` (mcap or sqlite3) and bare .mcap / .db3 files. "
                    "The same player runs as the bag_player node in graph and launch files.",
        epilog="example: vla-ros bag play session1 --rate 2 --topics /camera/image_raw --remap "
               "/camera/image_raw:=/cam2/image_raw")
    play.add_argument("bag", type=Path, help="bag directory (with metadata.yaml) or a .mcap / .db3 file")
    play.add_argument("--rate", type=_positive_float, default=1.0, help="speed factor (default 1: as recorded)")
    play.add_argument("--start-offset", type=_non_negative_float, default=0.0, metavar="S",
                      help="skip the first S seconds of the bag")
    play.add_argument("--loop", action="store_true", help="start over at the end, until Ctrl-C")
    play.add_argument("--topics", nargs="+", metavar="TOPIC", default=[],
                      help="play only these topics (default: every topic whose type is installed)")
    play.add_argument("--remap", nargs="+", metavar="FROM:=TO", default=[],
                      help="publish a bag topic under another name, e.g. /camera/image_raw:=/cam2/image_raw")
    play.add_argument("--clock", action="store_true",
                      help="publish the bag time on /clock (rosgraph_msgs/Clock) for nodes with use_sim_time")
    play.add_argument("--delay", type=_non_negative_float, default=0.0, metavar="S",
                      help="wait S seconds before the first message")
    play.add_argument("--wait-for-subscribers", type=_non_negative_float, default=0.0, metavar="S",
                      help="wait up to S seconds until every played topic has a subscriber (default 0: no wait)")
    play.add_argument("--skip-check", action="store_true",
                      help="start at once instead of first reading the whole bag to find corruption "
                           "(for very large bags; a corrupt part then stops playback with exit code 1)")
    play.set_defaults(func=_play)

    info = sub.add_parser("info", help="print a bag's topics, types, counts and duration",
                          description="Print a bag's storage, duration, and per topic its type, message count "
                                      "and recorded QoS, after checking that every message can be read.")
    info.add_argument("bag", type=Path, help="bag directory (with metadata.yaml) or a .mcap / .db3 file")
    info.add_argument("--json", action="store_true", help="print machine-readable JSON")
    info.set_defaults(func=_info)
    bag.set_defaults(func=lambda args: (bag.print_help(), 2)[1])
    _register_replay(subparsers)
    _register_sanity(subparsers)


def _register_replay(subparsers: argparse._SubParsersAction) -> None:
    replay = subparsers.add_parser(
        "replay", help="run the policy → decoder → executor → safety chain on a bag, offline and deterministic",
        description="Replay a bag's camera frames, joint states and task through the same core logic as the "
                    "camera_ingest, vla_policy (greedy), action_decoder, chunk_executor and safety_monitor nodes, "
                    "single-threaded on the bag's clock. Writes OUT/replay (a bag with every output topic) and "
                    "OUT/summary.json (latency per stage, chunks, vetoes by rule, command statistics). With "
                    "--check, compares the output with a golden run and names the first divergence (docs/bags.md).",
        epilog="example: vla-ros replay --bag session1 --out runs/replay1 --check test/data/replay/golden")
    replay.add_argument("--bag", type=Path, required=True,
                        help="input bag: /camera/image_raw (or .../compressed), /joint_states, /vla/task or "
                             "/vla/instruction")
    replay.add_argument("--out", type=Path,
                        help="output folder to create (required unless --check; with --check alone the output "
                             "goes to a temporary folder)")
    replay.add_argument("--graph", default="widowx",
                        help="graph whose node parameters the chain uses (name under config/ or a YAML path; "
                             "default widowx)")
    replay.add_argument("--arg", dest="graph_args", nargs="+", default=[], metavar="NAME:=VALUE",
                        help="graph arguments, as for `vla-ros launch`, e.g. image_size:=64")
    replay.add_argument("--policy", type=Path,
                        help="policy directory (default: the graph's policy_path); its tokenizer/ decodes unless "
                             "--tokenizer is given")
    replay.add_argument("--tokenizer", type=Path,
                        help="the decoder's tokenizer directory (default: the policy's, or the graph's "
                             "tokenizer_path)")
    replay.add_argument("--task", help="use this task instead of the bag's /vla/task or /vla/instruction")
    replay.add_argument("--check", type=Path, metavar="GOLDEN",
                        help="golden replay output (folder or bag) to compare with; exit 1 on a divergence")
    replay.add_argument("--write-golden", action="store_true",
                        help="with --check: (re)create GOLDEN from this run instead of comparing")
    replay.add_argument("--quiet", action="store_true", help="no progress bar")
    replay.set_defaults(func=_replay)


def _register_sanity(subparsers: argparse._SubParsersAction) -> None:
    sanity = subparsers.add_parser(
        "sanity", help="OpenVLA's sanity checks: replay demonstration actions; compare policy actions",
        description="Two checks from OpenVLA's troubleshooting advice, on a data set (dataset.hdf5) or episode "
                    "bags (`vla-ros data generate --bags`). Each prints a table and writes OUT/<check>.json.")
    sub = sanity.add_subparsers(dest="sanity_command", metavar="CHECK")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", type=Path, required=True,
                        help="data set directory or dataset.hdf5, a folder of episode bags, or one episode bag")
    common.add_argument("--episodes", type=_positive_int, help="only the first N episodes")
    common.add_argument("--out", type=Path, help="folder for the results JSON")
    common.add_argument("--quiet", action="store_true", help="no progress bar")
    actions = sub.add_parser(
        "replay-actions", parents=[common], help="recorded actions through executor + simulated arm reproduce the "
                                                 "recorded outcome",
        description="Reset the workcell with each episode's seed and task, feed the recorded actions as 8-step "
                    "chunks through the executor core (sliding window, execute 3), the EE integrator and "
                    "Workcell.set_joint_targets/advance, and compare success with the recorded success. Reports "
                    "the agreement rate and the end-effector error at the last recorded observation.")
    actions.set_defaults(func=_sanity_replay_actions)
    policy = sub.add_parser(
        "policy-actions", parents=[common], help="recorded images through the policy give the demonstrated actions",
        description="For every recorded frame, infer a chunk greedily, decode it and compare with the "
                    "demonstration's next 8 actions: normalized RMSE per dimension (the tokenizer's q01/q99 "
                    "scaling) and gripper agreement, against the mean action and the tokenizer's own round trip.")
    policy.add_argument("--policy", type=Path, default=Path("models/policy/vla"),
                        help="policy directory (default models/policy/vla)")
    policy.set_defaults(func=_sanity_policy_actions)
    sanity.set_defaults(func=lambda args: (sanity.print_help(), 2)[1])


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
                            tokenizer=args.tokenizer, task=args.task)
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


def _sanity_load(args: argparse.Namespace, with_images: bool):
    from vla_ros.bags.sanity import load_demonstrations

    return load_demonstrations(args.data, args.episodes, with_images=with_images)


def _sanity_replay_actions(args: argparse.Namespace) -> int:
    from vla_ros.bags.errors import BagError
    from vla_ros.bags.sanity import check_replay_actions, replay_table, write_result

    try:
        demos, split = _sanity_load(args, with_images=False)
        result = check_replay_actions(demos, split, progress=not args.quiet)
    except (BagError, FileNotFoundError) as exc:
        print(f"vla-ros sanity replay-actions: {exc}", file=sys.stderr)
        return 2
    print(replay_table(result))
    written = write_result(args.out, "replay_actions", result)
    if written:
        print(f"results: {written}")
    return 0


def _sanity_policy_actions(args: argparse.Namespace) -> int:
    from vla_ros.bags.errors import BagError
    from vla_ros.bags.sanity import check_policy_actions, policy_table, write_result
    from vla_ros.core.resources import resolve_resource
    from vla_ros.policy.modeling_vla import PolicyLoadError
    from vla_ros.policy.runners import PolicyRunner

    policy = resolve_resource(args.policy)
    try:
        if not policy.exists():
            raise BagError(f"policy {policy} does not exist; give a policy directory from `vla-ros train` with "
                           "--policy")
        runner = PolicyRunner(policy, "builtin-torch", threads=1)
        demos, _ = _sanity_load(args, with_images=True)
        result = check_policy_actions(demos, runner, progress=not args.quiet)
    except (BagError, PolicyLoadError, FileNotFoundError) as exc:
        print(f"vla-ros sanity policy-actions: {exc}", file=sys.stderr)
        return 2
    print(policy_table(result))
    written = write_result(args.out, "policy_actions", {**result, "policy_path": str(policy)})
    if written:
        print(f"results: {written}")
    return 0


def _fail(command: str, message: str) -> int:
    print(f"vla-ros bag {command}: {message}", file=sys.stderr)
    return 2


def _record(args: argparse.Namespace) -> int:
    from vla_ros.bags.errors import BagError
    from vla_ros.bags.recorder import Recorder, RecordOptions

    options = RecordOptions(path=args.out, topics=args.topics or [], all_topics=args.all, storage=args.storage,
                            duration_s=args.duration, max_messages=args.max_messages, wait_s=args.wait)
    try:
        recorder = Recorder(options, say=print, warn=lambda m: print(f"warning: {m}", file=sys.stderr))
        result = recorder.run()
    except BagError as exc:
        return _fail("record", str(exc))
    total = sum(result.counts.values())
    print(f"recorded {total} messages on {len(result.counts)} topics in {result.seconds:.1f} s to {result.path} "
          f"(stopped by {result.stopped_by})")
    for topic, count in sorted(result.counts.items()):
        print(f"  {topic}: {count}")
    return 0


def _play(args: argparse.Namespace) -> int:
    from vla_ros.bags.errors import BagError
    from vla_ros.bags.reading import BagReader
    from vla_ros.bags.schedule import PlaybackOptions
    from vla_ros.bags.selection import choose_topics, parse_remaps

    # Check everything a user can get wrong before any ROS start-up, so the answer is one sentence.
    try:
        with BagReader(args.bag) as reader:
            PlaybackOptions(args.rate, args.start_offset, args.loop).check(reader.info.duration_ns)
            chosen = choose_topics(reader.info, args.topics, parse_remaps(args.remap), on_warning=lambda m: None)
            if not args.skip_check:
                reader.check_readable([t.name for t in chosen])
    except BagError as exc:
        return _fail("play", str(exc))
    from rclpy.parameter import Parameter

    from vla_ros.nodes.bag_player import main as run_player

    overrides = [
        Parameter("bag", value=str(args.bag)),
        Parameter("rate", value=float(args.rate)),
        Parameter("start_offset", value=float(args.start_offset)),
        Parameter("loop", value=bool(args.loop)),
        Parameter("topics", value=",".join(args.topics)),
        Parameter("remap", value=",".join(args.remap)),
        Parameter("clock", value=bool(args.clock)),
        Parameter("delay", value=float(args.delay)),
        Parameter("wait_for_subscribers", value=float(args.wait_for_subscribers)),
    ]
    return run_player([], parameter_overrides=overrides)


def _info(args: argparse.Namespace) -> int:
    from vla_ros.bags.errors import BagError
    from vla_ros.bags.reading import BagReader

    warnings: list[str] = []
    try:
        with BagReader(args.bag, on_warning=warnings.append) as reader:
            read = reader.check_readable()
            info = reader.info
            out_of_order = reader.out_of_order_summary()
    except BagError as exc:
        return _fail("info", str(exc))
    for message in warnings:
        print(f"warning: {message}", file=sys.stderr)
    report = {
        "path": str(info.path), "storage": info.storage, "messages": info.message_count, "read": read,
        "start_ns": info.start_ns, "duration_s": info.duration_ns / 1e9,
        "topics": {t.name: {"type": t.msgtype, "count": t.count,
                            "qos": [{"reliability": q.reliability.name, "durability": q.durability.name,
                                     "depth": q.depth} for q in t.qos]}
                   for t in info.topics.values()},
        "out_of_order": out_of_order,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{info.path}: {info.storage}, {info.message_count} messages, {info.duration_ns / 1e9:.3f} s")
    for topic in info.topics.values():
        qos = ", ".join(sorted({f"{q.reliability.name.lower()}/{q.durability.name.lower()}" for q in topic.qos}))
        print(f"  {topic.name:40s} {topic.msgtype:36s} {topic.count:8d}  {qos}")
    return 0
