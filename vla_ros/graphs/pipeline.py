"""A graph file's pipeline settings, for the drivers that run the stages without launching the nodes.

Offline replay and in-process evaluation read the same `config/<graph>.yaml` as `vla-ros launch`: each
pipeline node's parameters become its stage's settings dataclass (defaults from the dataclass, values from
the graph and its `name:=value` arguments), checked the way the node checks them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vla_ros.core import topics
from vla_ros.core.executor import ExecutorSettings
from vla_ros.core.settings import SettingsError, build_settings
from vla_ros.core.stages.decoder import DecoderSettings
from vla_ros.core.stages.gate import SafetySettings
from vla_ros.core.stages.ingest import IngestSettings
from vla_ros.core.stages.policy import PolicySettings

# Executable → its settings dataclass: the one declaration of each node's parameters.
NODE_SETTINGS = {
    "camera_ingest": IngestSettings,
    "vla_policy": PolicySettings,
    "action_decoder": DecoderSettings,
    "chunk_executor": ExecutorSettings,
    "safety_monitor": SafetySettings,
}


# Absent from a graph whose vla_policy publishes continuous chunks (backend remote): its defaults stand in.
OPTIONAL_NODES = {"action_decoder"}


class PipelineError(ValueError):
    """A graph that offline drivers cannot use; the message names the graph and what is wrong."""


@dataclass(frozen=True)
class PipelineSettings:
    graph: str
    camera_topic: str  # the raw topic camera_ingest subscribes to (after the graph's remapping)
    ingest: IngestSettings
    policy: PolicySettings
    decoder: DecoderSettings
    executor: ExecutorSettings
    safety: SafetySettings
    # each of camera_ingest's extra_cameras → the raw topic it subscribes to (after the graph's remapping)
    extra_camera_topics: dict = field(default_factory=dict)

    def by_node(self) -> dict:
        return {"camera_ingest": self.ingest, "vla_policy": self.policy, "action_decoder": self.decoder,
                "chunk_executor": self.executor, "safety_monitor": self.safety}


def pipeline_settings(graph: str = "widowx", graph_args: list[str] | None = None) -> PipelineSettings:
    """The five pipeline nodes' settings in `graph` (a name under config/ or a YAML path) with `name:=value` args."""
    from vla_ros.graphs.spec import GraphError, load_graph, parse_overrides, resolve_graph

    try:
        spec = load_graph(graph)
        resolved = {node.executable: node for node in resolve_graph(spec, parse_overrides(graph_args or []))}
    except GraphError as exc:
        raise PipelineError(f"graph {graph}: {exc}") from None
    missing = [name for name in NODE_SETTINGS if name not in resolved and name not in OPTIONAL_NODES]
    if missing:
        raise PipelineError(f"graph {graph} has no {', '.join(missing)} node; the pipeline needs the nodes "
                            f"{', '.join(NODE_SETTINGS)}")
    settings = {}
    for executable, cls in NODE_SETTINGS.items():
        try:
            parameters = resolved[executable].parameters if executable in resolved else {}
            settings[executable] = build_settings(cls, parameters, where=f"node {executable}")
        except SettingsError as exc:
            raise PipelineError(f"graph {graph}: {exc}") from None
    remapped = dict(resolved["camera_ingest"].remappings)
    extra = {name: remapped.get(topics.camera_image(name), topics.camera_image(name))
             for name in topics.camera_names(settings["camera_ingest"].extra_cameras)}
    camera = remapped.get(topics.CAMERA_IMAGE, topics.CAMERA_IMAGE)
    return PipelineSettings(graph=Path(str(graph)).stem, camera_topic=camera,
                            ingest=settings["camera_ingest"], policy=settings["vla_policy"],
                            decoder=settings["action_decoder"], executor=settings["chunk_executor"],
                            safety=settings["safety_monitor"], extra_camera_topics=extra)
