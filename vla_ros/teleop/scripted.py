"""A scripted joystick (no rclpy): the Joy messages that make a mapping produce given 7-D actions.

Used to drive the real graph with the scripted expert's actions in the demonstration tests and benchmarks. It
mirrors the teleop node's state (speed preset, gripper) with a `JoyTeleop` of its own, presses the speed button
until the fastest preset is on, and inverts the dead zone, so an action within the mapping's reach comes out of
the teleop node exactly (to float rounding).
"""

from __future__ import annotations

import numpy as np

from vla_ros.teleop.mapping import GRIPPER, MOTION, JoyMapping, JoyTeleop


def deflection_for(value: float, deadzone: float) -> float:
    """The axis reading whose dead-zone-shaped value is `value` (in [-1, 1])."""
    value = float(np.clip(value, -1.0, 1.0))
    if value == 0.0:
        return 0.0
    return float(np.sign(value) * (deadzone + abs(value) * (1.0 - deadzone)))


class ScriptedJoystick:
    """Actions in, Joy (axes, buttons) out, for a teleop node that uses `mapping` and sees every message."""

    def __init__(self, mapping: JoyMapping, axes: int = 8, buttons: int = 11):
        self.mapping = mapping
        used_axes = [b.axis for b in mapping.motion.values() if b.axis is not None]
        if mapping.gripper.axis is not None:
            used_axes.append(mapping.gripper.axis)
        self.n_axes = max([axes, *(a + 1 for a in used_axes)])
        self.n_buttons = max([buttons, *(b + 1 for b in mapping.buttons_used())])
        self.mirror = JoyTeleop(mapping)
        self._last: tuple[int, ...] = ()
        self._pending: list[str] = []

    def press(self, event: str) -> None:
        """Press an event's button (toggle_mode, start_episode, …) in a coming message."""
        if event not in self.mapping.events:
            raise ValueError(f"the mapping binds no button to {event}")
        self._pending.append(event)

    def _free(self, button: int | None) -> bool:
        """A button can go down as a new press: it exists and was up in the last message."""
        return button is not None and not (button < len(self._last) and self._last[button])

    def joy(self, action: np.ndarray | None) -> tuple[list[float], list[int]]:
        """The next message: deadman down and axes for `action` (None: deadman up, no motion)."""
        m = self.mapping
        axes, buttons = [0.0] * self.n_axes, [0] * self.n_buttons
        if self._pending and self._free(m.events[self._pending[0]]):
            buttons[m.events[self._pending.pop(0)]] = 1
        faster = self.mirror.speed_index != len(m.speeds) - 1 and self._free(m.speed_button)
        if faster:
            buttons[m.speed_button] = 1
        speed = m.speeds[(self.mirror.speed_index + faster) % len(m.speeds)]
        if action is not None:
            action = np.asarray(action, np.float64)
            if m.deadman_button is not None:
                buttons[m.deadman_button] = 1
            for index, name in enumerate(MOTION):
                binding = m.motion.get(name)
                if binding is None or binding.scale == 0:
                    continue
                wanted = action[index] / (binding.scale * speed)
                if binding.axis is not None:
                    axes[binding.axis] = deflection_for(wanted, m.deadzone)
                elif abs(wanted) >= 0.5:
                    buttons[binding.buttons[0] if wanted > 0 else binding.buttons[1]] = 1
            self._gripper(action[GRIPPER] >= 0.5, axes, buttons)
        self.mirror.update(axes, buttons)
        self._last = tuple(buttons)
        return axes, buttons

    def _gripper(self, open_: bool, axes: list[float], buttons: list[int]) -> None:
        g = self.mapping.gripper
        if g.close_button is not None and g.open_button is not None:
            buttons[g.open_button if open_ else g.close_button] = 1
        elif g.axis is not None:
            axes[g.axis] = 1.0 if open_ else max(-1.0, g.closed_below - 0.5)
        elif g.toggle_button is not None and (self.mirror.gripper >= 0.5) != open_ and self._free(g.toggle_button):
            buttons[g.toggle_button] = 1
