"""Settings as frozen dataclasses: each field carries its default, description, read-only flag and check.

A stage's settings class is the only place a setting is declared. The nodes generate their ROS parameter
tables from it (`vla_ros.nodes.parameters`), and offline replay and evaluation build it from the graph
file (`settings_for_node`), so a graph argument means the same thing to every driver.

    @dataclass(frozen=True)
    class ExecutorSettings(Settings):
        control_rate: float = setting(CONTROL_RATE_HZ, "Control loop rate in Hz.", check=positive)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping

# BridgeData's WidowX control rate: the data set, the simulator, the decoder's step spacing and the executor share it.
CONTROL_RATE_HZ = 5.0
CONTROL_PERIOD_S = 1.0 / CONTROL_RATE_HZ

Check = Callable[[Any], "str | None"]


class SettingsError(ValueError):
    """A setting value a stage cannot run with; the message names the setting and what is accepted."""


def setting(default: Any, description: str, *, read_only: bool = True, check: Check | None = None,
            node_only: bool = False) -> Any:
    """A dataclass field with the metadata every driver reads.

    `read_only` settings cannot change while a node runs (ROS parameter descriptor). `node_only` marks a
    setting that only a live node uses (a thread priority, a camera device), which offline drivers ignore.
    List defaults are stored as tuples: settings are immutable.
    """
    metadata = {"description": description, "read_only": read_only, "check": check, "node_only": node_only}
    if isinstance(default, list):
        default = tuple(default)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class SettingSpec:
    name: str
    default: Any
    description: str
    read_only: bool
    check: Check | None
    node_only: bool


def setting_specs(cls) -> list[SettingSpec]:
    """The declared settings of a settings dataclass, in declaration order."""
    specs = []
    for f in dataclasses.fields(cls):
        if "description" not in f.metadata:
            raise TypeError(f"{cls.__name__}.{f.name} is not declared with setting()")
        specs.append(SettingSpec(f.name, f.default, f.metadata["description"], f.metadata["read_only"],
                                 f.metadata["check"], f.metadata["node_only"]))
    return specs


def check_value(spec: SettingSpec, value: Any) -> str | None:
    """Why `value` is not acceptable for `spec` (type or check), or None."""
    default = spec.default
    if isinstance(default, bool):
        if not isinstance(value, bool):
            return f"must be true or false, got {value!r}"
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be an integer, got {value!r}"
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, got {value!r}"
    elif isinstance(default, str):
        if not isinstance(value, str):
            return f"must be a string, got {value!r}"
    elif isinstance(default, tuple):
        if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
            return f"must be a list, got {value!r}"
    return spec.check(value) if spec.check else None


def normalized(spec: SettingSpec, value: Any) -> Any:
    """`value` in the field's own type: an integer for a float setting as a float, a list as a tuple."""
    if isinstance(spec.default, float) and not isinstance(value, bool) and isinstance(value, (int, float)):
        return float(value)
    if isinstance(spec.default, tuple):
        return tuple(value)
    return value


def build_settings(cls, values: Mapping[str, Any] | None = None, *, where: str = ""):
    """`cls` with `values` over its defaults; unknown names and bad values raise SettingsError naming them."""
    values = dict(values or {})
    specs = {spec.name: spec for spec in setting_specs(cls)}
    prefix = f"{where}: " if where else ""
    unknown = sorted(set(values) - set(specs))
    if unknown:
        raise SettingsError(f"{prefix}no setting {', '.join(unknown)}; known: {', '.join(specs)}")
    for name, value in values.items():
        reason = check_value(specs[name], value)
        if reason:
            raise SettingsError(f"{prefix}{name}={value!r} {reason}")
    return cls(**{name: normalized(specs[name], value) for name, value in values.items()})


class Settings:
    """Base of the settings dataclasses: a value that fails its check is refused at construction too."""

    def __post_init__(self):
        for spec in setting_specs(type(self)):
            reason = check_value(spec, getattr(self, spec.name))
            if reason:
                raise SettingsError(f"{spec.name}={getattr(self, spec.name)!r} {reason}")


def as_dict(settings) -> dict[str, Any]:
    """Setting name → value (lists for tuples), e.g. for a results file."""
    return {f.name: list(v) if isinstance(v := getattr(settings, f.name), tuple) else v
            for f in dataclasses.fields(settings)}


# ------------------------------------------------------------------------------------------- checks
def positive(value: Any) -> str | None:
    return None if value > 0 else f"must be > 0, got {value}"


def non_negative(value: Any) -> str | None:
    return None if value >= 0 else f"must be >= 0, got {value}"


def one_of(*choices: str) -> Check:
    return lambda value: None if value in choices else f"must be one of {', '.join(choices)}"


def length(n: int) -> Check:
    return lambda value: None if len(value) == n else f"must have {n} entries, got {len(value)}"
