"""Camera messages to rgb8 arrays and back, with the checks a malformed frame must fail.

Conversion goes through `cv_bridge` when a sourced ROS 2 distribution provides it and through
`rosbags-image` otherwise; both accept rclpy messages (and rosbags' own message classes), so this
module never imports rclpy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
COMPRESSED_FORMATS = ("jpeg", "jpg", "png")


class ImageRejected(ValueError):
    """A frame that cannot be used; the message says what was wrong with it."""


@dataclass(frozen=True)
class RawImageFields:
    """The fields of a sensor_msgs/Image holding an rgb8 frame."""

    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: bytes


def _converter():
    """The message → OpenCV converter: cv_bridge inside a sourced distribution, rosbags-image otherwise."""
    if os.environ.get("ROS_DISTRO"):
        try:
            from cv_bridge import CvBridge  # noqa: PLC0415 - only present in a distribution

            bridge = CvBridge()
            return "cv_bridge", lambda msg: bridge.imgmsg_to_cv2(msg, "rgb8"), lambda msg: bridge.compressed_imgmsg_to_cv2(
                msg, "rgb8"
            )
        except ImportError:
            pass
    from rosbags.image import compressed_image_to_cvimage, image_to_cvimage  # noqa: PLC0415

    return (
        "rosbags-image",
        lambda msg: image_to_cvimage(msg, "rgb8"),
        lambda msg: compressed_image_to_cvimage(msg, "rgb8"),
    )


CONVERTER_NAME, _image_to_rgb, _compressed_to_rgb = _converter()


def _payload_size(data: Any) -> int:
    return len(data) * getattr(data, "itemsize", 1)


def check_image_fields(msg: Any) -> int:
    """Validate an Image's geometry against its encoding and payload; returns the tight row size in bytes."""
    encoding = str(msg.encoding)
    if encoding not in CHANNELS:
        raise ImageRejected(
            f"unsupported encoding '{encoding}'; accepted: {', '.join(CHANNELS)} (or a CompressedImage in jpeg/png)"
        )
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageRejected(f"frame has an empty size {width}x{height}")
    row = width * CHANNELS[encoding]
    if step < row:
        raise ImageRejected(f"row step {step} is smaller than width {width} x {CHANNELS[encoding]} bytes = {row}")
    expected, actual = step * height, _payload_size(msg.data)
    if actual != expected:
        raise ImageRejected(
            f"frame claims {width}x{height} {encoding} (step {step}, {expected} bytes) but carries {actual} bytes"
        )
    return row


def image_to_rgb8(msg: Any) -> np.ndarray:
    """sensor_msgs/Image in rgb8, bgr8, rgba8, bgra8 or mono8 → HxWx3 uint8 RGB; raises ImageRejected."""
    row = check_image_fields(msg)
    source = msg
    if int(msg.step) != row and CONVERTER_NAME == "rosbags-image":
        # rosbags-image assumes tightly packed rows; drop the row padding first.
        rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(int(msg.height), int(msg.step))[:, :row]
        source = SimpleNamespace(
            encoding=msg.encoding,
            height=msg.height,
            width=msg.width,
            step=row,
            is_bigendian=msg.is_bigendian,
            data=rows.tobytes(),
        )
    try:
        return np.ascontiguousarray(_image_to_rgb(source), dtype=np.uint8)
    except Exception as exc:  # the converters raise several types for one cause: bad data
        raise ImageRejected(f"could not convert {msg.encoding} frame: {exc}") from None


def compressed_to_rgb8(msg: Any) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg or png) → HxWx3 uint8 RGB; raises ImageRejected."""
    fmt = str(msg.format).lower()
    if not any(name in fmt for name in COMPRESSED_FORMATS):
        raise ImageRejected(f"unsupported compressed format '{msg.format}'; accepted: jpeg, png")
    if _payload_size(msg.data) == 0:
        raise ImageRejected("compressed frame carries no data")
    try:
        image = _compressed_to_rgb(msg)
    except Exception:  # rosbags-image asserts, cv_bridge raises CvBridgeError: both mean undecodable data
        raise ImageRejected(f"could not decode compressed frame (format '{msg.format}')") from None
    if image is None or image.ndim != 3 or image.shape[2] != 3:
        raise ImageRejected(f"compressed frame (format '{msg.format}') did not decode to a colour image")
    return np.ascontiguousarray(image, dtype=np.uint8)


def rgb8_fields(image: np.ndarray) -> RawImageFields:
    """The Image fields for an HxWx3 uint8 RGB array."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 array, got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    return RawImageFields(
        height=height, width=width, encoding="rgb8", is_bigendian=0, step=width * 3, data=image.tobytes()
    )
