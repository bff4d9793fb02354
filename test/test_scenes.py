"""Scene variants (set-up shifts): what changes in the picture, what must not change in the physics, the flags."""

import colorsys
import json
import subprocess
import sys

import h5py
import mujoco
import numpy as np
import pytest

from vla_ros.cli import build_parser
from vla_ros.core.settings import SettingsError, build_settings
from vla_ros.sim.scenes import apply_scene, block_geoms, camera_change
from vla_ros.sim.settings import CAMERAS, SCENES, SimSettings
from vla_ros.sim.tasks import FAMILIES
from vla_ros.sim.workcell import WORKCELL_MJCF, Workcell

SIZE = 96
SEEDS = range(4)  # between them every block colour is on the table
NOMINAL_HUE_DEG = {"red": 1, "yellow": 50, "green": 125, "blue": 225, "purple": 282}  # workcell.xml's rgba


@pytest.fixture(scope="module")
def cells():
    cells = {scene: Workcell(image_size=SIZE, scene=scene) for scene in SCENES}
    yield cells
    for cell in cells.values():
        cell.close()


def segmentation(cell: Workcell) -> np.ndarray:
    """Geom id per pixel of the over_shoulder view (-1 where no geom)."""
    renderer = mujoco.Renderer(cell.model, SIZE, SIZE)
    try:
        renderer.enable_segmentation_rendering()
        renderer.update_scene(cell.data, camera="over_shoulder")
        ids = renderer.render()
    finally:
        renderer.close()
    return np.where(ids[..., 1] == mujoco.mjtObj.mjOBJ_GEOM, ids[..., 0], -1)


def hue_distance(a: float, b: float) -> float:
    return min(abs(a - b), 360.0 - abs(a - b))


def test_default_scene_renders_the_model_as_loaded(cells):
    cell = cells["default"]
    cell.reset(5)
    bare = mujoco.MjModel.from_xml_path(str(WORKCELL_MJCF))
    data = mujoco.MjData(bare)
    state = np.empty(mujoco.mj_stateSize(cell.model, mujoco.mjtState.mjSTATE_INTEGRATION))
    mujoco.mj_getState(cell.model, cell.data, state, mujoco.mjtState.mjSTATE_INTEGRATION)
    mujoco.mj_setState(bare, data, state, mujoco.mjtState.mjSTATE_INTEGRATION)
    mujoco.mj_forward(cell.model, cell.data)
    mujoco.mj_forward(bare, data)
    renderer = mujoco.Renderer(bare, SIZE, SIZE)
    try:
        for camera in CAMERAS:
            renderer.update_scene(data, camera=camera)
            assert np.array_equal(cell.render(camera), renderer.render()), camera
    finally:
        renderer.close()


def test_camera_shift_moves_and_turns_only_the_over_shoulder_camera(cells):
    cm, deg = camera_change(cells["default"].model, cells["camera_shift"].model)
    assert 5.0 <= cm <= 10.0 and 5.0 <= deg <= 10.0, (cm, deg)
    for camera in ("front", "wrist"):
        assert camera_change(cells["default"].model, cells["camera_shift"].model, camera) == (0.0, 0.0)
    for camera in CAMERAS:
        assert camera_change(cells["default"].model, cells["appearance"].model, camera) == (0.0, 0.0)


@pytest.mark.parametrize("scene", ["camera_shift", "appearance"])
def test_a_shift_changes_the_picture_not_the_physics(cells, scene):
    default, shifted = cells["default"], cells[scene]
    action = np.array([0.01, -0.01, -0.01, 0.0, 0.0, 0.05, 0.0])
    for seed in SEEDS:
        before, after = default.reset(seed), shifted.reset(seed)
        assert np.array_equal(default.data.qpos, shifted.data.qpos)
        # a clear change of view: measured 34-39 grey levels per pixel on average (seeds 0-5)
        difference = np.abs(before.image.astype(float) - after.image.astype(float)).mean()
        assert difference > 20.0, (seed, difference)
        # every object on the table stays in view
        visible = set(segmentation(shifted).ravel())
        for placement in shifted.layout.placements:
            body = shifted.model.body(placement.body).id
            assert shifted.model.body_geomadr[body] in visible, (seed, placement.key)
        for _ in range(3):
            default.step(action, render=False)
            shifted.step(action, render=False)
        assert np.array_equal(default.data.qpos, shifted.data.qpos)


