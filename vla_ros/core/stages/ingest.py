"""The ingest stage: a camera frame → rgb8 at the model's size, or a drop with its reason (camera_ingest)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from vla_ros.core.image_msgs import ImageRejected, compressed_to_rgb8, image_to_rgb8
from vla_ros.core.messages import NS, MessageKit, stamp_ns
from vla_ros.core.preprocess import center_crop_resize, frame_age_problem
from vla_ros.core.settings import Settings, non_negative, positive, setting


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


@dataclass(frozen=True)
class Ingested:
    """A frame's outcome: the model image message, or `drop` ('stale' | 'malformed') with its reason."""

    image: object | None
    age_s: float
    drop: str = ""
    reason: str = ""


class IngestStage:
    def __init__(self, settings: IngestSettings, messages: MessageKit):
        self.settings, self.m = settings, messages

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
        return Ingested(self.m.model_image(header, center_crop_resize(rgb, self.settings.image_size)), age)

    def on_image(self, msg, compressed: bool, now_ns: int) -> Ingested:
        """A sensor_msgs/Image (or CompressedImage) from the camera topic."""
        return self.on_frame(msg.header, lambda: compressed_to_rgb8(msg) if compressed else image_to_rgb8(msg), now_ns)
