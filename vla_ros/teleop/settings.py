"""The teleop node's settings (no rclpy: its parameter table is generated from them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vla_ros.core.settings import Settings, one_of, positive, setting

INPUTS = ("joy", "keyboard")
DEFAULT_JOY_TOPIC = {"joy": "/joy", "keyboard": "/vla/teleop/keyboard"}
DEFAULT_MAPPING = {"joy": "teleop/joy.yaml", "keyboard": "teleop/keyboard.yaml"}


@dataclass(frozen=True)
class TeleopSettings(Settings):
    """What the teleop node listens to and how it turns Joy messages into chunks."""

    input: str = setting("joy", "joy: sensor_msgs/Joy from a gamepad or SpaceMouse driver; keyboard: the virtual "
                         "joystick of `vla-ros teleop --keyboard`.", check=one_of(*INPUTS))
    mapping: str = setting("", "Axis/button mapping YAML ('' = config/teleop/joy.yaml, or teleop/keyboard.yaml for "
                           "the keyboard; relative paths are looked up in the package's config/).")
    joy_topic: str = setting("", "Joy topic ('' = /joy, or /vla/teleop/keyboard for the keyboard).")
    publish_rate: float = setting(10.0, "Chunks per second while the joystick is live (twice the 5 Hz control rate: "
                                  "every control tick finds a new one); each Joy message also sends one at once.",
                                  check=positive)
    input_timeout: float = setting(0.5, "A joystick silent for this long sends nothing: the executor starves and the "
                                   "gate's teleop lease lapses, so the arm holds, s.", check=positive)

    @property
    def topic(self) -> str:
        return self.joy_topic or DEFAULT_JOY_TOPIC[self.input]

    def mapping_path(self, config_dir: Path) -> Path:
        name = self.mapping or DEFAULT_MAPPING[self.input]
        path = Path(name)
        return path if path.is_absolute() or path.exists() else config_dir / name
