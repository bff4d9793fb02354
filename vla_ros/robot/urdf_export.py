"""Write the wx250s URDF (`robot/assets/wx250s.urdf`) from our MJCF, so RViz, Foxglove and TF see the arm we simulate.

    python -m vla_ros.robot.urdf_export            # rewrite robot/assets/wx250s.urdf
    python -m vla_ros.robot.urdf_export --check    # exit 1 when the committed file differs from the MJCF's

Every MJCF body becomes a link whose frame is the body frame; each hinge or slide joint becomes a revolute or
prismatic joint at the child body's origin (the MJCF's joints sit there), the gripper's site `ee` becomes the
fixed `ee_gripper_link`, and the right finger mimics the left (the MJCF's equality constraint). Geoms become
visuals (a capsule is a cylinder and two spheres, URDF has no capsule); masses and inertias come along.
test_robot_description.py checks every link frame against MuJoCo's forward kinematics.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import mujoco
import numpy as np

from vla_ros.core.safety.limits import DEFAULT_MAX_JOINT_VELOCITY
from vla_ros.robot.kinematics import ARM_MJCF, EE_SITE, rotation_to_rpy
from vla_ros.robot.urdf import EE_LINK, URDF_PATH

ROBOT_NAME = "wx250s"
EE_JOINT = "ee_gripper"
FINGER_VELOCITY = 1.0  # m/s; the URDF needs a value, nothing here reads it


def _num(value: float) -> str:
    text = f"{float(value):.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _vec(values) -> str:
    return " ".join(_num(v) for v in values)


def _rpy_of_quat(quat) -> np.ndarray:
    mat = np.empty(9)
    mujoco.mju_quat2Mat(mat, np.asarray(quat, dtype=np.float64))
    return rotation_to_rpy(mat.reshape(3, 3))


def _origin(pos, quat=(1.0, 0.0, 0.0, 0.0)) -> str:
    return f'<origin xyz="{_vec(pos)}" rpy="{_vec(_rpy_of_quat(quat))}"/>'


def _geometry_visuals(model: mujoco.MjModel, geom: int, materials: dict[tuple, str]) -> list[str]:
    kind = mujoco.mjtGeom(int(model.geom_type[geom]))
    size, pos, quat = model.geom_size[geom], model.geom_pos[geom], model.geom_quat[geom]
    rgba = tuple(float(round(c, 4)) for c in model.geom_rgba[geom])
    material = materials.setdefault(rgba, f"colour_{len(materials)}")
    shapes = []
    if kind == mujoco.mjtGeom.mjGEOM_BOX:
        shapes.append((pos, quat, f'<box size="{_vec(2 * size)}"/>'))
    elif kind in (mujoco.mjtGeom.mjGEOM_CYLINDER, mujoco.mjtGeom.mjGEOM_CAPSULE):
        shapes.append((pos, quat, f'<cylinder radius="{_num(size[0])}" length="{_num(2 * size[1])}"/>'))
        if kind == mujoco.mjtGeom.mjGEOM_CAPSULE:
            mat = np.empty(9)
            mujoco.mju_quat2Mat(mat, quat)
            axis = mat.reshape(3, 3)[:, 2]
            for sign in (-1.0, 1.0):
                shapes.append((pos + sign * size[1] * axis, (1.0, 0.0, 0.0, 0.0), f'<sphere radius="{_num(size[0])}"/>'))
    elif kind == mujoco.mjtGeom.mjGEOM_SPHERE:
        shapes.append((pos, quat, f'<sphere radius="{_num(size[0])}"/>'))
    else:
        raise ValueError(f"geom {geom} of type {kind} has no URDF counterpart")
    return [f'    <visual>\n      {_origin(p, q)}\n      <geometry>{shape}</geometry>\n'
            f'      <material name="{material}"/>\n    </visual>' for p, q, shape in shapes]


def _link(model: mujoco.MjModel, body: int, materials: dict[tuple, str]) -> str:
    name = model.body(body).name
    lines = [f'  <link name="{name}">']
    mass = float(model.body_mass[body])
    if mass > 0:
        inertia = model.body_inertia[body]
        lines += ['    <inertial>', f'      {_origin(model.body_ipos[body], model.body_iquat[body])}',
                  f'      <mass value="{_num(mass)}"/>',
                  f'      <inertia ixx="{inertia[0]:.6e}" ixy="0" ixz="0" iyy="{inertia[1]:.6e}" iyz="0" '
                  f'izz="{inertia[2]:.6e}"/>', '    </inertial>']
    for geom in range(model.ngeom):
        if model.geom_bodyid[geom] == body:
            lines += _geometry_visuals(model, geom, materials)
    lines.append('  </link>')
    return "\n".join(lines)


def _joint(model: mujoco.MjModel, body: int) -> str:
    parent, child = model.body(model.body_parentid[body]).name, model.body(body).name
    origin = _origin(model.body_pos[body], model.body_quat[body])
    joints = [j for j in range(model.njnt) if model.jnt_bodyid[j] == body]
    if not joints:
        return f'  <joint name="{child}_fixed" type="fixed">\n    <parent link="{parent}"/>\n' \
               f'    <child link="{child}"/>\n    {origin}\n  </joint>'
    if len(joints) > 1 or np.any(model.jnt_pos[joints[0]] != 0):
        raise ValueError(f"body {child}: only one joint at the body's origin has a URDF counterpart")
    joint = joints[0]
    name = model.joint(joint).name
    kind = {mujoco.mjtJoint.mjJNT_HINGE: "revolute",
            mujoco.mjtJoint.mjJNT_SLIDE: "prismatic"}[mujoco.mjtJoint(int(model.jnt_type[joint]))]
    lower, upper = model.jnt_range[joint]
    mimic = _mimicked(model, joint)
    driven = model.joint(mimic).id if mimic else joint  # a mimic joint moves with its leader's actuator
    actuator = next(a for a in range(model.nu) if model.actuator_trnid[a, 0] == driven)
    effort = float(model.actuator_forcerange[actuator, 1])
    velocity = DEFAULT_MAX_JOINT_VELOCITY if kind == "revolute" else FINGER_VELOCITY
    lines = [f'  <joint name="{name}" type="{kind}">', f'    <parent link="{parent}"/>', f'    <child link="{child}"/>',
             f'    {origin}', f'    <axis xyz="{_vec(model.jnt_axis[joint])}"/>',
             f'    <limit lower="{_num(lower)}" upper="{_num(upper)}" effort="{_num(effort)}" '
             f'velocity="{_num(velocity)}"/>']
    if mimic:
        lines.append(f'    <mimic joint="{mimic}" multiplier="1" offset="0"/>')
    lines.append('  </joint>')
    return "\n".join(lines)


def _mimicked(model: mujoco.MjModel, joint: int) -> str | None:
    """The joint this one follows through a joint equality constraint (joint1 = poly(joint2))."""
    for eq in range(model.neq):
        if int(model.eq_type[eq]) == int(mujoco.mjtEq.mjEQ_JOINT) and model.eq_obj1id[eq] == joint and model.eq_obj2id[eq] >= 0:
            coefficients = model.eq_data[eq, :5]
            if not np.allclose(coefficients, [0.0, 1.0, 0.0, 0.0, 0.0]):
                raise ValueError("only an identity joint equality has a URDF <mimic> counterpart")
            return model.joint(model.eq_obj2id[eq]).name
    return None


def urdf_text(mjcf: Path = ARM_MJCF) -> str:
    """The URDF of the arm in `mjcf` (the arm-only model), as text."""
    model = mujoco.MjModel.from_xml_path(str(mjcf))
    materials: dict[tuple, str] = {}
    links = [_link(model, body, materials) for body in range(1, model.nbody)]
    joints = [_joint(model, body) for body in range(2, model.nbody)]  # body 1 (base_link) is the root
    site = model.site(EE_SITE)
    links.append(f'  <link name="{EE_LINK}"/>')
    joints.append(f'  <joint name="{EE_JOINT}" type="fixed">\n    <parent link="{model.body(site.bodyid[0]).name}"/>\n'
                  f'    <child link="{EE_LINK}"/>\n    {_origin(site.pos, site.quat)}\n  </joint>')
    material_lines = [f'  <material name="{name}"><color rgba="{_vec(rgba)}"/></material>'
                      for rgba, name in materials.items()]
    header = ['<?xml version="1.0"?>',
              f'<!-- Generated from {mjcf.name} by vla_ros/robot/urdf_export.py; do not edit by hand. Frames are',
              '     the MJCF body frames (x forward, y left, z up at base_link, the bottom of the base); ee_gripper_link',
              '     is the site "ee" between the fingertips. -->',
              f'<robot name="{ROBOT_NAME}">']
    return "\n".join(header + material_lines + links + joints + ['</robot>']) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vla_ros.robot.urdf_export", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=URDF_PATH, help=f"where to write (default {URDF_PATH})")
    parser.add_argument("--check", action="store_true", help="only compare with the file at --out; exit 1 on a difference")
    args = parser.parse_args(argv)
    text = urdf_text()
    if args.check:
        same = args.out.is_file() and args.out.read_text(encoding="utf-8") == text
        print(f"{args.out} {'matches' if same else 'differs from'} the URDF generated from {ARM_MJCF.name}")
        return 0 if same else 1
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
