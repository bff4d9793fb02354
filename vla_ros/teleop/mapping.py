"""A joystick's axes and buttons → a 7-D end-effector delta in the Bridge convention (no rclpy).

A mapping (YAML, e.g. `config/teleop/joy.yaml`) names, for each motion dimension `dx … dyaw`, an axis (or a
pair of plus/minus buttons) and the delta per control step at full deflection; a deadman button that must be
held for any motion (released: zero motion, the arm stays where it is); speed presets that scale every motion
dimension; and how the gripper (an absolute opening, 1 = open, 0 = closed, as the Bridge data) is set. Button
presses (edges) raise events: switching the control mode and marking demonstration episodes.

    deadman_button: 4                 # null: no deadman (a SpaceMouse springs back to rest by itself)
    deadzone: 0.1
    speeds: [0.25, 0.5, 1.0]          # speed_button cycles these; initial_speed is an index
    limits: {translation: 0.03, rotation: 0.3}   # per control step, after scaling (m, rad)
    motion:   {dx: {axis: 1, scale: 0.03}, dz: {buttons: [13, 14], scale: 0.03}, ...}
    gripper:  {close_button: 0, open_button: 1}  # or {toggle_button: 0} or {axis: 5, closed_below: 0.0}
    events:   {toggle_mode: 6, start_episode: 7, stop_success: 3, stop_failure: 2, discard_episode: 10}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml

from vla_ros.core.action_chunks import ACTION_NAMES

MOTION = ACTION_NAMES[:6]
TRANSLATION, ROTATION = MOTION[:3], MOTION[3:]
GRIPPER = 6
EVENTS = ("toggle_mode", "start_episode", "stop_success", "stop_failure", "discard_episode")
_TOP_KEYS = {"name", "deadman_button", "deadzone", "speeds", "initial_speed", "speed_button", "limits", "motion",
             "gripper", "events"}


class MappingError(ValueError):
    """A mapping file or entry that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class MotionBinding:
    """One motion dimension: an axis, or (plus, minus) buttons, and the delta per step at full deflection."""

    scale: float
    axis: int | None = None
    buttons: tuple[int, int] | None = None


@dataclass(frozen=True)
class GripperBinding:
    close_button: int | None = None
    open_button: int | None = None
    toggle_button: int | None = None
    axis: int | None = None
    closed_below: float = 0.0  # with `axis`: closed while the axis reads below this


@dataclass(frozen=True)
class JoyMapping:
    motion: dict[str, MotionBinding]
    gripper: GripperBinding
    deadman_button: int | None = None
    deadzone: float = 0.1
    speeds: tuple[float, ...] = (1.0,)
    initial_speed: int = 0
    speed_button: int | None = None
    max_translation: float = 0.03
    max_rotation: float = 0.3
    events: dict[str, int] = field(default_factory=dict)
    name: str = ""

    def buttons_used(self) -> list[int]:
        used = [b for b in (self.deadman_button, self.speed_button, self.gripper.close_button,
                            self.gripper.open_button, self.gripper.toggle_button) if b is not None]
        used += [b for binding in self.motion.values() if binding.buttons for b in binding.buttons]
        return used + list(self.events.values())


