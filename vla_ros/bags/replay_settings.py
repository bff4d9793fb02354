"""The live graph's settings for an offline replay: each node's parameter defaults, overlaid with the graph file.

A graph file (`config/<graph>.yaml`) names only the parameters it changes; the rest are the nodes' own
defaults, declared in their `PARAMETERS` tables. Reading both (the tables lazily, they live in the node
modules) keeps the offline chain on exactly the settings `vla-ros launch <graph>` would use.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vla_ros.bags.errors import BagError
from vla_ros.core import topics

# Executable → module holding its PARAMETERS table.
NODE_MODULES = {
    "camera_ingest": "vla_ros.nodes.camera_ingest",
    "vla_policy": "vla_ros.nodes.vla_policy",
    "action_decoder": "vla_ros.nodes.action_decoder",
    "chunk_executor": "vla_ros.nodes.chunk_executor",
    "safety_monitor": "vla_ros.nodes.safety_monitor",
}


@dataclass
class ReplaySettings:
    graph: str
    camera_topic: str  # the raw topic camera_ingest subscribes to (after the graph's remapping)
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)  # executable → parameter values

    def __getitem__(self, executable: str) -> dict[str, Any]:
        return self.nodes[executable]


def node_defaults(executable: str) -> dict[str, Any]:
    module = importlib.import_module(NODE_MODULES[executable])
    return {spec.name: spec.default for spec in module.PARAMETERS}


def load_replay_settings(graph: str, graph_args: list[str] | None = None) -> ReplaySettings:
    """Settings of the five pipeline nodes of `graph` (a name under config/ or a YAML path) with `name:=value` args."""
    from vla_ros.core.graph import GraphError, load_graph, parse_overrides, resolve_graph

    try:
        spec = load_graph(graph)
        resolved = {node.executable: node for node in resolve_graph(spec, parse_overrides(graph_args or []))}
    except GraphError as exc:
        raise BagError(f"--graph {graph}: {exc}") from None
    missing = [name for name in NODE_MODULES if name not in resolved]
    if missing:
        raise BagError(f"graph {graph} has no {', '.join(missing)} node; replay needs the nodes "
                       f"{', '.join(NODE_MODULES)}")
    nodes = {}
    for executable in NODE_MODULES:
        values = node_defaults(executable)
        unknown = set(resolved[executable].parameters) - set(values)
        if unknown:
            raise BagError(f"graph {graph}: node {executable} has no parameter {sorted(unknown)}")
        values.update(resolved[executable].parameters)
        nodes[executable] = values
    camera = dict(resolved["camera_ingest"].remappings).get(topics.CAMERA_IMAGE, topics.CAMERA_IMAGE)
    if nodes["camera_ingest"]["source"] != "topic":
        raise BagError(f"graph {graph}: camera_ingest reads source={nodes['camera_ingest']['source']!r}, not a "
                       "topic; replay feeds camera frames from the bag")
    return ReplaySettings(graph=str(Path(graph).stem), camera_topic=camera, nodes=nodes)
