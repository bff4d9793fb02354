"""The `vla-ros` command: one entry point for running graphs, talking to them and the offline tools."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Argument parsing lives in vla_ros/commands/ only, one module per command (or family of commands): each
# registers its subcommands with `register(subparsers)`, and the leaf parsers set `func(args) -> int`.
# Heavy imports (torch, mujoco, rclpy) stay inside the handlers so that `vla-ros --help` is instant.
COMMAND_MODULES = (
    "vla_ros.commands.say",  # say
    "vla_ros.commands.launch",  # launch
    "vla_ros.commands.doctor",  # doctor
    "vla_ros.commands.demo",  # demo
    "vla_ros.commands.data",  # data generate|info|import|export
    "vla_ros.commands.teleop",  # teleop --keyboard | --mode
    "vla_ros.commands.demos",  # record-demos
    "vla_ros.commands.sim",  # sim run
    "vla_ros.commands.tokenizer",  # tokenizer train|compare|export-onnx
    "vla_ros.commands.bag",  # bag record|play|info
    "vla_ros.commands.replay",  # replay
    "vla_ros.commands.sanity",  # sanity replay-actions|policy-actions
    "vla_ros.commands.policy",  # train, eval, export-policy
    "vla_ros.commands.finetune",  # finetune
    "vla_ros.commands.align",  # prefs generate|reward|label|info, align
    "vla_ros.commands.view",  # view
    "vla_ros.commands.serve",  # serve
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vla-ros",
        description="Run and inspect the vla_ros Vision-Language-Action stack.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Headless by default: MuJoCo renders through EGL unless the user chose another backend.
    os.environ.setdefault("MUJOCO_GL", "egl")
    # Faster Fast DDS discovery for this process and every process it starts, unless the user chose a profile.
    from vla_ros.core.dds_profile import use_discovery_profile

    use_discovery_profile()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