# ---------------------------------------------------------------------------------------------- loading
def load_mapping(path: str | Path) -> JoyMapping:
    """Read a mapping YAML; raises MappingError naming the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise MappingError(f"teleop mapping {path} does not exist; give a YAML file such as config/teleop/joy.yaml")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise MappingError(f"teleop mapping {path} is not valid YAML ({exc})") from None
    return parse_mapping(raw, str(path))


def _index(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MappingError(f"{where} must be a button or axis index (an integer >= 0), got {value!r}")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise MappingError(f"{where} must be a number, got {value!r}")
    return float(value)


def parse_mapping(raw: Any, where: str = "teleop mapping") -> JoyMapping:
    """A mapping from its YAML structure (see the module docstring)."""
    if not isinstance(raw, dict):
        raise MappingError(f"{where} must be a mapping with 'motion' and 'gripper' keys")
    unknown = sorted(set(map(str, raw)) - _TOP_KEYS)
    if unknown:
        raise MappingError(f"{where}: unknown keys {unknown}; known: {sorted(_TOP_KEYS)}")
    motion_raw = raw.get("motion")
    if not isinstance(motion_raw, dict) or not motion_raw:
        raise MappingError(f"{where}: 'motion' must map action dimensions ({', '.join(MOTION)}) to bindings")
    motion = {}
    for name, entry in motion_raw.items():
        here = f"{where}: motion.{name}"
        if name not in MOTION:
            raise MappingError(f"{here} is not an action dimension; use {', '.join(MOTION)}")
        if not isinstance(entry, dict) or "scale" not in entry or ("axis" in entry) == ("buttons" in entry):
            raise MappingError(f"{here} needs 'scale' and either 'axis' or 'buttons: [plus, minus]'")
        buttons = None
        if "buttons" in entry:
            pair = entry["buttons"]
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise MappingError(f"{here}.buttons must be [plus, minus], got {pair!r}")
            buttons = (_index(pair[0], f"{here}.buttons"), _index(pair[1], f"{here}.buttons"))
        axis = _index(entry["axis"], f"{here}.axis") if "axis" in entry else None
        motion[name] = MotionBinding(_number(entry["scale"], f"{here}.scale"), axis, buttons)
    gripper_raw = raw.get("gripper") or {}
    if not isinstance(gripper_raw, dict):
        raise MappingError(f"{where}: 'gripper' must be a mapping")
    known = {"close_button", "open_button", "toggle_button", "axis", "closed_below"}
    if set(gripper_raw) - known:
        raise MappingError(f"{where}: gripper has unknown keys {sorted(set(gripper_raw) - known)}; known: {sorted(known)}")
    gripper = GripperBinding(**{k: (_number(v, f"{where}: gripper.{k}") if k == "closed_below"
                                    else _index(v, f"{where}: gripper.{k}")) for k, v in gripper_raw.items()})
    speeds = raw.get("speeds", [1.0])
    if not isinstance(speeds, list) or not speeds:
        raise MappingError(f"{where}: speeds must be a non-empty list of scale factors")
    speeds = tuple(_number(s, f"{where}: speeds") for s in speeds)
    if any(not 0 < s <= 1 for s in speeds):
        raise MappingError(f"{where}: speeds must lie in (0, 1], got {list(speeds)}")
    initial = raw.get("initial_speed", len(speeds) - 1)
    if isinstance(initial, bool) or not isinstance(initial, int) or not 0 <= initial < len(speeds):
        raise MappingError(f"{where}: initial_speed must index speeds (0..{len(speeds) - 1}), got {initial!r}")
    limits = raw.get("limits") or {}
    if not isinstance(limits, dict) or set(limits) - {"translation", "rotation"}:
        raise MappingError(f"{where}: limits takes 'translation' (m) and 'rotation' (rad) per control step")
    events = raw.get("events") or {}
    if not isinstance(events, dict) or set(events) - set(EVENTS):
        raise MappingError(f"{where}: events are {', '.join(EVENTS)}; got {sorted(map(str, events))}")
    deadzone = _number(raw.get("deadzone", 0.1), f"{where}: deadzone")
    if not 0 <= deadzone < 1:
        raise MappingError(f"{where}: deadzone must lie in [0, 1), got {deadzone}")
    deadman = raw.get("deadman_button")
    mapping = JoyMapping(
        motion=motion, gripper=gripper,
        deadman_button=None if deadman is None else _index(deadman, f"{where}: deadman_button"),
        deadzone=deadzone, speeds=speeds, initial_speed=initial,
        speed_button=None if raw.get("speed_button") is None else _index(raw["speed_button"], f"{where}: speed_button"),
        max_translation=_number(limits.get("translation", 0.03), f"{where}: limits.translation"),
        max_rotation=_number(limits.get("rotation", 0.3), f"{where}: limits.rotation"),
        events={k: _index(v, f"{where}: events.{k}") for k, v in events.items()},
        name=str(raw.get("name", "")))
    if mapping.max_translation <= 0 or mapping.max_rotation <= 0:
        raise MappingError(f"{where}: limits must be > 0")
    used = [b for b in mapping.buttons_used()]
    if len(set(used)) != len(used):
        repeated = sorted({b for b in used if used.count(b) > 1})
        raise MappingError(f"{where}: button {', '.join(map(str, repeated))} is bound twice")
    return mapping


# ---------------------------------------------------------------------------------------------- mapping
def shape_axis(value: float, deadzone: float) -> float:
    """An axis reading in [-1, 1] with the dead zone removed and the rest rescaled to [-1, 1]."""
    value = float(np.clip(value, -1.0, 1.0)) if np.isfinite(value) else 0.0
    magnitude = abs(value)
    if magnitude <= deadzone:
        return 0.0
    return float(np.sign(value) * (magnitude - deadzone) / (1.0 - deadzone))


@dataclass(frozen=True)
class TeleopCommand:
    """What one Joy message asks for: the 7-D action (zero motion unless engaged) and the button events."""

    action: np.ndarray  # [7]: dx dy dz (m) droll dpitch dyaw (rad) per control step, gripper opening 0..1
    engaged: bool  # the deadman is held (or the mapping has none)
    events: tuple[str, ...] = ()


class JoyTeleop:
    """The state a joystick carries between messages: speed preset, gripper opening, the buttons last seen."""

    def __init__(self, mapping: JoyMapping, gripper: float = 1.0):
        self.mapping = mapping
        self.speed_index = mapping.initial_speed
        self.gripper = float(gripper)
        self._previous: tuple[int, ...] = ()
        self.problems: set[str] = set()  # e.g. the joystick has fewer axes than the mapping uses

    @property
    def speed(self) -> float:
        return self.mapping.speeds[self.speed_index]

    def _button(self, buttons: Sequence[int], index: int | None) -> bool:
        if index is None:
            return False
        if index >= len(buttons):
            self.problems.add(f"the joystick has {len(buttons)} buttons; the mapping uses button {index}")
            return False
        return bool(buttons[index])

    def _pressed(self, buttons: Sequence[int], index: int | None) -> bool:
        """A press edge: down now, up in the previous message."""
        if not self._button(buttons, index):
            return False
        return not (index < len(self._previous) and self._previous[index])

    def _axis(self, axes: Sequence[float], index: int) -> float:
        if index >= len(axes):
            self.problems.add(f"the joystick has {len(axes)} axes; the mapping uses axis {index}")
            return 0.0
        return shape_axis(axes[index], self.mapping.deadzone)

    def update(self, axes: Sequence[float], buttons: Sequence[int]) -> TeleopCommand:
        """The command of one Joy message (axes in [-1, 1], buttons 0/1)."""
        m = self.mapping
        buttons = tuple(int(b) for b in buttons)
        events = tuple(name for name in EVENTS if name in m.events and self._pressed(buttons, m.events[name]))
        if self._pressed(buttons, m.speed_button):
            self.speed_index = (self.speed_index + 1) % len(m.speeds)
        engaged = m.deadman_button is None or self._button(buttons, m.deadman_button)
        action = np.zeros(7)
        if engaged:
            for index, name in enumerate(MOTION):
                binding = m.motion.get(name)
                if binding is None:
                    continue
                if binding.axis is not None:
                    deflection = self._axis(axes, binding.axis)
                else:
                    plus, minus = binding.buttons
                    deflection = float(self._button(buttons, plus)) - float(self._button(buttons, minus))
                action[index] = deflection * binding.scale * self.speed
            action[:3] = np.clip(action[:3], -m.max_translation, m.max_translation)
            action[3:6] = np.clip(action[3:6], -m.max_rotation, m.max_rotation)
            self._update_gripper(axes, buttons)
        action[GRIPPER] = self.gripper
        self._previous = buttons
        return TeleopCommand(action, engaged, events)

    def _update_gripper(self, axes: Sequence[float], buttons: Sequence[int]) -> None:
        g = self.mapping.gripper
        if g.axis is not None and g.axis < len(axes) and np.isfinite(axes[g.axis]):
            self.gripper = 0.0 if axes[g.axis] < g.closed_below else 1.0
        if self._button(buttons, g.close_button):
            self.gripper = 0.0
        if self._button(buttons, g.open_button):
            self.gripper = 1.0
        if self._pressed(buttons, g.toggle_button):
            self.gripper = 0.0 if self.gripper >= 0.5 else 1.0
