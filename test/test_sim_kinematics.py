"""Kinematics of the wx250s model: published home pose, IK round trips, limits, the delta convention."""

import mujoco
import numpy as np
import pytest

from vla_ros.robot.wx250s import ARM_JOINTS
from vla_ros.robot.kinematics import ArmKinematics, Pose, delta_rotation, rot_y, rot_z, rotation_error, rotation_to_rpy
from vla_ros.sim.workcell import Workcell


@pytest.fixture(scope="module")
def kin():
    return ArmKinematics()


def test_home_pose_matches_interbotix_mr_description(kin):
    # mr_descriptions.wx250s.M: identity rotation, translation (0.458325, 0, 0.36065)
    pos, rot = kin.fk(np.zeros(6))
    np.testing.assert_allclose(pos, [0.458325, 0.0, 0.36065], atol=1e-9)
    np.testing.assert_allclose(rot, np.eye(3), atol=1e-9)


def test_screw_axes_match_interbotix_mr_description(kin):
    # Space-frame screw axes S_i = (w, -w x p) from mr_descriptions.wx250s.Slist
    slist = np.array([[0, 0, 1, 0, 0, 0], [0, 1, 0, -0.11065, 0, 0], [0, 1, 0, -0.36065, 0, 0.04975],
                      [1, 0, 0, 0, 0.36065, 0], [0, 1, 0, -0.36065, 0, 0.29975], [1, 0, 0, 0, 0.36065, 0]])
    kin.fk(np.zeros(6))
    for i, name in enumerate(ARM_JOINTS):
        j = kin.model.joint(name).id
        w, p = kin.data.xaxis[j], kin.data.xanchor[j]
        np.testing.assert_allclose(np.concatenate([w, -np.cross(w, p)]), slist[i], atol=1e-9)


def test_joint_limits_are_the_urdf_ones(kin):
    expected_deg = [(-180, 180), (-108, 114), (-123, 92), (-180, 180), (-100, 123), (-180, 180)]
    np.testing.assert_allclose(np.degrees(kin.joint_limits), expected_deg, atol=1e-3)


def test_ik_round_trip_on_random_workspace_targets(kin):
    rng = np.random.default_rng(1)
    seed = np.array([0.0, -0.3, 0.3, 0.0, 1.5, 0.0])
    for _ in range(40):
        q = rng.uniform([-1.2, -0.8, -0.8, -0.5, 0.2, -1.5], [1.2, 0.6, 0.8, 0.5, 1.8, 1.5])
        pos, rot = kin.fk(q)
        result = kin.ik(seed, pos, rot)
        assert result.reached, (q, result)
        got_pos, got_rot = kin.fk(result.q)
        assert np.linalg.norm(got_pos - pos) < 1e-3
        assert np.linalg.norm(rotation_error(rot, got_rot)) < np.radians(0.6)
        assert np.all(result.q >= kin.joint_limits[:, 0]) and np.all(result.q <= kin.joint_limits[:, 1])


def test_unreachable_target_is_reported_and_stays_in_limits(kin):
    result = kin.ik(np.zeros(6), np.array([1.0, 0.0, 0.3]), np.eye(3))
    assert not result.reached
    assert result.pos_err_m > 0.3  # the stretched arm reaches about 0.64 m
    assert np.all(result.q >= kin.joint_limits[:, 0]) and np.all(result.q <= kin.joint_limits[:, 1])


def test_apply_delta_follows_team_convention(kin):
    down = rot_y(np.pi / 2)
    q = kin.ik(np.array([0, -0.3, 0.3, 0, 1.5, 0]), np.array([0.3, 0.0, 0.15]), down).q
    start = Pose(*kin.fk(q))
    target, result = kin.apply_delta(q, start, np.array([0.02, -0.01, 0.03, 0.0, 0.0, 0.2, 1.0]))
    assert result.reached
    np.testing.assert_allclose(target.pos, start.pos + [0.02, -0.01, 0.03], atol=1e-9)
    # dyaw turns the gripper about the BASE z axis, pre-multiplied
    np.testing.assert_allclose(target.rot, rot_z(0.2) @ start.rot, atol=1e-9)
    pos, rot = kin.fk(result.q)
    assert np.linalg.norm(pos - target.pos) < 1e-3
    # an unreachable delta leaves the target where the clamped solution is, not out in space
    far, far_result = kin.apply_delta(q, start, np.array([0.8, 0, 0, 0, 0, 0, 1.0]))
    assert not far_result.reached
    np.testing.assert_allclose(far.pos, kin.fk(far_result.q)[0], atol=1e-9)


def test_rpy_inverts_delta_rotation():
    rng = np.random.default_rng(0)
    for _ in range(50):
        rpy = rng.uniform([-3, -1.5, -3], [3, 1.5, 3])
        np.testing.assert_allclose(rotation_to_rpy(delta_rotation(*rpy)), rpy, atol=1e-9)


def test_workcell_arm_matches_arm_only_model(kin):
    workcell = Workcell(render=False)
    workcell.reset(0)
    q = workcell.joint_positions()
    pos, quat = workcell.ee_pose()
    kin_pos, kin_rot = kin.fk(q)
    np.testing.assert_allclose(pos, kin_pos, atol=1e-9)
    rot = np.empty(9)
    mujoco.mju_quat2Mat(rot, quat)
    np.testing.assert_allclose(rot.reshape(3, 3), kin_rot, atol=1e-6)
