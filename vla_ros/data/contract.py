"""Which bag topics become which features of a training set (`vla-ros data import --contract FILE`), as plain data.

A contract is a small YAML file (`config/import/vla_ros.yaml` is the default; `docs/demonstrations.md`):

    control_rate_hz: 5.0        # control steps per second of the training set
    tolerance_s: 0.25           # a step's frame (or joint state) may be at most this much older than the step
    max_gap_s: 0.6              # a longer silence on a stream inside the episode makes it bad
    rate_tolerance: 0.2         # relative: the action stream's rate must be control_rate_hz ± 20 %
    image_size: 128             # frames are centre-cropped and resized to this, as camera_ingest does
    cameras: {over_shoulder: /camera/image_raw}        # observation.images.<name> ← sensor_msgs/Image or CompressedImage
    state: {topic: /joint_states, joints: [waist, …], gripper: [left_finger, gripper], gripper_threshold: 0.5}
    action: {topic: [/vla/executed_action, /vla/expert_action]}   # the first one present; none: from forward kinematics
    instruction: {topic: [/vla/task, /vla/instruction]}            # or {text: "pick up the red block"}
    success: {topic: /vla/demos/mark}                              # std_msgs/String marks; absent: the bag's custom_data

A topic entry may be a list of candidates: the first one the bag has is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vla_ros.robot.wx250s import ARM_JOINTS, FINGER_JOINT, GRIPPER_COMMAND_JOINT

DEFAULT_CONTRACT = "import/vla_ros.yaml"  # under the package's config/
_KEYS = {"version", "description", "control_rate_hz", "tolerance_s", "max_gap_s", "rate_tolerance", "image_size",
         "cameras", "state", "action", "instruction", "success"}


class ContractError(ValueError):
    """A contract that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class ImportContract:
    cameras: tuple[tuple[str, tuple[str, ...]], ...]  # (feature name, candidate topics), the first is the primary camera
    state_topics: tuple[str, ...]
    joints: tuple[str, ...] = ARM_JOINTS
    gripper_joints: tuple[str, ...] = (FINGER_JOINT, GRIPPER_COMMAND_JOINT)
    gripper_threshold: float = 0.5  # opening above which a derived gripper action is "open"
    action_topics: tuple[str, ...] = ()
    instruction_topics: tuple[str, ...] = ()
    instruction_text: str = ""
    success_topics: tuple[str, ...] = ()
    control_rate_hz: float = 5.0
    tolerance_s: float = 0.25
    max_gap_s: float = 0.6
    rate_tolerance: float = 0.2
    image_size: int = 128
    source: str = ""  # the file it came from

    @property
    def period_s(self) -> float:
        return 1.0 / self.control_rate_hz


def default_contract_path() -> Path:
    from vla_ros.graphs.spec import default_config_dir  # noqa: PLC0415

    return default_config_dir() / DEFAULT_CONTRACT


def load_contract(path: str | Path | None = None) -> ImportContract:
    """Read a contract YAML (the default one when `path` is None); raises ContractError naming what is wrong."""
    path = Path(path) if path is not None else default_contract_path()
    if not path.is_file():
        raise ContractError(f"contract {path} does not exist; give a YAML file like config/import/vla_ros.yaml")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ContractError(f"contract {path} is not valid YAML ({exc})") from None
    return parse_contract(raw, str(path))


def _topics(value: Any, where: str) -> tuple[str, ...]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v.startswith("/") for v in values):
        raise ContractError(f"{where} must be a topic name starting with '/' or a list of them, got {value!r}")
    return tuple(values)


def _positive(raw: dict, key: str, default: float, where: str, integer: bool = False):
    value = raw.get(key, default)
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not value > 0:
        raise ContractError(f"{where}: {key} must be a {'whole ' if integer else ''}number > 0, got {value!r}")
    return value if integer else float(value)


def parse_contract(raw: Any, where: str = "contract") -> ImportContract:
    """A contract from its YAML structure (see the module docstring)."""
    if not isinstance(raw, dict):
        raise ContractError(f"{where} must be a mapping with 'cameras' and 'state'")
    unknown = sorted(set(map(str, raw)) - _KEYS)
    if unknown:
        raise ContractError(f"{where}: unknown keys {unknown}; known: {sorted(_KEYS)}")
    cameras = raw.get("cameras")
    if not isinstance(cameras, dict) or not cameras:
        raise ContractError(f"{where}: 'cameras' must map camera names to image topics, e.g. "
                            "{over_shoulder: /camera/image_raw}")
    for name in cameras:
        if not isinstance(name, str) or not name.replace("_", "").isalnum():
            raise ContractError(f"{where}: camera name {name!r} must be letters, digits and underscores")
    state = raw.get("state")
    if not isinstance(state, dict) or "topic" not in state:
        raise ContractError(f"{where}: 'state' needs a 'topic' (sensor_msgs/JointState)")
    joints = state.get("joints", list(ARM_JOINTS))
    if not isinstance(joints, list) or len(joints) != 6 or not all(isinstance(j, str) for j in joints):
        raise ContractError(f"{where}: state.joints must list the six arm joints in wx250s order "
                            f"({', '.join(ARM_JOINTS)}), got {joints!r}")
    gripper = state.get("gripper", [FINGER_JOINT, GRIPPER_COMMAND_JOINT])
    gripper = [gripper] if isinstance(gripper, str) else gripper
    if not isinstance(gripper, list) or not all(isinstance(g, str) for g in gripper):
        raise ContractError(f"{where}: state.gripper must name the gripper joint (or a list of candidates)")
    threshold = state.get("gripper_threshold", 0.5)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
        raise ContractError(f"{where}: state.gripper_threshold must lie in (0, 1), got {threshold!r}")
    action = raw.get("action") or {}
    instruction = raw.get("instruction") or {}
    success = raw.get("success") or {}
    for key, value in (("action", action), ("instruction", instruction), ("success", success)):
        if not isinstance(value, dict):
            raise ContractError(f"{where}: '{key}' must be a mapping such as {{topic: /some/topic}}")
    text = instruction.get("text", "")
    if not isinstance(text, str):
        raise ContractError(f"{where}: instruction.text must be text")
    tolerance = _positive(raw, "tolerance_s", 0.25, where)
    rate_tolerance = _positive(raw, "rate_tolerance", 0.2, where)
    if rate_tolerance >= 1:
        raise ContractError(f"{where}: rate_tolerance is relative and must lie in (0, 1), got {rate_tolerance}")
    return ImportContract(
        cameras=tuple((name, _topics(topic, f"{where}: cameras.{name}")) for name, topic in cameras.items()),
        state_topics=_topics(state["topic"], f"{where}: state.topic"), joints=tuple(joints),
        gripper_joints=tuple(gripper), gripper_threshold=float(threshold),
        action_topics=_topics(action["topic"], f"{where}: action.topic") if "topic" in action else (),
        instruction_topics=_topics(instruction["topic"], f"{where}: instruction.topic") if "topic" in instruction else (),
        instruction_text=text,
        success_topics=_topics(success["topic"], f"{where}: success.topic") if "topic" in success else (),
        control_rate_hz=_positive(raw, "control_rate_hz", 5.0, where), tolerance_s=tolerance,
        max_gap_s=_positive(raw, "max_gap_s", 0.6, where), rate_tolerance=rate_tolerance,
        image_size=_positive(raw, "image_size", 128, where, integer=True), source=where)
