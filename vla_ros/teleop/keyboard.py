"""The keyboard as a virtual joystick (no rclpy): keys → sensor_msgs/Joy axes and buttons.

A terminal reports key presses, not releases (a held key repeats). A motion key deflects its axis fully for
`hold_s` after its last press, so a held key moves the arm steadily and a tap moves it one short stretch; the
virtual deadman button is down while any motion or gripper key is active, so nothing moves once the keys
stop. `vla-ros teleop --keyboard` publishes these messages; the teleop node maps them with
`config/teleop/keyboard.yaml`, whose indices are `KEYBOARD_AXES` and `KEYBOARD_BUTTONS`.
"""

from __future__ import annotations

from vla_ros.teleop.mapping import MOTION

KEYBOARD_AXES = MOTION  # axis i deflects action dimension MOTION[i]
KEYBOARD_BUTTONS = ("deadman", "close_gripper", "open_gripper", "speed", "toggle_mode", "start_episode",
                    "stop_success", "stop_failure", "discard_episode")
# key → (action dimension, direction, what it does)
MOTION_KEYS = {
    "w": ("dx", 1, "forward (+x)"), "s": ("dx", -1, "back (-x)"),
    "a": ("dy", 1, "left (+y)"), "d": ("dy", -1, "right (-y)"),
    "r": ("dz", 1, "up (+z)"), "f": ("dz", -1, "down (-z)"),
    "j": ("droll", 1, "roll +"), "l": ("droll", -1, "roll -"),
    "i": ("dpitch", 1, "pitch +"), "k": ("dpitch", -1, "pitch -"),
    "q": ("dyaw", 1, "yaw left"), "e": ("dyaw", -1, "yaw right"),
}
# key → (button, what it does)
BUTTON_KEYS = {
    "c": ("close_gripper", "close the gripper"), "o": ("open_gripper", "open the gripper"),
    "v": ("speed", "next speed preset"), "t": ("toggle_mode", "switch teleop <-> policy"),
    "b": ("start_episode", "begin recording an episode"), "y": ("stop_success", "stop the episode: success"),
    "n": ("stop_failure", "stop the episode: failure"), "x": ("discard_episode", "discard the last episode"),
}
GRIPPER_BUTTONS = ("close_gripper", "open_gripper")


class KeyboardJoystick:
    """Key presses in, Joy (axes, buttons) out; `hold_s` is how long a press counts as held."""

    def __init__(self, hold_s: float = 0.3):
        self.hold_s = hold_s
        self._motion: dict[str, tuple[int, float]] = {}  # dimension → (direction, time of the last press)
        self._gripper: tuple[str, float] | None = None
        self._pending: list[str] = []  # buttons to press in the next message (edges)
        self._last_buttons: set[str] = set()

    def key(self, key: str, now: float) -> str | None:
        """Take one key press; returns what it does, or None for an unbound key."""
        key = key.lower()
        if key in MOTION_KEYS:
            dimension, direction, what = MOTION_KEYS[key]
            self._motion[dimension] = (direction, now)
            return what
        if key in BUTTON_KEYS:
            button, what = BUTTON_KEYS[key]
            if button in GRIPPER_BUTTONS:
                self._gripper = (button, now)
            else:
                self._pending.append(button)
            return what
        return None

    def joy(self, now: float) -> tuple[list[float], list[int]]:
        """The virtual joystick's state now: axes in KEYBOARD_AXES order, buttons in KEYBOARD_BUTTONS order."""
        axes = [0.0] * len(KEYBOARD_AXES)
        active = False
        for dimension, (direction, at) in self._motion.items():
            if now - at <= self.hold_s:
                axes[KEYBOARD_AXES.index(dimension)] = float(direction)
                active = True
        pressed: set[str] = set()
        if self._gripper is not None and now - self._gripper[1] <= self.hold_s:
            pressed.add(self._gripper[0])
            active = True
        # An event button goes down for one message, then up: one press edge per key press.
        pending = [b for b in self._pending if b not in self._last_buttons]
        if pending:
            pressed.add(pending[0])
            self._pending.remove(pending[0])
        if active:
            pressed.add("deadman")
        self._last_buttons = pressed
        return axes, [int(name in pressed) for name in KEYBOARD_BUTTONS]


def bindings_table() -> str:
    """The key bindings as the terminal UI shows them."""
    lines = ["motion (hold the key):"]
    for key, (dimension, _, what) in MOTION_KEYS.items():
        lines.append(f"  {key}  {what:14s} {dimension}")
    lines.append("buttons:")
    for key, (_, what) in BUTTON_KEYS.items():
        lines.append(f"  {key}  {what}")
    lines.append("  Ctrl-C or Esc  quit (the arm holds)")
    return "\n".join(lines)
