"""`vla-ros teleop`: the keyboard teleop's terminal UI, and switching control between teleop and the policy."""

from __future__ import annotations

import argparse
import sys

from vla_ros.commands.argument_types import positive_float


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "teleop", help="drive the arm from the keyboard, or switch control between teleop and the policy",
        description="--keyboard: a terminal UI that shows the key bindings and publishes the keyboard as a virtual "
                    "joystick (sensor_msgs/Joy on /vla/teleop/keyboard) for the graph's teleop node (vla-ros launch "
                    "widowx teleop:=keyboard). Its 7-D end-effector deltas go through the chunk executor and the "
                    "safety monitor like the policy's chunks. --mode teleop|policy: hand control to teleop or "
                    "back to the policy (the chunk executor's /vla/teleop/engage service; shown on /diagnostics "
                    "and /vla/control_mode). docs/demonstrations.md.")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--keyboard", action="store_true", help="run the keyboard teleop UI in this terminal")
    what.add_argument("--mode", choices=("teleop", "policy"), help="give control to teleop or to the policy")
    parser.add_argument("--topic", default="/vla/teleop/keyboard",
                        help="Joy topic of the keyboard (default /vla/teleop/keyboard, the teleop node's for "
                             "teleop:=keyboard)")
    parser.add_argument("--rate", type=positive_float, default=20.0, help="Joy messages per second (default 20)")
    parser.add_argument("--hold", type=positive_float, default=0.3,
                        help="seconds a key press counts as held (default 0.3; a held key repeats)")
    parser.add_argument("--timeout", type=positive_float, default=10.0,
                        help="--mode: seconds to wait for the chunk executor (default 10)")
    parser.set_defaults(func=_teleop)


def _teleop(args: argparse.Namespace) -> int:
    if args.mode:
        from vla_ros.teleop.console import switch_mode

        ok, message = switch_mode(args.mode, args.timeout)
        print(message if ok else f"vla-ros teleop: {message}", file=sys.stdout if ok else sys.stderr)
        return 0 if ok else 1
    from vla_ros.teleop.console import run_keyboard

    return run_keyboard(args.topic, args.rate, args.hold)
