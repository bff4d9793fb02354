"""Camera frame preprocessing for the policy: centre crop to the model's aspect ratio, then resize."""

from __future__ import annotations

import cv2
import numpy as np


def center_crop_resize(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Crop the centre of an HxWxC frame to the target aspect ratio and resize it to `size` (square or (h, w))."""
    out_h, out_w = (size, size) if isinstance(size, int) else size
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"model input size must be positive, got {out_w}x{out_h}")
    height, width = image.shape[:2]
    # Largest centred window with the output's aspect ratio.
    if width * out_h > height * out_w:
        crop_h, crop_w = height, max(1, round(height * out_w / out_h))
    else:
        crop_h, crop_w = max(1, round(width * out_h / out_w)), width
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    window = image[top : top + crop_h, left : left + crop_w]
    if (crop_h, crop_w) == (out_h, out_w):
        return np.ascontiguousarray(window)
    # INTER_AREA averages when shrinking (no aliasing); linear when enlarging.
    interpolation = cv2.INTER_AREA if crop_h >= out_h else cv2.INTER_LINEAR
    return cv2.resize(window, (out_w, out_h), interpolation=interpolation)


def frame_age_problem(age_s: float, max_age_s: float) -> str | None:
    """Why a frame `age_s` old must be dropped, or None; `max_age_s` <= 0 turns the check off."""
    if max_age_s <= 0:
        return None
    if age_s > max_age_s:
        return f"frame is {age_s:.3f} s old; the limit is {max_age_s:.3f} s (parameter max_age)"
    if age_s < -max_age_s:
        return f"frame stamp lies {-age_s:.3f} s in the future; is the camera clock synchronised?"
    return None


def compose_views(primary: np.ndarray, cameras: dict[str, np.ndarray], names: tuple[str, ...] | list[str],
                  size: int) -> np.ndarray:
    """The frame a policy with extra cameras reads: the primary view, then each camera in `names`, every one
    centre-cropped and resized to `size`, side by side: uint8 [size, size × (1 + len(names)), 3].

    A missing camera is an error naming it (a policy never runs with a view left blank)."""
    missing = [name for name in names if name not in cameras or cameras[name] is None]
    if missing:
        have = ", ".join(sorted(cameras)) or "none"
        raise ValueError(f"the policy reads the camera(s) {', '.join(missing)} beside the primary one; "
                         f"this observation has {have}")
    views = [primary, *(cameras[name] for name in names)]
    return np.concatenate([view if view.shape[:2] == (size, size) else center_crop_resize(view, size)
                           for view in views], 1)
