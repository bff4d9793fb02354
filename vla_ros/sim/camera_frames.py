"""Where the workcell's cameras are, as TF frames: the frame each camera's images carry (`<camera>_camera`).

Optical frames (x right, y down, z along the view), as sensor_msgs/CameraInfo assumes: a point P in base_link
projects to pixel (u, v) = K · (R_cam⁻¹ (P - t_cam)) with the K widowx_sim publishes (`camera_matrix`). The
over-the-shoulder and front cameras hang from base_link (the arm's base is the workcell's origin); the wrist
camera from gripper_link.
"""

from __future__ import annotations

import math

import numpy as np

from vla_ros.robot.frames import OPTICAL_FROM_MUJOCO_CAMERA, FrameTransform
from vla_ros.robot.urdf import BASE_LINK, Transform
from vla_ros.sim.settings import CAMERAS


def camera_frame_id(camera: str) -> str:
    return f"{camera}_camera"


def camera_frames(model) -> list[FrameTransform]:
    """One static transform per camera of a workcell `mujoco.MjModel`: base_link (or its body) → `<camera>_camera`."""
    import mujoco  # noqa: PLC0415 - the module stays light for camera_matrix

    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)  # target-tracking cameras aim at a fixed body: their pose is the same always
    world_base = model.body("base_link")
    if np.any(model.body_pos[world_base.id] != 0) or np.any(model.body_quat[world_base.id] != [1, 0, 0, 0]):
        raise ValueError("the workcell's base_link is not at the origin; its camera frames would be wrong")
    frames = []
    for name in CAMERAS:
        camera = model.camera(name)
        body = model.body(model.cam_bodyid[camera.id])
        if body.id == 0:  # on the world body: its pose in the world, i.e. in base_link
            rotation = data.cam_xmat[camera.id].reshape(3, 3)
            pose, parent = Transform(rotation @ OPTICAL_FROM_MUJOCO_CAMERA, data.cam_xpos[camera.id].copy()), BASE_LINK
        else:  # fixed to a link: its pose in that link
            rotation = np.empty(9)
            mujoco.mju_quat2Mat(rotation, model.cam_quat[camera.id])
            pose = Transform(rotation.reshape(3, 3) @ OPTICAL_FROM_MUJOCO_CAMERA, model.cam_pos[camera.id].copy())
            parent = body.name
        frames.append(FrameTransform.of(parent, camera_frame_id(name), pose))
    return frames


def camera_matrix(fovy_deg: float, width: int, height: int) -> np.ndarray:
    """K [3,3] of a MuJoCo camera rendered at width × height: square pixels, the principal point at the centre.

    Pixel centres sit at integer coordinates (OpenCV and ROS), so the centre of the image is ((w-1)/2, (h-1)/2).
    """
    focal = height / 2.0 / math.tan(math.radians(fovy_deg) / 2.0)
    return np.array([[focal, 0.0, (width - 1) / 2.0], [0.0, focal, (height - 1) / 2.0], [0.0, 0.0, 1.0]])
