"""Declared, described and validated node parameters (one table per node)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.node import Node


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    default: Any
    description: str
    read_only: bool = False
    # Returns a reason when the value is not acceptable, else None.
    check: Callable[[Any], str | None] | None = None


def positive(value: Any) -> str | None:
    return None if value > 0 else f"must be > 0, got {value}"


def non_negative(value: Any) -> str | None:
    return None if value >= 0 else f"must be >= 0, got {value}"


class ParameterError(ValueError):
    """A parameter value given at start-up that the node cannot run with."""


def declare_parameters(node: Node, specs: list[ParameterSpec]) -> dict[str, Any]:
    """Declare every parameter, check the start-up values, and refuse bad runtime changes with a reason."""
    by_name = {spec.name: spec for spec in specs}
    values = {}
    for spec in specs:
        descriptor = ParameterDescriptor(description=spec.description, read_only=spec.read_only)
        value = node.declare_parameter(spec.name, spec.default, descriptor).value
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
