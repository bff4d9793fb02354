"""`vla-ros record-demos`: record demonstrations from the running graph, one bag per episode."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vla_ros.commands.argument_types import non_negative_int, positive_float


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "record-demos", help="record demonstration episodes from the running graph, one bag each",
        description="Record demonstrations from the running graph (e.g. vla-ros launch widowx teleop:=joy): one "
                    "bag per episode in OUT/episode_NNNN with the camera(s), /joint_states, the executed 7-D action "
                    "stream (/vla/executed_action, one message per control step), the task, the control mode, and "
                    "start/stop marks with the success label on /vla/demos/mark. Keys: b begins an episode, y stops "
                    "it as a success, n as a failure, x discards the last (or the running) episode, q quits; the "
                    "joystick's buttons and the /vla/demos/start, /vla/demos/stop (std_srvs/SetBool: success) and "
                    "/vla/demos/discard services do the same. OUT/episodes.csv keeps the running table. Then: vla-ros "
                    "data import OUT --out DATASET. docs/demonstrations.md.")
    parser.add_argument("-o", "--out", type=Path, required=True, help="output folder (created; an existing one is "
                        "continued: numbering goes on after its episodes)")
    parser.add_argument("--instruction", default="",
                        help="send this instruction at start (else the task on /vla/task is recorded)")
    parser.add_argument("--camera", dest="cameras", nargs="+", default=["/camera/image_raw"], metavar="TOPIC",
                        help="camera image topics to record (default /camera/image_raw)")
    parser.add_argument("--episodes", type=non_negative_int, default=0,
                        help="stop once this run has kept this many episodes (default 0: until q or Ctrl-C)")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="bag storage (default mcap)")
    parser.add_argument("--wait", type=positive_float, default=20.0,
                        help="seconds to wait for the graph's topics (default 20)")
    parser.set_defaults(func=_record)


def _record(args: argparse.Namespace) -> int:
    from vla_ros.bags.errors import BagError
    from vla_ros.demos.recorder import DemoRecorder, RecorderOptions
    from vla_ros.teleop.terminal import KeyReader

    if args.out.exists() and not args.out.is_dir():
        raise SystemExit(f"vla-ros record-demos: --out {args.out} is a file; give a folder")
    bad = [t for t in args.cameras if not t.startswith("/")]
    if bad:
        raise SystemExit(f"vla-ros record-demos: --camera {bad[0]} is not an absolute topic name (start it with '/')")
    options = RecorderOptions(out=args.out, cameras=args.cameras, instruction=args.instruction, storage=args.storage,
                              wait_s=args.wait, episodes=args.episodes)
    recorder = DemoRecorder(options, say=lambda text: print(text, flush=True))
    try:
        with KeyReader() as keys:
            table = recorder.run(keys)
    except BagError as exc:
        print(f"vla-ros record-demos: {exc}", file=sys.stderr)
        return 1
    kept, successful = table.counts()
    print(f"{kept} episodes kept in {args.out} ({successful} successful); next: vla-ros data import {args.out} "
          f"--out DATASET", flush=True)
    return 0
