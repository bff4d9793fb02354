"""One pipeline, several drivers: the core imports nothing heavy, every setting has one source, and the stages give
byte-identical outputs (canonical CDR) whether they are driven with the nodes' rclpy messages or with offline
replay's rosbags messages, for every executor setting."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from vla_ros.core.settings import SettingsError, build_settings, setting_specs
from vla_ros.graphs.pipeline import NODE_SETTINGS, PipelineError, pipeline_settings
from vla_ros.graphs.spec import load_graph

DATA = Path(__file__).parent / "data" / "replay"
EPISODE, POLICY = DATA / "episode", DATA / "policy"
REPO = Path(__file__).resolve().parents[1]


def test_every_core_module_imports_without_rclpy_mujoco_or_torch():
    code = """
import importlib, pkgutil, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('rclpy', 'mujoco', 'torch'):
            raise ImportError(f'{name} is blocked')
sys.meta_path.insert(0, Block())
import vla_ros.core
names = [m.name for m in pkgutil.walk_packages(vla_ros.core.__path__, 'vla_ros.core.')]
for name in names:
    importlib.import_module(name)
print(len(names))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 20  # the walk reached the stages, the safety rules and the executor


@pytest.mark.parametrize("executable", sorted(NODE_SETTINGS))
def test_each_node_declares_exactly_its_settings_fields(executable):
    """The node's ROS parameter table is generated from the dataclass: names, defaults and descriptions match."""
    import rclpy
    from rclpy.node import Node

    from vla_ros.nodes.parameters import SettingsParameters

    cls = NODE_SETTINGS[executable]
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = Node(f"settings_probe_{executable}", context=context)
        declared = SettingsParameters(node, cls).value
        assert declared == cls()
        names = {p.name for p in node._parameters.values()} - {"use_sim_time", "start_type_description_service"}
        assert names == {spec.name for spec in setting_specs(cls)}
        for spec in setting_specs(cls):
            descriptor = node.describe_parameter(spec.name)
            assert descriptor.description == spec.description and descriptor.read_only == spec.read_only
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_a_bad_setting_is_named_once():
    from vla_ros.core.executor import ExecutorSettings

    with pytest.raises(SettingsError, match="execute_steps=0 must be > 0"):
        build_settings(ExecutorSettings, {"execute_steps": 0})
    with pytest.raises(SettingsError, match="no setting exec_steps"):
        build_settings(ExecutorSettings, {"exec_steps": 3})
    with pytest.raises(PipelineError, match="graph widowx"):
        pipeline_settings("widowx", ["execute_steps:=0"])