def test_appearance_keeps_every_block_its_colour(cells):
    default, shifted = cells["default"].model, cells["appearance"].model
    for geom in block_geoms(default):
        hue_a, saturation_a, value_a = colorsys.rgb_to_hsv(*default.geom_rgba[geom, :3])
        hue_b, saturation_b, value_b = colorsys.rgb_to_hsv(*shifted.geom_rgba[geom, :3])
        assert hue_b == pytest.approx(hue_a, abs=1e-6)
        assert 0.15 <= 1.0 - saturation_b / saturation_a <= 0.25 and 0.15 <= 1.0 - value_b / value_a <= 0.25
    cell = cells["appearance"]
    seen = set()
    for seed in SEEDS:
        image = cell.reset(seed).image.astype(float) / 255.0
        ids = segmentation(cell)
        redness = {}
        for placement in cell.layout.placements:
            if placement.key not in NOMINAL_HUE_DEG:
                continue
            mask = ids == cell.model.body_geomadr[cell.model.body(placement.body).id]
            rgb = image[mask].mean(axis=0)  # as rendered: lit from the side, in warm light
            hue = colorsys.rgb_to_hsv(*rgb)[0] * 360.0
            nearest = min(NOMINAL_HUE_DEG, key=lambda colour: hue_distance(hue, NOMINAL_HUE_DEG[colour]))
            assert nearest == placement.key, (seed, placement.key, hue)
            redness[placement.key] = rgb[0] - max(rgb[1], rgb[2])
            seen.add(placement.key)
        if "red" in redness:
            assert max(redness, key=redness.get) == "red", (seed, redness)
    assert seen == set(NOMINAL_HUE_DEG)


def test_an_unknown_scene_is_named_with_the_choices():
    model = mujoco.MjModel.from_xml_path(str(WORKCELL_MJCF))
    with pytest.raises(ValueError, match=r"scene 'night' is not one of default, camera_shift, appearance"):
        apply_scene(model, "night")
    with pytest.raises(ValueError, match="night"):
        Workcell(render=False, scene="night")
    with pytest.raises(SettingsError, match="must be one of default, camera_shift, appearance"):
        build_settings(SimSettings, {"scene": "night"})
    assert build_settings(SimSettings, {"scene": "appearance"}).scene == "appearance"


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "vla_ros.cli", *args], capture_output=True, text=True, timeout=300)


def test_data_generate_records_the_scene_and_renders_it(tmp_path):
    out = tmp_path / "shifted"
    result = run_cli("data", "generate", "--episodes", "2", "--out", str(out), "--scene", "camera_shift",
                     "--image-size", "32", "--max-steps", "4")
    assert result.returncode == 0, result.stderr
    with h5py.File(out / "dataset.hdf5", "r") as f:
        assert json.loads(f["data"].attrs["env_args"])["env_kwargs"]["scene"] == "camera_shift"
        first = f["data/demo_0/obs/agentview_image"][0].astype(float)
    assert json.loads((out / "generation.json").read_text())["scene"] == "camera_shift"
    frames = {}
    for scene in ("default", "camera_shift"):
        with Workcell(image_size=32, scene=scene) as cell:
            frames[scene] = cell.reset(0, family=FAMILIES[0]).image.astype(float)
    assert np.abs(first - frames["camera_shift"]).mean() < 1.0 < np.abs(first - frames["default"]).mean()
    refused = run_cli("data", "generate", "--episodes", "1", "--out", str(tmp_path / "x"), "--scene", "night")
    assert refused.returncode == 2 and "camera_shift" in refused.stderr


def test_eval_records_the_scene(tmp_path):
    from vla_ros.policy.evaluation import evaluate

    summary = evaluate(None, "train", 1, out_dir=tmp_path, videos=0, max_steps=3, progress=False, scene="appearance")
    assert summary["scene"] == "appearance"
    assert json.loads((tmp_path / "results.json").read_text())["scene"] == "appearance"


@pytest.mark.parametrize("command", [("eval",), ("data", "generate"), ("sim", "run")])
def test_the_commands_take_a_scene(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([*command, "--help"])
    text = capsys.readouterr().out
    assert "--scene" in text and "{default,camera_shift,appearance}" in text
