"""Declared, described and validated node parameters, generated from the stages' settings dataclasses."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.node import Node

from vla_ros.core.settings import check_value, normalized, setting_specs


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    default: Any
    description: str
    read_only: bool = False
    # Returns a reason when the value is not acceptable, else None.
    check: Callable[[Any], str | None] | None = None


class ParameterError(ValueError):
    """A parameter value given at start-up that the node cannot run with."""


def declare_parameters(node: Node, specs: list[ParameterSpec]) -> dict[str, Any]:
    """Declare every parameter, check the start-up values, and refuse bad runtime changes with a reason."""
    by_name = {spec.name: spec for spec in specs}
    values = {}
    for spec in specs:
        descriptor = ParameterDescriptor(description=spec.description, read_only=spec.read_only)
        default = list(spec.default) if isinstance(spec.default, tuple) else spec.default
        value = node.declare_parameter(spec.name, default, descriptor).value
        reason = spec.check(value) if spec.check else None
        if reason:
            raise ParameterError(f"parameter {spec.name}={value!r} {reason}")
        values[spec.name] = value

    def on_set(parameters) -> SetParametersResult:
        for parameter in parameters:
            spec = by_name.get(parameter.name)
            if spec is None or spec.check is None:
                continue
            reason = spec.check(parameter.value)
            if reason:
                return SetParametersResult(successful=False, reason=f"{parameter.name} {reason}")
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)
    return values


class SettingsParameters:
    """A node's parameters generated from a settings dataclass; `.value` is the current, checked settings object.

    Read-only settings are fixed at start-up; a change of the others is checked like a start-up value and, when
    accepted, replaces `.value` (the stage holding the old object is given the new one through `on_change`).
    """

    def __init__(self, node: Node, cls, on_change: Callable[[Any], None] | None = None):
        specs = setting_specs(cls)
        by_name = {spec.name: spec for spec in specs}
        values = declare_parameters(node, [ParameterSpec(s.name, s.default, s.description, s.read_only,
                                                         lambda v, s=s: check_value(s, v)) for s in specs])
        try:
            self.value = cls(**{name: normalized(by_name[name], v) for name, v in values.items()})
        except ValueError as exc:
            raise ParameterError(str(exc)) from None

        def apply(parameters) -> SetParametersResult:
            changes = {p.name: normalized(by_name[p.name], p.value) for p in parameters if p.name in by_name}
            if changes:
                try:
                    self.value = dataclasses.replace(self.value, **changes)
                except ValueError as exc:
                    return SetParametersResult(successful=False, reason=str(exc))
                if on_change is not None:
                    on_change(self.value)
            return SetParametersResult(successful=True)

        node.add_on_set_parameters_callback(apply)

