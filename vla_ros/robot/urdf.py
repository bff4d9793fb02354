"""The wx250s URDF (`robot/assets/wx250s.urdf`) and the link frames it gives for joint positions, without MuJoCo.

What robot_state_publisher does, in numpy: the transforms of the movable joints for a JointState (for /tf),
the fixed ones once (for /tf_static), and every link's pose in base_link (for the viewer and the markers).
The URDF is generated from our MJCF (`robot.urdf_export`); a test checks these frames against MuJoCo's
forward kinematics.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Mapping

import numpy as np

URDF_PATH = Path(__file__).resolve().parent / "assets" / "wx250s.urdf"
BASE_LINK = "base_link"
EE_LINK = "ee_gripper_link"


class UrdfError(ValueError):
    """A URDF this module cannot use; the message names the file and the element."""


@dataclass(frozen=True)
class Transform:
    """A rigid transform: rotation matrix [3,3] and translation [3] (child frame in the parent frame)."""

    rotation: np.ndarray
    translation: np.ndarray

    def __matmul__(self, other: "Transform") -> "Transform":
        return Transform(self.rotation @ other.rotation, self.rotation @ other.translation + self.translation)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Points [..., 3] in the child frame → the parent frame."""
        return np.asarray(points, dtype=np.float64) @ self.rotation.T + self.translation

    @property
    def quaternion_xyzw(self) -> np.ndarray:
        """The rotation as a unit quaternion (x, y, z, w), w >= 0, as geometry_msgs and rerun write it."""
        return quaternion_xyzw(self.rotation)

    @staticmethod
    def identity() -> "Transform":
        return Transform(np.eye(3), np.zeros(3))


@dataclass(frozen=True)
class Joint:
    name: str
    kind: str  # revolute | continuous | prismatic | fixed
    parent: str
    child: str
    origin: Transform
    axis: np.ndarray
    mimic: str | None = None
    multiplier: float = 1.0
    offset: float = 0.0

    @property
    def movable(self) -> bool:
        return self.kind != "fixed"

    def transform(self, position: float) -> Transform:
        """The child frame in the parent frame at joint position `position` (rad or m)."""
        if self.kind in ("revolute", "continuous"):
            return self.origin @ Transform(axis_angle(self.axis, position), np.zeros(3))
        if self.kind == "prismatic":
            return self.origin @ Transform(np.eye(3), self.axis * position)
        return self.origin


@dataclass(frozen=True)
class RobotModel:
    name: str
    root: str
    links: tuple[str, ...]
    joints: tuple[Joint, ...]  # parents before children
    text: str  # the URDF itself, for /robot_description

    @property
    def movable_joints(self) -> tuple[Joint, ...]:
        return tuple(j for j in self.joints if j.movable)

    def joint_positions(self, positions: Mapping[str, float]) -> dict[str, float]:
        """A position for every movable joint: the given ones, mimics from their leader, the rest 0."""
        values = {}
        for joint in self.movable_joints:
            if joint.name in positions:
                values[joint.name] = float(positions[joint.name])
            elif joint.mimic is not None and joint.mimic in positions:
                values[joint.name] = joint.multiplier * float(positions[joint.mimic]) + joint.offset
            else:
                values[joint.name] = 0.0
        return values

    def joint_transforms(self, positions: Mapping[str, float], movable: bool = True) -> list[tuple[Joint, Transform]]:
        """(joint, child-in-parent transform) of the movable joints (for /tf), or of the fixed ones (/tf_static)."""
        values = self.joint_positions(positions)
        return [(j, j.transform(values.get(j.name, 0.0))) for j in self.joints if j.movable == movable]

    def link_poses(self, positions: Mapping[str, float]) -> dict[str, Transform]:
        """Every link's pose in the root frame for these joint positions (missing joints at 0)."""
        values = self.joint_positions(positions)
        poses = {self.root: Transform.identity()}
        for joint in self.joints:
            poses[joint.child] = poses[joint.parent] @ joint.transform(values.get(joint.name, 0.0))
        return poses


def axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation matrix of `angle` rad about the unit vector `axis` (Rodrigues)."""
    x, y, z = axis
    c, s = np.cos(angle), np.sin(angle)
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + s * k + (1.0 - c) * (k @ k)


def rpy_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """URDF's rpy: fixed-axis rotations about x, then y, then z (R = Rz·Ry·Rx)."""
    cr, sr, cp, sp, cy, sy = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    return np.array([[cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
                     [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
                     [-sp, cp * sr, cp * cr]])


def quaternion_xyzw(rotation: np.ndarray) -> np.ndarray:
    """Unit quaternion (x, y, z, w) of a rotation matrix, w >= 0 (Shepperd's method)."""
    m = np.asarray(rotation, dtype=np.float64)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * np.sqrt(1.0 + trace)
        q = np.array([(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s])
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q = np.empty(4)
        q[i], q[j], q[k] = 0.25 * s, (m[j, i] + m[i, j]) / s, (m[k, i] + m[i, k]) / s
        q[3] = (m[k, j] - m[j, k]) / s
    q /= np.linalg.norm(q)
    return q if q[3] >= 0 else -q


def _floats(text: str | None, count: int, default: float, where: str) -> np.ndarray:
    if text is None:
        return np.full(count, default)
    try:
        values = np.array([float(v) for v in text.split()])
    except ValueError:
        raise UrdfError(f"{where}: '{text}' is not {count} numbers") from None
    if values.shape != (count,):
        raise UrdfError(f"{where}: '{text}' is not {count} numbers")
    return values


def parse_urdf(text: str, source: str = "URDF") -> RobotModel:
    """A RobotModel from URDF text (links, joints, origins, axes, mimics; geometry is left to the viewers)."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise UrdfError(f"{source} is not valid XML: {exc}") from None
    if root.tag != "robot":
        raise UrdfError(f"{source}: the root element is <{root.tag}>, not <robot>")
    links = tuple(link.get("name", "") for link in root.findall("link"))
    joints = []
    for element in root.findall("joint"):
        name, kind = element.get("name", ""), element.get("type", "")
        where = f"{source}: joint '{name}'"
        if kind not in ("revolute", "continuous", "prismatic", "fixed"):
            raise UrdfError(f"{where} has type '{kind}'; revolute, continuous, prismatic and fixed are supported")
        parent, child = element.find("parent"), element.find("child")
        if parent is None or child is None:
            raise UrdfError(f"{where} needs a <parent> and a <child>")
        origin = element.find("origin")
        xyz = _floats(origin.get("xyz") if origin is not None else None, 3, 0.0, where)
        rpy = _floats(origin.get("rpy") if origin is not None else None, 3, 0.0, where)
        axis_element = element.find("axis")
        axis = _floats(axis_element.get("xyz") if axis_element is not None else None, 3, 0.0, where)
        if kind != "fixed":
            if axis_element is None:
                axis = np.array([1.0, 0.0, 0.0])  # the URDF default
            if np.linalg.norm(axis) == 0:
                raise UrdfError(f"{where} has a zero axis")
            axis = axis / np.linalg.norm(axis)
        mimic = element.find("mimic")
        joints.append(Joint(name, kind, parent.get("link", ""), child.get("link", ""),
                            Transform(rpy_matrix(*rpy), xyz), axis,
                            mimic.get("joint") if mimic is not None else None,
                            float(mimic.get("multiplier", 1.0)) if mimic is not None else 1.0,
                            float(mimic.get("offset", 0.0)) if mimic is not None else 0.0))
    children = {j.child for j in joints}
    roots = [link for link in links if link not in children]
    if len(roots) != 1:
        raise UrdfError(f"{source} must have exactly one root link, found {roots or 'none'}")
    ordered, known = [], {roots[0]}
    pending = list(joints)
    while pending:
        ready = [j for j in pending if j.parent in known]
        if not ready:
            raise UrdfError(f"{source}: joints {[j.name for j in pending]} do not connect to the root '{roots[0]}'")
        for joint in ready:
            ordered.append(joint)
            known.add(joint.child)
            pending.remove(joint)
    return RobotModel(root.get("name", ""), roots[0], links, tuple(ordered), text)


@dataclass(frozen=True)
class Visual:
    """One <visual> of a link: `kind` box (size = full edges), cylinder (radius, length along z) or sphere."""

    link: str
    kind: str
    size: tuple[float, ...]
    origin: Transform
    rgba: tuple[float, float, float, float]


def link_visuals(text: str, source: str = "URDF") -> list[Visual]:
    """The box, cylinder and sphere visuals of every link (meshes are skipped), with their material colours."""
    root = ET.fromstring(text)
    colours = {m.get("name"): m.find("color") for m in root.findall("material")}
    visuals = []
    for link in root.findall("link"):
        for visual in link.findall("visual"):
            geometry = visual.find("geometry")
            shape = next(iter(geometry), None) if geometry is not None else None
            if shape is None or shape.tag not in ("box", "cylinder", "sphere"):
                continue
            where = f"{source}: link '{link.get('name')}'"
            if shape.tag == "box":
                size = tuple(_floats(shape.get("size"), 3, 0.0, where))
            elif shape.tag == "cylinder":
                size = (float(shape.get("radius", 0)), float(shape.get("length", 0)))
            else:
                size = (float(shape.get("radius", 0)),)
            origin = visual.find("origin")
            xyz = _floats(origin.get("xyz") if origin is not None else None, 3, 0.0, where)
            rpy = _floats(origin.get("rpy") if origin is not None else None, 3, 0.0, where)
            material = visual.find("material")
            colour = material.find("color") if material is not None else None
            if colour is None and material is not None:
                colour = colours.get(material.get("name"))
            rgba = tuple(_floats(colour.get("rgba"), 4, 1.0, where)) if colour is not None else (0.5, 0.5, 0.5, 1.0)
            visuals.append(Visual(link.get("name", ""), shape.tag, size, Transform(rpy_matrix(*rpy), xyz), rgba))
    return visuals


@lru_cache(maxsize=4)
def load_robot(path: str | Path = URDF_PATH) -> RobotModel:
    """The robot model of a URDF file (the wx250s by default)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UrdfError(f"cannot read the URDF {path}: {exc.strerror}") from None
    return parse_urdf(text, str(path))
