"""Annotated rollout videos: camera frames with the instruction and step written on them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vla_ros.core.settings import CONTROL_RATE_HZ

VIDEO_SUFFIXES = (".mp4", ".gif")


def annotate(frame: np.ndarray, instruction: str, step: int, status: str = "") -> np.ndarray:
    """The frame with a caption strip: instruction on top, step (and status) at the bottom."""
    import cv2

    height, width = frame.shape[:2]
    scale = max(0.35, width / 900)
    strip = int(26 * scale / 0.5)
    canvas = np.zeros((height + 2 * strip, width, 3), np.uint8)
    canvas[strip:strip + height] = frame
    cv2.putText(canvas, instruction, (6, int(strip * 0.7)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                cv2.LINE_AA)
    cv2.putText(canvas, f"step {step}  {status}", (6, height + int(strip * 1.7)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (255, 255, 255), 1, cv2.LINE_AA)
    return canvas


def write_video(path: Path, frames: list[np.ndarray], fps: float = CONTROL_RATE_HZ) -> None:
    """MP4 (H.264 through imageio-ffmpeg) or GIF, chosen by the file suffix."""
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        imageio.mimsave(path, frames, duration=1.0 / fps, loop=0)
        return
    # even sizes keep yuv420p encoders happy
    frames = [f[: f.shape[0] // 2 * 2, : f.shape[1] // 2 * 2] for f in frames]
    with imageio.get_writer(path, fps=fps, codec="libx264", quality=8, macro_block_size=1) as writer:
        for frame in frames:
            writer.append_data(frame)
