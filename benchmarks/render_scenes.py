"""Render the workcell's scene variants side by side (over_shoulder view, one layout) for docs/sim.md.

    MUJOCO_GL=egl python benchmarks/render_scenes.py [--seed 3] [--size 224] [--out docs/images/scenes.png]

Each panel is the same seed's layout after reset, captioned with the scene's name and, for camera_shift, the
camera's measured move and turn (`vla_ros.sim.scenes.camera_change`).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import cv2  # noqa: E402
import imageio.v3 as iio  # noqa: E402
import numpy as np  # noqa: E402

from vla_ros.sim.scenes import camera_change  # noqa: E402
from vla_ros.sim.settings import SCENES  # noqa: E402
from vla_ros.sim.workcell import Workcell  # noqa: E402


def render_panels(seed: int, size: int) -> list[np.ndarray]:
    """One captioned over_shoulder frame per scene, in SCENES order."""
    panels, default_model = [], None
    for scene in SCENES:
        with Workcell(image_size=size, scene=scene) as workcell:
            frame = workcell.reset(seed).image
            caption = scene
            if scene == "default":
                default_model = workcell.model
            elif scene == "camera_shift":
                cm, deg = camera_change(default_model, workcell.model)
                caption += f" ({cm:.1f} cm, {deg:.1f} deg)"
        label = np.full((24, size, 3), 255, np.uint8)
        cv2.putText(label, caption, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        panels.append(np.concatenate([label, frame], axis=0))
    return panels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=3, help="layout seed (default 3)")
    parser.add_argument("--size", type=int, default=224, help="panel size in pixels (default 224)")
    parser.add_argument("--out", type=Path, default=Path("docs/images/scenes.png"), help="output PNG")
    args = parser.parse_args()
    panels = render_panels(args.seed, args.size)
    gap = np.full((panels[0].shape[0], 4, 3), 255, np.uint8)
    sheet = np.concatenate([part for panel in panels for part in (panel, gap)][:-1], axis=1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(args.out, sheet, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
