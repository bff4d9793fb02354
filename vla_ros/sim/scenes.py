"""Named set-up shifts of the workcell, applied to a loaded `mujoco.MjModel` before any renderer exists.

A real user's cell is never the one the data came from: the camera bracket sits a little elsewhere, the table
is another laminate, the room is lit differently, the blocks come from another set. Each variant changes only
what the cameras see; geometry, masses, friction and the layouts are the default's, so a seed gives the same
episode in every scene and a drop in success measures the shift alone.

    default       the model as loaded (nothing applied)
    camera_shift  over_shoulder moved by (+5, -5, +4) cm (8.1 cm) and turned: its view direction (to the
                  workspace centre, as loaded) yawed by 6° about the vertical and pitched 3.5° further down,
                  kept level (no roll); 6.9° between the two camera frames. The camera becomes a fixed one
                  (it was a `targetbody` camera). front and wrist do not move.
    appearance    the table's wood texture recoloured to a grey-blue laminate (mean 0.50 0.58 0.70 instead
                  of 0.71 0.56 0.41, the grain kept); the ceiling light moved to the arm's right and made warmer
                  and dimmer (diffuse 0.60 0.52 0.42 from (0.30, -0.75, 0.85), aimed at the workspace centre,
                  instead of 0.6 grey from straight above); a warmer, dimmer headlight (ambient 0.30 0.27 0.24,
                  diffuse 0.42 0.38 0.33 instead of 0.35 and 0.5 grey); every block 20 % less saturated and
                  18 % darker in HSV with its hue kept, so the red block is still red.

`camera_change(default_model, shifted_model)` measures a camera's move (cm) and turn (degrees) between two
models from MuJoCo's own camera poses.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np

from vla_ros.sim.settings import SCENES

WORKSPACE_CENTRE_BODY = "workspace_centre"
TABLE_TEXTURE = "table"
LIGHT_INDEX = 0  # the workcell's one light (above the table)


@dataclass(frozen=True)
class CameraShift:
    """Move one camera and turn its view; it becomes a fixed camera, kept level (its x axis horizontal)."""

    camera: str = "over_shoulder"
    translation_m: tuple[float, float, float] = (0.05, -0.05, 0.04)
    yaw_deg: float = 6.0  # about the world's vertical; positive turns the view to the left
    pitch_deg: float = 3.5  # positive looks further down


@dataclass(frozen=True)
class AppearanceChange:
    """Table colour, lighting and block shades; nothing that touches physics."""

    table_rgb: tuple[float, float, float] = (0.50, 0.58, 0.70)  # the table texture's new mean colour
    light_pos: tuple[float, float, float] = (0.30, -0.75, 0.85)  # aimed at the workspace centre
    light_diffuse: tuple[float, float, float] = (0.60, 0.52, 0.42)
    headlight_ambient: tuple[float, float, float] = (0.30, 0.27, 0.24)
    headlight_diffuse: tuple[float, float, float] = (0.42, 0.38, 0.33)
    block_saturation_scale: float = 0.80
    block_value_scale: float = 0.82


@dataclass(frozen=True)
class SceneVariant:
    name: str
    camera: CameraShift | None = None
    appearance: AppearanceChange | None = None


VARIANTS = {
    "default": SceneVariant("default"),
    "camera_shift": SceneVariant("camera_shift", camera=CameraShift()),
    "appearance": SceneVariant("appearance", appearance=AppearanceChange()),
}
assert tuple(VARIANTS) == SCENES, "settings.SCENES and scenes.VARIANTS must name the same scenes"


def scene_variant(name: str) -> SceneVariant:
    """The variant called `name`; ValueError naming the choices otherwise."""
    if name not in VARIANTS:
        raise ValueError(f"scene {name!r} is not one of {', '.join(SCENES)}")
    return VARIANTS[name]


def apply_scene(model, name: str) -> None:
    """Change the loaded `model` in place to scene `name`; call it before creating a renderer (textures upload then)."""
    variant = scene_variant(name)
    if variant.camera is not None:
        _shift_camera(model, variant.camera)
    if variant.appearance is not None:
        _change_appearance(model, variant.appearance)


# ------------------------------------------------------------------------------------------------ camera
def _camera_poses(model) -> tuple[np.ndarray, np.ndarray]:
    """Every camera's world position [ncam,3] and rotation [ncam,3,3] (columns: its axes) after mj_forward."""
    import mujoco  # noqa: PLC0415 - only where a model is changed or measured

    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    return data.cam_xpos.copy(), data.cam_xmat.reshape(-1, 3, 3).copy()


