"""`vla-ros launch`: start a graph's nodes, a process each, without a ROS 2 distribution's launch system."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict


def register(subparsers) -> None:
    launch = subparsers.add_parser(
        "launch",
        help="start a graph from config/GRAPH.yaml, one process per node",
        description="Start the nodes that config/GRAPH.yaml lists, one process each, with their parameters and "
        "remappings (the same graph `ros2 launch vla_ros GRAPH.launch.py` starts). Output lines are prefixed with "
        "the node name. Ctrl-C stops every node; when a required node exits the graph stops. The exit code is "
        "non-zero if any node failed.",
        epilog="example: vla-ros launch inputs image_size:=96",
    )
    launch.add_argument("graph", nargs="?", help="graph name (a file in config/) or a path to a graph YAML file")
    launch.add_argument("arguments", nargs="*", metavar="name:=value", help="graph arguments to override")
    launch.add_argument("--list", action="store_true", help="list the available graphs and exit")
    launch.add_argument("--show-args", action="store_true", help="list the graph's arguments with defaults and exit")
    launch.add_argument(
        "--print", dest="print_plan", action="store_true", help="print the resolved nodes as JSON and exit"
    )
    launch.add_argument("--grace", type=float, default=5.0, help="seconds a node gets to stop after Ctrl-C")
    launch.set_defaults(func=_launch)


def _launch(args: argparse.Namespace) -> int:
    from vla_ros.graphs.spec import (  # noqa: PLC0415
        GraphError,
        available_graphs,
        load_graph,
        parse_overrides,
        resolve_graph,
    )

    if args.list or not args.graph:
        print("graphs:", ", ".join(available_graphs()) or "none")
        return 0 if args.list else 2
    try:
        spec = load_graph(args.graph)
        if args.show_args:
            for argument in spec.arguments.values():
                print(f"{argument.name}:={argument.default_text}\n    {argument.description}")
            return 0
        nodes = resolve_graph(spec, parse_overrides(args.arguments))
        if args.print_plan:
            print(json.dumps([asdict(node) for node in nodes], indent=2))
            return 0
        from vla_ros.graphs.processes import run_graph  # noqa: PLC0415

        return run_graph(nodes, grace_s=args.grace)
    except GraphError as exc:
        print(f"vla-ros launch: {exc}", file=sys.stderr)
        return 2
