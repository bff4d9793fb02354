"""`vla-ros bag record|play|info`: rosbag2 bags through the rosbags library (mcap or sqlite3)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vla_ros.commands.argument_types import non_negative_float, positive_float, positive_int


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
        epilog="example: vla-ros bag record --topics /camera/image_raw /joint_states --duration 30 -o recording1")
    record.add_argument("-o", "--out", type=Path, required=True, help="bag directory to create (must not exist)")
    which = record.add_mutually_exclusive_group(required=True)
    which.add_argument("--topics", nargs="+", metavar="TOPIC", help="topics to record (absolute names)")
    which.add_argument("--all", action="store_true",
                       help="every topic with a publisher, including ones that appear later "
                            "(except /rosout and /parameter_events)")
    record.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap",
                        help="storage format (default mcap, as rosbag2 since Iron)")
    record.add_argument("--duration", type=positive_float, metavar="S", help="stop after S seconds")
    record.add_argument("--max-messages", type=positive_int, metavar="N", help="stop after N messages in all")
    record.add_argument("--wait", type=positive_float, default=10.0, metavar="S",
                        help="seconds to wait for the --topics to appear before giving up (default 10)")
    record.set_defaults(func=_record)

    play = sub.add_parser(
        "play", help="publish a bag with its original timing",
        description="Publish a bag's messages (byte-for-byte as recorded) with their original timing. Plays bags "
                    "from `vla-ros bag record`, `ros2 bag record` (mcap or sqlite3) and bare .mcap / .db3 files. "
                    "The same player runs as the bag_player node in graph and launch files.",
        epilog="example: vla-ros bag play recording1 --rate 2 --topics /camera/image_raw --remap "
               "/camera/image_raw:=/cam2/image_raw")
    play.add_argument("bag", type=Path, help="bag directory (with metadata.yaml) or a .mcap / .db3 file")
    play.add_argument("--rate", type=positive_float, default=1.0, help="speed factor (default 1: as recorded)")
    play.add_argument("--start-offset", type=non_negative_float, default=0.0, metavar="S",
                      help="skip the first S seconds of the bag")
    play.add_argument("--loop", action="store_true", help="start over at the end, until Ctrl-C")
    play.add_argument("--topics", nargs="+", metavar="TOPIC", default=[],
                      help="play only these topics (default: every topic whose type is installed)")
    play.add_argument("--remap", nargs="+", metavar="FROM:=TO", default=[],
                      help="publish a bag topic under another name, e.g. /camera/image_raw:=/cam2/image_raw")
    play.add_argument("--clock", action="store_true",
                      help="publish the bag time on /clock (rosgraph_msgs/Clock) for nodes with use_sim_time")
    play.add_argument("--delay", type=non_negative_float, default=0.0, metavar="S",
                      help="wait S seconds before the first message")
    play.add_argument("--wait-for-subscribers", type=non_negative_float, default=0.0, metavar="S",
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