def _changed(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return {"builtin-torch": "builtin-onnx", "torch": "onnx"}.get(value, value + "_changed")
    return value


def test_every_graph_argument_reaches_the_pipeline_settings_or_another_node():
    """A graph argument that feeds a pipeline node's parameter changes what replay and evaluation build."""
    spec = load_graph("widowx")
    default = pipeline_settings("widowx")
    pipeline_params = {(node.executable, name): value for node in spec.nodes if node.executable in NODE_SETTINGS
                       for name, value in node.parameters.items()}
    checked = 0
    for name, argument in spec.arguments.items():
        feeds = [(executable, param) for (executable, param), value in pipeline_params.items()
                 if isinstance(value, str) and f"$(arg {name})" in value]
        if not feeds or not isinstance(argument.default, (bool, int, float)):
            continue
        changed = pipeline_settings("widowx", [f"{name}:={str(_changed(argument.default)).lower()}"])
        for executable, param in feeds:
            before = getattr(default.by_node()[executable], param)
            after = getattr(changed.by_node()[executable], param)
            assert after != before, f"graph argument {name} does not reach {executable}.{param}"
            checked += 1
    assert checked >= 6  # control_rate, execute_steps, blend, observe_after_window, inference_rate, temperature, ...


NUMPY_TYPES = {"double": "float64", "float": "float32", "int32": "int32", "uint32": "uint32", "int8": "int8",
               "uint8": "uint8", "int64": "int64", "uint64": "uint64", "int16": "int16", "uint16": "uint16"}


def _as_rosbags(message, msgtype: str):
    """An rclpy message as the rosbags message of the same type, field by field."""
    import numpy as np

    from vla_ros.bags.message_types import typestore

    def value(field_type: str, v):
        if field_type.startswith("sequence<"):
            inner = field_type[len("sequence<"):-1].split(",")[0]
            if inner in NUMPY_TYPES:
                return np.frombuffer(bytes(v), np.uint8) if inner == "uint8" else np.array(v, NUMPY_TYPES[inner])
            return [value(inner, item) for item in v]
        if "/" in field_type:
            package, name = field_type.split("/")
            return _as_rosbags(v, f"{package}/msg/{name}")
        return v

    fields = message.get_fields_and_field_types()
    return typestore().types[msgtype](**{name: value(t, getattr(message, name)) for name, t in fields.items()})


def _replay_outputs(settings, kit_name: str) -> list[tuple[str, int, bytes]]:
    """The bag through the stages: with rosbags' classes (offline replay) or rclpy's (the nodes)."""
    from vla_ros.bags.reading import BagReader
    from vla_ros.bags.replay import ReplayOptions, ReplayPipeline, _Inputs, _load_models, drive
    from vla_ros.bags.replay_messages import OUTPUT_TYPES, deserialize, rosbags_kit, serialize

    if kit_name == "rclpy":
        import importlib

        from rclpy.serialization import deserialize_message, serialize_message

        from vla_ros.nodes.messages import RCLPY as kit

        def read(data: bytes, msgtype: str):
            package, module, name = msgtype.split("/")
            return deserialize_message(data, getattr(importlib.import_module(f"{package}.{module}"), name))

        def write(message, msgtype: str) -> bytes:
            # Canonical CDR: rclpy's serialized buffer leaves alignment padding and a tail uninitialized, so the
            # message is written field by field with the serializer replay uses (after a round trip through rclpy's).
            return serialize(_as_rosbags(deserialize_message(serialize_message(message), type(message)), msgtype),
                             msgtype)
    else:
        kit, read, write = rosbags_kit(), deserialize, serialize
    outputs = []
    with BagReader(EPISODE) as reader:
        inputs = _Inputs(reader, settings, None)
        source, tokenizer, _, _ = _load_models(settings, ReplayOptions(bag=EPISODE, out=Path("unused"),
                                                                       policy=POLICY))
        pipeline = ReplayPipeline(settings, source, tokenizer,
                                  lambda topic, t, m: outputs.append((topic, t, write(m, OUTPUT_TYPES[topic]))), kit)
        drive(pipeline, reader, inputs, None, read)
    return outputs


EXECUTOR_VARIANTS = {
    "defaults": {},
    "blend": {"blend": True},
    "observe_after_window": {"observe_after_window": True},
    "one_step_windows": {"execute_steps": 1},
    "integrate_on_from_the_target": {"chunk_anchor": "target"},
    "ten_hertz": {"control_rate": 10.0},
    "short_joint_timeout": {"joint_state_timeout": 0.05, "reanchor_after": 0.0},
}


@pytest.mark.parametrize("variant", sorted(EXECUTOR_VARIANTS))
def test_nodes_messages_and_replay_messages_give_byte_identical_outputs(variant):
    settings = pipeline_settings("widowx", ["image_size:=64"])
    settings = dataclasses.replace(settings, executor=dataclasses.replace(settings.executor,
                                                                           **EXECUTOR_VARIANTS[variant]))
    replayed = _replay_outputs(settings, "rosbags")
    through_rclpy = _replay_outputs(settings, "rclpy")
    assert [m[:2] for m in through_rclpy] == [m[:2] for m in replayed]
    assert through_rclpy == replayed
    assert sum(topic == "/wx250s/arm_controller/joint_trajectory" for topic, _, _ in replayed) > 3


def test_replay_runs_the_graphs_settings_objects_and_a_changed_setting_changes_its_output():
    """Offline replay once ignored observe_after_window: now every stage holds the graph's settings object itself."""
    from vla_ros.bags.replay import ReplayPipeline
    from vla_ros.bags.replay_messages import rosbags_kit
    from vla_ros.tokenizers.loading import load_tokenizer

    settings = pipeline_settings("widowx", ["image_size:=64", "observe_after_window:=true", "execute_steps:=2"])
    tokenizer = load_tokenizer(POLICY / "tokenizer")
    source = type("Source", (), {"identity": tokenizer.identity, "image_size": None})()
    pipeline = ReplayPipeline(settings, source, tokenizer, lambda *a: None, rosbags_kit())
    assert pipeline.ingest.settings is settings.ingest and pipeline.policy.settings is settings.policy
    assert pipeline.decoder.settings is settings.decoder and pipeline.loop.settings is settings.executor
    assert pipeline.loop.executor.config is settings.executor and pipeline.gate.settings is settings.safety
    base = pipeline_settings("widowx", ["image_size:=64"])
    one_step = pipeline_settings("widowx", ["image_size:=64", "execute_steps:=1"])
    commands = [[m for m in _replay_outputs(s, "rosbags") if m[0] == "/vla/arm_command"] for s in (base, one_step)]
    assert commands[0] != commands[1]
