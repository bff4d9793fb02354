"""Graph files: parsing, typed arguments, errors, and the launch file and `vla-ros launch` agreeing on one YAML."""

import json
import runpy
import sys
import types
from pathlib import Path

import pytest
from ros_harness import REPO, run_cli

from vla_ros.graphs.spec import GraphError, available_graphs, load_graph, parse_overrides, resolve_graph

GRAPHS = available_graphs(REPO / "config")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "g.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_every_shipped_graph_has_a_launch_file_and_resolves():
    assert GRAPHS, "config/ has no graph"
    for graph in GRAPHS:
        assert (REPO / "launch" / f"{graph}.launch.py").is_file(), f"launch/{graph}.launch.py is missing"
        nodes = resolve_graph(load_graph(graph, REPO / "config"))
        assert nodes and all(node.package == "vla_ros" for node in nodes)


def test_widowx_policy_infers_on_every_simulated_camera_frame_by_default():
    # The chunk adopted at a window's end should come from the newest frame: at half the camera rate it came
    # from a frame ~1 control step older and stacking through ROS fell 20-35 points (CHANGELOG.md).
    nodes = {node.name: node for node in resolve_graph(load_graph("widowx", REPO / "config"))}
    assert nodes["vla_policy"].parameters["inference_rate"] >= nodes["widowx_sim"].parameters["camera_rate"]
    slower = {node.name: node for node in resolve_graph(load_graph("widowx", REPO / "config"),
                                                         {"inference_rate": "5"})}
    assert slower["vla_policy"].parameters["inference_rate"] == 5.0


def test_arguments_are_typed_like_their_defaults(tmp_path):
    spec = load_graph(write(tmp_path, """
arguments:
  size: {default: 128}
  rate: {default: 5.0}
  enabled: {default: true}
  topic: {default: /camera/image_raw}
nodes:
  - name: a
    executable: camera_ingest
    condition: $(arg enabled)
    parameters: {image_size: $(arg size), rate: $(arg rate), label: "size=$(arg size)"}
    remappings: {/camera/image_raw: $(arg topic), /x: /x}
"""))
    (node,) = resolve_graph(spec, parse_overrides(["size:=96", "rate:=20", "topic:=/wrist/image"]))
    assert node.parameters == {"image_size": 96, "rate": 20.0, "label": "size=96"}
    assert isinstance(node.parameters["rate"], float)
    assert node.remappings == (("/camera/image_raw", "/wrist/image"),)  # identity remaps are dropped
    assert resolve_graph(spec, {"enabled": "false"}) == []


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["size:=big"], "argument size:=big: expected an integer"),
        (["enabled:=maybe"], "expected true or false"),
        (["nope:=1"], "has no argument ['nope']"),
        (["size=3"], "written name:=value"),
    ],
)
def test_bad_arguments_are_named(tmp_path, overrides, fragment):
    spec = load_graph(write(tmp_path, """
arguments: {size: {default: 1}, enabled: {default: true}}
nodes: [{name: a, executable: camera_ingest, condition: $(arg enabled), parameters: {s: $(arg size)}}]
"""))
    with pytest.raises(GraphError) as info:
        resolve_graph(spec, parse_overrides(overrides))
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("nodes: []", "non-empty 'nodes' list"),
        ("nodes: [{name: a}]", "needs a 'name' and an 'executable'"),
        ("nodes: [{name: a, executable: b, params: {}}]", "unknown keys ['params']"),
        ("nodes: [{name: a, executable: b}, {name: a, executable: c}]", "must be unique"),
        ("nodes: [{name: a, executable: b, parameters: {x: $(arg missing)}}]", "undeclared arguments ['missing']"),
        ("nodes: [ {", "not valid YAML"),
        ("arguments: {on: {default: 1}}\nnodes: [{name: a, executable: b}]", "argument name True is not text"),
    ],
)
def test_bad_graph_files_are_named(tmp_path, text, fragment):
    with pytest.raises(GraphError) as info:
        load_graph(write(tmp_path, text))
    assert fragment in str(info.value)


def test_unknown_graph_lists_the_known_ones():
    with pytest.raises(GraphError, match="available graphs: .*inputs"):
        load_graph("no_such_graph", REPO / "config")


class _Recorder:
    """Stand-in for one launch action class: remembers its constructor arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def _launch_stand_ins() -> dict[str, types.ModuleType]:
    """Minimal `launch` and `launch_ros` modules (not installable from PyPI) that record what the launch file builds."""
    launch = types.ModuleType("launch")
    launch.LaunchDescription = type("LaunchDescription", (_Recorder,), {})
    actions = types.ModuleType("launch.actions")
    for name in ("DeclareLaunchArgument", "OpaqueFunction", "Shutdown"):
        setattr(actions, name, type(name, (_Recorder,), {}))
    launch.actions = actions
    launch_ros = types.ModuleType("launch_ros")
    ros_actions = types.ModuleType("launch_ros.actions")
    ros_actions.Node = type("Node", (_Recorder,), {})
    launch_ros.actions = ros_actions
    return {"launch": launch, "launch.actions": actions, "launch_ros": launch_ros, "launch_ros.actions": ros_actions}


def nodes_from_launch_file(graph: str, overrides: dict[str, str], monkeypatch) -> list[dict]:
    for name, module in _launch_stand_ins().items():
        monkeypatch.setitem(sys.modules, name, module)
    description = runpy.run_path(str(REPO / "launch" / f"{graph}.launch.py"))["generate_launch_description"]()
    (actions,) = description.args
    declared = [a for a in actions if type(a).__name__ == "DeclareLaunchArgument"]
    (opaque,) = [a for a in actions if type(a).__name__ == "OpaqueFunction"]
    # What `ros2 launch … name:=value` puts in the context: declared defaults, then the user's values.
    configurations = {a.args[0]: a.kwargs["default_value"] for a in declared}
    configurations.update(overrides)
    context = types.SimpleNamespace(launch_configurations=configurations)
    nodes = opaque.kwargs["function"](context)
    return [
        {
            "name": n.kwargs["name"],
            "executable": n.kwargs["executable"],
            "package": n.kwargs["package"],
            "required": "on_exit" in n.kwargs,
            "parameters": n.kwargs["parameters"][0],
            "remappings": [list(pair) for pair in n.kwargs["remappings"]],
        }
        for n in nodes
    ]


@pytest.mark.parametrize("graph", GRAPHS)
@pytest.mark.parametrize("overrides", [{}, {"image_size": "96", "camera_topic": "/wrist/image_raw"}])
def test_launch_file_and_vla_ros_launch_start_the_same_nodes(graph, overrides, monkeypatch):
    spec = load_graph(graph, REPO / "config")
    overrides = {k: v for k, v in overrides.items() if k in spec.arguments}
    from_launch = nodes_from_launch_file(graph, overrides, monkeypatch)
    result = run_cli("launch", graph, *(f"{k}:={v}" for k, v in overrides.items()), "--print")
    assert result.returncode == 0, result.stderr
    from_cli = json.loads(result.stdout)
    assert from_launch == from_cli
    if overrides and "image_size" in overrides:
        assert any(n["parameters"].get("image_size") == 96 for n in from_cli)