def _rotate(vector: np.ndarray, axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues: `vector` turned by `angle` (rad) about the unit `axis`."""
    return (vector * math.cos(angle) + np.cross(axis, vector) * math.sin(angle)
            + axis * np.dot(axis, vector) * (1.0 - math.cos(angle)))


def level_camera_frame(look: np.ndarray) -> np.ndarray:
    """Rotation (columns x, y, z) of a camera looking along `look` with its x axis horizontal.

    MuJoCo cameras look along their -Z with +Y up in the image; this is the frame a `targetbody` camera gets.
    """
    z = -look / np.linalg.norm(look)
    x = np.cross([0.0, 0.0, 1.0], z)
    x /= np.linalg.norm(x)
    return np.column_stack([x, np.cross(z, x), z])


def shifted_camera_pose(position: np.ndarray, rotation: np.ndarray, shift: CameraShift) -> tuple[np.ndarray,
                                                                                                 np.ndarray]:
    """The shifted camera's position and rotation from its current pose (pure numpy)."""
    look = -rotation[:, 2]
    look = _rotate(look, np.array([0.0, 0.0, 1.0]), math.radians(shift.yaw_deg))
    right = np.cross(look, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    look = _rotate(look, right, -math.radians(shift.pitch_deg))  # about "right", negative turns the view down
    return position + np.asarray(shift.translation_m), level_camera_frame(look)


def _shift_camera(model, shift: CameraShift) -> None:
    import mujoco  # noqa: PLC0415

    camera = model.camera(shift.camera).id
    if model.cam_bodyid[camera] != 0:
        raise ValueError(f"camera {shift.camera!r} hangs from a body; only a world camera can be shifted")
    positions, rotations = _camera_poses(model)
    position, rotation = shifted_camera_pose(positions[camera], rotations[camera], shift)
    quat = np.empty(4)
    mujoco.mju_mat2Quat(quat, rotation.reshape(-1))
    model.cam_mode[camera] = mujoco.mjtCamLight.mjCAMLIGHT_FIXED
    model.cam_targetbodyid[camera] = -1
    model.cam_pos[camera] = position
    model.cam_quat[camera] = quat


def camera_change(model_default, model_shifted, camera: str = "over_shoulder") -> tuple[float, float]:
    """(translation in cm, rotation in degrees) of `camera` between two workcell models, from MuJoCo's poses."""
    index = model_default.camera(camera).id
    pos_a, rot_a = _camera_poses(model_default)
    pos_b, rot_b = _camera_poses(model_shifted)
    relative = rot_a[index].T @ rot_b[index]
    cos_angle = float(np.clip((np.trace(relative) - 1.0) / 2.0, -1.0, 1.0))
    return (float(np.linalg.norm(pos_b[index] - pos_a[index]) * 100.0), math.degrees(math.acos(cos_angle)))


# ------------------------------------------------------------------------------------------------ appearance
def shaded(rgb, saturation_scale: float, value_scale: float) -> tuple[float, float, float]:
    """`rgb` with its HSV saturation and value scaled, its hue kept."""
    hue, saturation, value = colorsys.rgb_to_hsv(*rgb)
    return colorsys.hsv_to_rgb(hue, min(1.0, saturation * saturation_scale), min(1.0, value * value_scale))


def block_geoms(model) -> list[int]:
    """Geom ids of the coloured blocks (bodies named block_<colour>_<size>)."""
    return [g for g in range(model.ngeom) if model.body(model.geom_bodyid[g]).name.startswith("block_")]


def _change_appearance(model, change: AppearanceChange) -> None:
    texture = model.texture(TABLE_TEXTURE).id
    start = model.tex_adr[texture]
    channels = model.tex_nchannel[texture]
    size = model.tex_width[texture] * model.tex_height[texture] * channels
    pixels = model.tex_data[start:start + size].reshape(-1, channels).astype(np.float64)
    gain = np.asarray(change.table_rgb) * 255.0 / pixels[:, :3].mean(axis=0)  # per channel: the grain stays
    pixels[:, :3] = np.clip(np.rint(pixels[:, :3] * gain), 0, 255)
    model.tex_data[start:start + size] = pixels.astype(np.uint8).reshape(-1)

    centre = model.body(WORKSPACE_CENTRE_BODY).pos
    direction = centre - np.asarray(change.light_pos)
    model.light_pos[LIGHT_INDEX] = change.light_pos
    model.light_dir[LIGHT_INDEX] = direction / np.linalg.norm(direction)
    model.light_diffuse[LIGHT_INDEX] = change.light_diffuse
    model.vis.headlight.ambient[:] = change.headlight_ambient
    model.vis.headlight.diffuse[:] = change.headlight_diffuse

    for geom in block_geoms(model):
        model.geom_rgba[geom, :3] = shaded(model.geom_rgba[geom, :3], change.block_saturation_scale,
                                           change.block_value_scale)
