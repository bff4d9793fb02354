"""The ingest stage: a camera frame → rgb8 at the model's size, or a drop with its reason (camera_ingest)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from vla_ros.core.image_msgs import ImageRejected, compressed_to_rgb8, image_to_rgb8
from vla_ros.core.messages import NS, MessageKit, stamp_ns
from vla_ros.core.preprocess import center_crop_resize, compose_views, frame_age_problem
from vla_ros.core.settings import Settings, non_negative, positive, setting
from vla_ros.core.topics import camera_image, camera_list_problem, camera_names


@dataclass(frozen=True)
class IngestSettings(Settings):
    """camera_ingest's settings."""

    source: str = setting("topic", "Where frames come from: 'topic' (/camera/image_raw, remappable), an OpenCV "
                          "device index ('0') or a video file path.")
    compressed: bool = setting(False, "Subscribe sensor_msgs/CompressedImage on /camera/image_raw/compressed.")
    image_size: int = setting(128, "Model input size in pixels (square output).", read_only=False, check=positive)
    max_age: float = setting(0.5, "Drop frames whose stamp is older than this, in seconds (0 = keep all).",
                             read_only=False, check=non_negative)
    frame_rate: float = setting(10.0, "Frames per second read from an OpenCV source.", check=positive,
                                node_only=True)
    loop: bool = setting(True, "Restart a video file at its end.", node_only=True)
    frame_id: str = setting("camera", "header.frame_id of frames read from an OpenCV source.", node_only=True)
    extra_cameras: str = setting("", "Cameras the policy reads beside the primary one, comma-separated in the "
                                 "policy's order (its config's extra_cameras, e.g. 'wrist'): each from "
                                 "/camera/<name>/image_raw (remappable). Every /vla/image is then the views side "
                                 "by side, [image_size, image_size × views]. '' = the primary camera only.",
                                 check=camera_list_problem)


@dataclass(frozen=True)
class Ingested:
    """A frame's outcome: the model image message, or `drop` ('stale' | 'malformed' | 'view') with its reason."""

    image: object | None
    age_s: float
    drop: str = ""
    reason: str = ""


class IngestStage:
    """The primary camera's frames become /vla/image; with `extra_cameras`, each is composed with the newest frame
    of every extra camera (`compose_views`), which must lie within `max_age` of it."""

    def __init__(self, settings: IngestSettings, messages: MessageKit):
        self.settings, self.m = settings, messages
        self.views: dict[str, tuple[int, np.ndarray]] = {}  # extra camera → (stamp ns, rgb at the model's size)

    @property
    def extra_cameras(self) -> tuple[str, ...]:
        return camera_names(self.settings.extra_cameras)

    def on_frame(self, header, convert: Callable[[], np.ndarray], now_ns: int) -> Ingested:
        """Check the frame's age, convert it (`convert()` → rgb8, may raise ImageRejected), crop and resize."""
        age = (now_ns - stamp_ns(header.stamp)) / NS
        problem = frame_age_problem(age, self.settings.max_age)
        if problem:
            return Ingested(None, age, "stale", problem)
        try:
            rgb = convert()
        except ImageRejected as exc:
            return Ingested(None, age, "malformed", f"dropped malformed frame: {exc}")
        size = self.settings.image_size
        rgb = center_crop_resize(rgb, size)
        if self.extra_cameras:
            views = dict(self.views)  # one copy: an OpenCV source's timer and the extra cameras' callbacks may race
            problem = self._views_problem(views, stamp_ns(header.stamp))
            if problem:
                return Ingested(None, age, "view", problem)
            rgb = compose_views(rgb, {name: view for name, (_, view) in views.items()}, self.extra_cameras, size)
        return Ingested(self.m.model_image(header, rgb), age)

    def on_extra_frame(self, camera: str, header, convert: Callable[[], np.ndarray]) -> str | None:
        """Keep an extra camera's newest frame at the model's size; the reason when it is malformed, else None."""
        try:
            rgb = convert()
        except ImageRejected as exc:
            return f"dropped malformed frame of the {camera} camera: {exc}"
        self.views[camera] = (stamp_ns(header.stamp), center_crop_resize(rgb, self.settings.image_size))
        return None

    def _views_problem(self, views: dict, stamp: int) -> str | None:
        for camera in self.extra_cameras:
            if camera not in views:
                return (f"dropped frame: no frame from the {camera} camera ({camera_image(camera)}) yet, and the "
                        f"policy reads it beside the primary camera (extra_cameras={self.settings.extra_cameras!r})")
            apart = abs(stamp - views[camera][0]) / NS
            if self.settings.max_age > 0 and apart > self.settings.max_age:
                return (f"dropped frame: the {camera} camera's newest frame is {apart:.3f} s from it (max_age "
                        f"{self.settings.max_age} s); is {camera_image(camera)} still publishing?")
        return None

    def on_image(self, msg, compressed: bool, now_ns: int) -> Ingested:
        """A sensor_msgs/Image (or CompressedImage) from the camera topic."""
        return self.on_frame(msg.header, lambda: compressed_to_rgb8(msg) if compressed else image_to_rgb8(msg), now_ns)

    def on_extra_image(self, camera: str, msg, compressed: bool) -> str | None:
        """A sensor_msgs/Image (or CompressedImage) from an extra camera's topic; the reason when it is dropped."""
        return self.on_extra_frame(camera, msg.header,
                                   lambda: compressed_to_rgb8(msg) if compressed else image_to_rgb8(msg))
