"""The `vla-ros` command: one entry point for running graphs, talking to them and the offline tools."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Each module registers its own subcommands with `register(subparsers)`; the leaf parsers set
# `func(args) -> int`. Heavy imports (torch, mujoco, rclpy) stay inside the handlers so that
# `vla-ros --help` is instant.
COMMAND_MODULES = (
    "vla_ros.commands.ros",
    "vla_ros.commands.doctor",
    "vla_ros.commands.demo",
    "vla_ros.sim.commands",
    "vla_ros.tokenizers.commands",
    "vla_ros.bags.commands",
    "vla_ros.policy.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vla-ros",
        description="Run and inspect the vla_ros Vision-Language-Action stack.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if not (name == exc.name or name.startswith(f"{exc.name}.")):
                raise  # a dependency of the module is missing: that is a real error
            continue  # that part of the stack is not installed in this build
        module.register(subparsers)
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
