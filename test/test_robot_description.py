"""The wx250s URDF against our MJCF: the committed file is the generator's output, every link frame matches MuJoCo's
forward kinematics, the TF tree composes to the same poses, and the camera frames with CameraInfo's K put a block
where the rendered image shows it."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from vla_ros.robot.frames import fixed_frames, moving_frames
from vla_ros.robot.kinematics import ARM_MJCF, EE_SITE
from vla_ros.robot.urdf import BASE_LINK, EE_LINK, URDF_PATH, Transform, UrdfError, load_robot, parse_urdf
from vla_ros.robot.urdf_export import urdf_text

ROBOT = load_robot()


def test_committed_urdf_is_the_one_generated_from_the_mjcf():
    assert URDF_PATH.read_text(encoding="utf-8") == urdf_text(), \
        "robot/assets/wx250s.urdf is stale: run `python -m vla_ros.robot.urdf_export`"


def _random_positions(model: mujoco.MjModel, rng: np.random.Generator) -> dict[str, float]:
    positions = {}
    for joint in range(model.njnt):
        low, high = model.jnt_range[joint]
        positions[model.joint(joint).name] = float(rng.uniform(low, high))
    positions["right_finger"] = positions["left_finger"]  # the MJCF's equality constraint; the URDF's mimic
    return positions


def test_every_link_frame_matches_mujoco_forward_kinematics():
    model = mujoco.MjModel.from_xml_path(str(ARM_MJCF))
    data = mujoco.MjData(model)
    rng = np.random.default_rng(0)
    bodies = [model.body(b).name for b in range(1, model.nbody)]
    assert set(bodies) | {EE_LINK} == set(ROBOT.links)
    for _ in range(50):
        positions = _random_positions(model, rng)
        for name, value in positions.items():
            data.qpos[model.jnt_qposadr[model.joint(name).id]] = value
        mujoco.mj_kinematics(model, data)
        # the URDF takes the right finger from the left one (mimic): leave it out of what it is given
        poses = ROBOT.link_poses({k: v for k, v in positions.items() if k != "right_finger"})
        for name in bodies:
            body = model.body(name).id
            np.testing.assert_allclose(poses[name].translation, data.xpos[body], atol=1e-9, err_msg=name)
            np.testing.assert_allclose(poses[name].rotation, data.xmat[body].reshape(3, 3), atol=1e-9, err_msg=name)
        site = model.site(EE_SITE).id
        np.testing.assert_allclose(poses[EE_LINK].translation, data.site_xpos[site], atol=1e-9)
        np.testing.assert_allclose(poses[EE_LINK].rotation, data.site_xmat[site].reshape(3, 3), atol=1e-9)


def test_the_tf_tree_composes_to_the_link_poses():
    positions = {"waist": 0.4, "shoulder": -0.3, "elbow": 0.5, "forearm_roll": 1.0, "wrist_angle": 0.7,
                 "wrist_rotate": -2.0, "left_finger": 0.03}
    frames = {f.child: f for f in moving_frames(ROBOT, positions) + fixed_frames(ROBOT)}
    assert set(frames) == set(ROBOT.links) - {BASE_LINK}
    assert {f.child for f in fixed_frames(ROBOT)} == {EE_LINK}
    poses = ROBOT.link_poses(positions)
    for link, expected in poses.items():
        pose, name = Transform.identity(), link
        while name != BASE_LINK:  # walk up the tree as a TF listener would
            frame = frames[name]
            x, y, z, w = frame.quaternion_xyzw
            rotation = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                                 [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                                 [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
            pose, name = Transform(rotation, frame.translation) @ pose, frame.parent
        np.testing.assert_allclose(pose.translation, expected.translation, atol=1e-9, err_msg=link)
        np.testing.assert_allclose(pose.rotation, expected.rotation, atol=1e-9, err_msg=link)
    # the right finger mimics the left one, as the gripper's single servo moves both
    assert frames["right_finger_link"].translation[1] == pytest.approx(-0.03)


def test_tf_message_carries_every_frame():
    from geometry_msgs.msg import TransformStamped

    from vla_ros.nodes.frames import tf_message

    class FakeTFMessage:  # tf2_msgs has no wheel; the message is a list of TransformStamped
        def __init__(self, transforms):
            self.transforms = transforms

    frames = moving_frames(ROBOT, {"waist": 1.0})
    msg = tf_message(frames, "stamp", FakeTFMessage)
    assert [t.child_frame_id for t in msg.transforms] == [f.child for f in frames]
    assert all(isinstance(t, TransformStamped) and t.header.stamp == "stamp" for t in msg.transforms)
    waist = msg.transforms[0]
    assert (waist.header.frame_id, waist.child_frame_id) == ("base_link", "shoulder_link")
    assert waist.transform.rotation.z == pytest.approx(np.sin(0.5))


@pytest.mark.parametrize("text, expected", [
    ("<robot", "is not valid XML"),
    ("<model/>", "the root element is <model>"),
    ('<robot><link name="a"/><link name="b"/></robot>', "exactly one root link"),
    ('<robot><link name="a"/><link name="b"/><joint name="j" type="floating"><parent link="a"/>'
     '<child link="b"/></joint></robot>', "has type 'floating'"),
])
def test_unusable_urdf_is_one_sentence(text, expected):
    with pytest.raises(UrdfError, match=expected):
        parse_urdf(text, "test.urdf")


def test_camera_frame_and_camera_info_put_a_block_where_the_image_shows_it():
    from vla_ros.robot.frames import OPTICAL_FROM_MUJOCO_CAMERA  # noqa: F401 - the convention under test
    from vla_ros.sim.camera_frames import camera_frame_id, camera_frames, camera_matrix
    from vla_ros.sim.workcell import Workcell

    size = 192
    with Workcell(image_size=size, camera="over_shoulder") as workcell:
        workcell.reset(seed=3)
        frames = {f.child: f for f in camera_frames(workcell.model)}
        frame = frames[camera_frame_id("over_shoulder")]
        assert frame.parent == BASE_LINK
        x, y, z, w = frame.quaternion_xyzw
        rotation = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                             [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                             [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
        k = camera_matrix(float(workcell.model.cam("over_shoulder").fovy[0]), size, size)
        image = workcell.render().astype(int)
        world = workcell.world_state()
        checked = 0
        for colour, rgb in (("red", (217, 31, 25)), ("green", (38, 166, 51)), ("yellow", (242, 204, 25))):
            key = next((p.key for p in workcell.layout.placements if p.key == colour), None)
            if key is None:
                continue
            top = world.objects[key].pos + [0, 0, world.objects[key].half_extents[2]]
            in_camera = rotation.T @ (top - frame.translation)
            assert in_camera[2] > 0, "the block is behind the optical frame: its z must point along the view"
            u, v, _ = k @ (in_camera / in_camera[2])
            # the block's pixels: close to its colour (lit, so a tolerance)
            mask = np.abs(image - np.array(rgb)).sum(axis=2) < 120
            rows, cols = np.nonzero(mask)
            assert len(rows) > 10, f"the {colour} block is not visible"
            near = np.hypot(cols - u, rows - v) < 20
            assert near.sum() > 0.8 * len(rows), f"the {colour} block's pixels are not around the projection"
            assert np.hypot(cols[near].mean() - u, rows[near].mean() - v) < 4.0
            checked += 1
        assert checked > 0
