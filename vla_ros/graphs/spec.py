"""Graph descriptions (`config/<graph>.yaml`): which nodes run, with which parameters and remappings.

One YAML file feeds both `ros2 launch vla_ros <graph>.launch.py` and `vla-ros launch <graph>`; both
pass the user's `name:=value` strings to `resolve_graph`, so the two cannot drift apart.

    description: one line
    arguments:
      image_size: {default: 128, description: "..."}
    nodes:
      - name: camera_ingest            # ROS node name
        executable: camera_ingest      # entry point of the vla_ros package
        required: true                 # the graph stops when it exits
        condition: $(arg use_camera)   # optional: node runs only when true (or `$(arg teleop) != none`;
                                       # comparisons join with `and` / `or`)
        parameters: {image_size: $(arg image_size)}
        remappings: {/camera/image_raw: $(arg camera_topic)}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PACKAGE = "vla_ros"
_ARG = re.compile(r"\$\(arg ([A-Za-z_][A-Za-z0-9_]*)\)")
_COMPARISON = re.compile(r"^(.*?)\s+(==|!=)\s+(.*)$")
_NODE_KEYS = {"name", "executable", "required", "condition", "parameters", "remappings", "package"}


class GraphError(ValueError):
    """A graph file or a launch argument that cannot be used; the message names it."""


@dataclass(frozen=True)
class GraphArgument:
    name: str
    default: Any
    description: str = ""

    @property
    def default_text(self) -> str:
        """The default as `ros2 launch` shows and parses it."""
        return format_value(self.default)


@dataclass(frozen=True)
class NodeSpec:
    name: str
    executable: str
    package: str = PACKAGE
    required: bool = False
    condition: Any = True
    parameters: dict[str, Any] = field(default_factory=dict)
    remappings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GraphSpec:
    name: str
    description: str
    arguments: dict[str, GraphArgument]
    nodes: tuple[NodeSpec, ...]
    path: Path | None = None


@dataclass(frozen=True)
class ResolvedNode:
    """A node ready to start: concrete parameter values and remapping pairs."""

    name: str
    executable: str
    package: str
    required: bool
    parameters: dict[str, Any]
    remappings: tuple[tuple[str, str], ...]


def format_value(value: Any) -> str:
    """A value as text that `parse_value` (and ROS's YAML parameter parser) reads back unchanged."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def parse_value(text: str, like: Any) -> Any:
    """Parse a `name:=value` string with the type of the argument's default."""
    if isinstance(like, str):
        return text
    value = yaml.safe_load(text) if text.strip() else None
    if isinstance(like, bool):
        if not isinstance(value, bool):
            raise GraphError(f"expected true or false, got '{text}'")
        return value
    if isinstance(like, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise GraphError(f"expected an integer, got '{text}'")
        return value
    if isinstance(like, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise GraphError(f"expected a number, got '{text}'")
        return float(value)
    return value


def default_config_dir() -> Path:
    """config/ of the source tree (editable install), else share/vla_ros/config of an installed package."""
    from vla_ros.core.resources import package_roots  # noqa: PLC0415

    for root in package_roots():
        if (root / "config").is_dir():
            return root / "config"
    return Path(__file__).resolve().parents[2] / "config"


def available_graphs(config_dir: Path | None = None) -> list[str]:
    directory = config_dir or default_config_dir()
    return sorted(p.stem for p in directory.glob("*.yaml"))


def find_graph_file(graph: str, config_dir: Path | None = None) -> Path:
    """A graph name (`widowx`) or a path to a YAML file → the file."""
    candidate = Path(graph)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return candidate
    directory = config_dir or default_config_dir()
    path = directory / f"{graph}.yaml"
    if not path.is_file():
        known = ", ".join(available_graphs(directory)) or "none"
        raise GraphError(f"no graph named '{graph}' in {directory}; available graphs: {known}")
    return path


def load_graph(graph: str | Path, config_dir: Path | None = None) -> GraphSpec:
    """Read and check a graph file."""
    path = find_graph_file(str(graph), config_dir)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise GraphError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("nodes"), list) or not raw["nodes"]:
        raise GraphError(f"{path} must be a mapping with a non-empty 'nodes' list")
    arguments = {}
    for name, entry in (raw.get("arguments") or {}).items():
        if not isinstance(name, str):
            # YAML 1.1 reads unquoted on/off/yes/no as booleans.
            raise GraphError(f"{path}: argument name {name!r} is not text; quote it in the YAML file")
        if not isinstance(entry, dict) or "default" not in entry:
            raise GraphError(f"{path}: argument '{name}' needs a 'default'")
        arguments[name] = GraphArgument(name, entry["default"], str(entry.get("description", "")))
    nodes = []
    for index, entry in enumerate(raw["nodes"]):
        if not isinstance(entry, dict) or "name" not in entry or "executable" not in entry:
            raise GraphError(f"{path}: node #{index + 1} needs a 'name' and an 'executable'")
        unknown = set(entry) - _NODE_KEYS
        if unknown:
            raise GraphError(f"{path}: node '{entry['name']}' has unknown keys {sorted(unknown)}")
        nodes.append(
            NodeSpec(
                name=str(entry["name"]),
                executable=str(entry["executable"]),
                package=str(entry.get("package", PACKAGE)),
                required=bool(entry.get("required", False)),
                condition=entry.get("condition", True),
                parameters=dict(entry.get("parameters") or {}),
                remappings=dict(entry.get("remappings") or {}),
            )
        )
    names = [node.name for node in nodes]
    if len(set(names)) != len(names):
        raise GraphError(f"{path}: node names must be unique, got {names}")
    spec = GraphSpec(path.stem, str(raw.get("description", "")), arguments, tuple(nodes), path)
    _check_references(spec)
    return spec


def _references(value: Any) -> set[str]:
    if isinstance(value, str):
        return set(_ARG.findall(value))
    if isinstance(value, dict):
        return set().union(*(_references(v) for v in value.values())) if value else set()
    if isinstance(value, (list, tuple)):
        return set().union(*(_references(v) for v in value)) if value else set()
    return set()


def _check_references(spec: GraphSpec) -> None:
    for node in spec.nodes:
        used = _references([node.parameters, node.remappings, node.condition])
        missing = used - set(spec.arguments)
        if missing:
            raise GraphError(f"{spec.path}: node '{node.name}' uses undeclared arguments {sorted(missing)}")


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """`["name:=value", ...]` → {name: value}."""
    overrides = {}
    for pair in pairs:
        name, sep, value = pair.partition(":=")
        if not sep or not name:
            raise GraphError(f"launch arguments are written name:=value, got '{pair}'")
        overrides[name] = value
    return overrides


def _substitute(value: Any, values: dict[str, Any]) -> Any:
    if isinstance(value, str):
        whole = _ARG.fullmatch(value)
        if whole:
            return values[whole.group(1)]  # keeps the argument's type
        return _ARG.sub(lambda m: format_value(values[m.group(1)]), value)
    if isinstance(value, dict):
        return {k: _substitute(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, values) for v in value]
    return value


def argument_values(spec: GraphSpec, overrides: dict[str, str]) -> dict[str, Any]:
    """Typed values of every argument: the defaults with the user's overrides parsed in."""
    unknown = set(overrides) - set(spec.arguments)
    if unknown:
        known = ", ".join(sorted(spec.arguments)) or "none"
        raise GraphError(f"graph '{spec.name}' has no argument {sorted(unknown)}; its arguments: {known}")
    values = {}
    for name, argument in spec.arguments.items():
        if name in overrides:
            try:
                values[name] = parse_value(overrides[name], argument.default)
            except GraphError as exc:
                raise GraphError(f"argument {name}:={overrides[name]}: {exc}") from None
        else:
            values[name] = argument.default
    return values


def _truthy(value: Any, node: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if isinstance(value, str) and " or " in value:  # comparisons joined by `or` / `and` (`and` binds tighter)
        return any(_truthy(part, node) for part in value.split(" or "))
    if isinstance(value, str) and " and " in value:
        return all(_truthy(part, node) for part in value.split(" and "))
    comparison = _COMPARISON.match(value.strip()) if isinstance(value, str) else None
    if comparison:  # `$(arg teleop) != none`, after substitution
        left, operator, right = comparison.groups()
        return (left.strip() == right.strip()) == (operator == "==")
    raise GraphError(f"condition of node '{node}' must be true, false or 'A == B' / 'A != B', got '{value}'")


def resolve_graph(spec: GraphSpec, overrides: dict[str, str] | None = None) -> list[ResolvedNode]:
    """The nodes to start, with arguments substituted and conditions applied."""
    values = argument_values(spec, overrides or {})
    resolved = []
    for node in spec.nodes:
        if not _truthy(_substitute(node.condition, values), node.name):
            continue
        remappings = _substitute(node.remappings, values)
        resolved.append(
            ResolvedNode(
                name=node.name,
                executable=node.executable,
                package=node.package,
                required=node.required,
                parameters=_substitute(node.parameters, values),
                remappings=tuple((str(src), str(dst)) for src, dst in remappings.items() if str(src) != str(dst)),
            )
        )
    return resolved
