"""The scene the markers and the viewer draw, from plain data: chunk paths, executed window, vetoes, grounding."""

from __future__ import annotations

import numpy as np
import pytest

from vla_ros.core.action_chunks import JOINT_POSITION, ActionChunk
from vla_ros.core.stages.gate import GateStage, SafetySettings, split_veto, veto_text
from vla_ros.robot.kinematics import ArmKinematics
from vla_ros.robot.urdf import EE_LINK, load_robot
from vla_ros.robot.wx250s import ARM_JOINTS
from vla_ros.viewer import scene
from vla_ros.viewer.scene import SceneSettings, SceneState

HOME = [0.0, -0.3, 0.3, 0.0, 1.5, 0.0]


def _scene(execute_steps: int = 3) -> SceneState:
    state = SceneState(load_robot(), SceneSettings(execute_steps=execute_steps))
    state.update_joints(list(ARM_JOINTS), HOME, 10.0)
    state.update_joints(list(ARM_JOINTS), [0.5, *HOME[1:]], 10.5)  # moved later: the chunk must start at 10.0's pose
    return state


def test_chunk_path_starts_where_the_arm_was_at_the_chunks_frame_and_adds_the_deltas():
    state = _scene()
    actions = np.zeros((8, 7))
    actions[:, 0] = 0.01
    actions[:, 6] = np.linspace(1, 0, 8)
    path = state.on_chunk(ActionChunk(actions, int(10.2e9), 0.2, 0, "t"), received_s=10.45)
    start, _ = ArmKinematics().fk(np.array(HOME))
    np.testing.assert_allclose(path.path[0], start, atol=1e-6)
    np.testing.assert_allclose(path.path[-1], start + [0.08, 0, 0], atol=1e-6)
    # received 0.25 s after its frame: step 1 is the present one, and the executor runs 3 steps from it
    assert path.window == (1, 4)
    shapes = {s.ns: s for s in state.shapes()}
    assert len(shapes["chunk_window"].points) == 4
    assert shapes["chunk_steps"].colours[0][1] > shapes["chunk_steps"].colours[-1][1]  # open green → closed red


def test_joint_position_chunks_are_drawn_through_forward_kinematics():
    state = _scene()
    targets = np.tile([*HOME, 1.0], (8, 1))
    targets[:, 0] = np.linspace(0.0, 0.7, 8)
    path = state.on_chunk(ActionChunk(targets, int(10.0e9), 0.2, 0, "t", JOINT_POSITION), received_s=10.0)
    robot = load_robot()
    expected = robot.link_poses(dict(zip(ARM_JOINTS, targets[-1, :6])))[EE_LINK].translation
    np.testing.assert_allclose(path.path[-1], expected, atol=1e-9)


def test_no_path_before_a_joint_state():
    state = SceneState(load_robot())
    assert state.on_chunk(ActionChunk(np.zeros((8, 7)), 0, 0.2, 0, "t"), 0.0) is None
    assert [s.ns for s in state.shapes()] == ["workspace"]


def test_workspace_box_has_its_twelve_edges():
    box = scene.workspace_box([0.1, -0.25, -0.05], [0.45, 0.25, 0.25])
    assert box.kind == scene.LINE_LIST and box.points.shape == (24, 3)
    edges = box.points.reshape(12, 2, 3)
    lengths = sorted(np.round(np.linalg.norm(edges[:, 0] - edges[:, 1], axis=1), 6))
    assert lengths == [0.3] * 4 + [0.35] * 4 + [0.5] * 4


def test_a_veto_is_drawn_where_the_arm_was_with_its_rule():
    state = _scene()
    veto = state.on_veto("workspace: end-effector target [0.5, 0, 0.1] m is outside the workspace box", 11.0)
    assert veto.rule == "workspace"
    np.testing.assert_allclose(veto.spot, state.ee_position())
    text = next(s for s in state.shapes() if s.ns == "veto_text")
    assert text.text.startswith("veto: workspace")
    state.on_task("push the blue block to the left")  # a new task starts a clean scene
    assert not any(s.ns.startswith("veto") for s in state.shapes())


def test_the_gate_names_the_rule_in_every_veto():
    from vla_ros.nodes.messages import RCLPY
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    from sensor_msgs.msg import JointState

    stage = GateStage(SafetySettings(), ArmKinematics(), RCLPY)
    stage.gate.active = True
    stage.on_joint_state(JointState(name=list(ARM_JOINTS), position=HOME, velocity=[0.0] * 6, effort=[0.0] * 6), 1.0)
    point = JointTrajectoryPoint(positions=[float("nan")] * 6)
    point.time_from_start.nanosec = 200_000_000
    outputs = stage.on_arm(JointTrajectory(joint_names=list(ARM_JOINTS), points=[point]), 1.0, 1.0)
    vetoes = [m.data for topic, m in outputs if topic == "/vla/safety/veto"]
    assert vetoes and split_veto(vetoes[0]) == ("finite", "command contains NaN or inf")


@pytest.mark.parametrize("rule, reason", [("workspace", "outside: the box"), ("", "safety monitor is not active"),
                                          ("stale_input", "joint state is 0.3 s old\nsecond line")])
def test_veto_text_round_trip(rule, reason):
    assert split_veto(veto_text(rule, reason)) == (rule, reason)


def test_grounding_and_status_shapes():
    state = _scene()
    state.on_task("put the red block on the plate")
    state.on_plan("reach red block")
    state.on_grounding((0.3, 0.05), (0.25, -0.1), 12.0)
    shapes = {s.ns: s for s in state.shapes()}
    np.testing.assert_allclose(shapes["grounding_target"].points[0], [0.3, 0.05, scene.BLOCK_HALF_HEIGHT])
    assert shapes["grounding_reference"].kind == scene.CYLINDER
    assert "task: put the red block on the plate" in shapes["status"].text and "plan: reach" in shapes["status"].text
