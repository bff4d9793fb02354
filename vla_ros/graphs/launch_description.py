"""Build a `launch_ros` description from a graph file; the launch/*.launch.py files are one call to this."""

from __future__ import annotations

from pathlib import Path

from vla_ros.graphs.spec import load_graph, resolve_graph


def generate_graph_launch_description(graph_file: str | Path):
    """A LaunchDescription with a DeclareLaunchArgument per graph argument and a Node per graph node."""
    from launch import LaunchDescription  # noqa: PLC0415 - only present with a ROS 2 distribution
    from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown  # noqa: PLC0415
    from launch_ros.actions import Node  # noqa: PLC0415

    spec = load_graph(graph_file)

    def make_nodes(context, *_args, **_kwargs):
        # The same resolution `vla-ros launch` applies to its name:=value strings.
        overrides = {
            name: context.launch_configurations[name]
            for name in spec.arguments
            if name in context.launch_configurations
        }
        actions = []
        for node in resolve_graph(spec, overrides):
            extra = {"on_exit": Shutdown(reason=f"required node {node.name} exited")} if node.required else {}
            actions.append(
                Node(
                    package=node.package,
                    executable=node.executable,
                    name=node.name,
                    parameters=[node.parameters],
                    remappings=list(node.remappings),
                    output="screen",
                    emulate_tty=True,
                    **extra,
                )
            )
        return actions

    declared = [
        DeclareLaunchArgument(arg.name, default_value=arg.default_text, description=arg.description)
        for arg in spec.arguments.values()
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=make_nodes)])
