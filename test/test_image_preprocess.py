"""Camera frame conversion and preprocessing with no ROS: every encoding, malformed frames, crop and resize."""

import cv2
import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from vla_ros.core.image_msgs import ImageRejected, compressed_to_rgb8, image_to_rgb8, rgb8_fields
from vla_ros.core.preprocess import center_crop_resize, frame_age_problem

TYPES = get_typestore(Stores.ROS2_KILTED).types
Image = TYPES["sensor_msgs/msg/Image"]
CompressedImage = TYPES["sensor_msgs/msg/CompressedImage"]
Header = TYPES["std_msgs/msg/Header"]
Time = TYPES["builtin_interfaces/msg/Time"]

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, size=(6, 10, 3), dtype=np.uint8)


def make_image(array: np.ndarray, encoding: str, pad: int = 0, height=None, width=None, step=None) -> Image:
    h, w = array.shape[:2]
    rows = array.reshape(h, -1)
    if pad:
        rows = np.hstack([rows, np.zeros((h, pad), np.uint8)])
    return Image(
        header=Header(stamp=Time(sec=1, nanosec=2), frame_id="cam"),
        height=h if height is None else max(height, 0),
        width=w if width is None else width,
        encoding=encoding,
        is_bigendian=0,
        step=rows.shape[1] if step is None else step,
        data=np.ascontiguousarray(rows).reshape(-1),
    )


ENCODED = {
    "rgb8": RGB,
    "bgr8": RGB[..., ::-1],
    "rgba8": np.dstack([RGB, np.full(RGB.shape[:2], 200, np.uint8)]),
    "bgra8": np.dstack([RGB[..., ::-1], np.full(RGB.shape[:2], 7, np.uint8)]),
}


@pytest.mark.parametrize("encoding", sorted(ENCODED))
@pytest.mark.parametrize("pad", [0, 4])
def test_colour_encodings_become_the_same_rgb(encoding, pad):
    out = image_to_rgb8(make_image(ENCODED[encoding], encoding, pad=pad))
    assert out.dtype == np.uint8 and out.shape == RGB.shape
    np.testing.assert_array_equal(out, RGB)


def test_mono8_becomes_grey_rgb():
    grey = RGB[..., 0].copy()
    out = image_to_rgb8(make_image(grey, "mono8"))
    assert out.shape == (6, 10, 3)
    for channel in range(3):
        np.testing.assert_array_equal(out[..., channel], grey)


@pytest.mark.parametrize("fmt, ext", [("jpeg", ".jpg"), ("png", ".png"), ("rgb8; png compressed bgr8", ".png")])
def test_compressed_frames_decode_to_rgb(fmt, ext):
    # Solid colour quadrants: jpeg keeps flat regions nearly intact, so colour order errors stand out.
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:8, :8], rgb[:8, 8:], rgb[8:, :8], rgb[8:, 8:] = (220, 30, 30), (30, 200, 40), (20, 40, 210), (240, 240, 20)
    ok, encoded = cv2.imencode(ext, rgb[..., ::-1].copy())  # OpenCV encodes BGR
    assert ok
    out = compressed_to_rgb8(CompressedImage(header=Header(stamp=Time(sec=0, nanosec=0), frame_id=""),
                                             format=fmt, data=encoded.reshape(-1)))
    tolerance = 0 if ext == ".png" else 12  # jpeg is lossy
    assert out.shape == rgb.shape
    assert np.abs(out.astype(int) - rgb.astype(int)).mean() <= tolerance


@pytest.mark.parametrize(
    "message, fragment",
    [
        (make_image(RNG.integers(0, 256, (10, 10, 3), dtype=np.uint8), "bgr8", height=480, width=640,
                    step=1920),
         "claims 640x480 bgr8 (step 1920, 921600 bytes) but carries 300 bytes"),
        (make_image(RGB, "rgb8", height=3), "carries 180 bytes"),
        (make_image(RGB, "yuv422"), "unsupported encoding 'yuv422'"),
        (make_image(RGB, "rgb8", width=11), "row step 30 is smaller than width 11"),
        (make_image(RGB, "rgb8", height=0), "empty size"),
    ],
)
def test_malformed_frames_are_rejected_with_the_reason(message, fragment):
    with pytest.raises(ImageRejected, match=None) as info:
        image_to_rgb8(message)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "fmt, data, fragment",
    [
        ("jpeg", np.frombuffer(b"not a jpeg at all", np.uint8), "could not decode compressed frame"),
        ("jpeg", np.zeros(0, np.uint8), "carries no data"),
        ("tiff", np.zeros(4, np.uint8), "unsupported compressed format 'tiff'"),
    ],
)
def test_bad_compressed_frames_are_rejected(fmt, data, fragment):
    with pytest.raises(ImageRejected) as info:
        compressed_to_rgb8(CompressedImage(header=Header(stamp=Time(sec=0, nanosec=0), frame_id=""),
                                           format=fmt, data=data))
    assert fragment in str(info.value)


def test_center_crop_keeps_the_middle_and_resizes():
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:, 80:560] = 255  # the central 480x480 square is white, the side bands black
    out = center_crop_resize(frame, 128)
    assert out.shape == (128, 128, 3)
    assert out.min() == 255
    tall = center_crop_resize(np.zeros((300, 100, 3), np.uint8), (64, 32))
    assert tall.shape == (64, 32, 3)


def test_center_crop_without_resize_is_exact():
    frame = RNG.integers(0, 256, (8, 12, 3), dtype=np.uint8)
    np.testing.assert_array_equal(center_crop_resize(frame, 8), frame[:, 2:10])


def test_rgb8_fields_round_trip():
    fields = rgb8_fields(RGB)
    msg = Image(header=Header(stamp=Time(sec=0, nanosec=0), frame_id=""), height=fields.height, width=fields.width,
                encoding=fields.encoding, is_bigendian=0, step=fields.step,
                data=np.frombuffer(fields.data, np.uint8))
    np.testing.assert_array_equal(image_to_rgb8(msg), RGB)


def test_frame_age_rules():
    assert frame_age_problem(0.1, 0.5) is None
    assert "0.600 s old" in frame_age_problem(0.6, 0.5)
    assert "future" in frame_age_problem(-2.0, 0.5)
    assert frame_age_problem(1e9, 0.0) is None  # 0 turns the check off
