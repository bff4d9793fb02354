"""markers and robot_state as processes: the URDF latched on /robot_description, and MarkerArrays that draw the
chunk's end-effector path from where the arm stood, its executed window, and the last veto with its rule."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory
from visualization_msgs.msg import Marker, MarkerArray

from ros_harness import LaunchedGraph, RosProbe
from vla_ros.core import topics
from vla_ros.core.action_tokens import task_hash
from vla_ros.nodes.markers import MARKERS
from vla_ros.nodes.messages import RCLPY
from vla_ros.nodes.qos import COMMANDS, DEFAULT, LATCHED
from vla_ros.robot.frames import ROBOT_DESCRIPTION
from vla_ros.robot.kinematics import ArmKinematics
from vla_ros.robot.urdf import URDF_PATH
from vla_ros.robot.wx250s import ARM_JOINTS

pytestmark = pytest.mark.ros

GRAPH = """
description: markers test
arguments: {}
nodes:
  - {name: markers, executable: markers, required: true, parameters: {execute_steps: 2, republish_period: 0.0}}
  - {name: robot_state, executable: robot_state, required: true}
"""
HOME = [0.0, -0.3, 0.3, 0.0, 1.5, 0.0]
TASK = "pick up the red block"


def test_markers_draw_the_chunk_from_the_measured_arm_and_the_veto_with_its_rule(tmp_path):
    path = tmp_path / "markers.yaml"
    path.write_text(GRAPH)
    graph = LaunchedGraph(str(path))
    probe = RosProbe("markers_probe")
    try:
        arrays = probe.collect(MarkerArray, MARKERS, LATCHED)
        descriptions = probe.collect(String, ROBOT_DESCRIPTION, LATCHED)
        joints = probe.node.create_publisher(JointState, topics.JOINT_STATES, DEFAULT)
        task = probe.node.create_publisher(String, topics.TASK, LATCHED)
        chunks = probe.node.create_publisher(JointTrajectory, topics.ACTION_CHUNK, COMMANDS)
        vetoes = probe.node.create_publisher(String, topics.SAFETY_VETO, COMMANDS)
        probe.wait_for_reports(["markers", "robot_state"], timeout_s=60)
        probe.spin_until(lambda: descriptions, 10, "/robot_description")
        assert descriptions[-1].data == URDF_PATH.read_text(encoding="utf-8")
        task.publish(String(data=TASK))

        def by_ns(array: MarkerArray) -> dict[str, Marker]:
            return {m.ns: m for m in array.markers}

        actions = np.zeros((8, 7))
        actions[:, 2] = 0.01  # up 1 cm a step
        actions[:, 6] = 1.0
        deadline = time.monotonic() + 30
        while not any("chunk_window" in by_ns(a) for a in arrays):
            assert time.monotonic() < deadline, f"no chunk marker\n{graph.output[-2000:]}"
            now = probe.node.get_clock().now()
            state = JointState(name=list(ARM_JOINTS), position=HOME)
            state.header.stamp = now.to_msg()
            joints.publish(state)
            probe.spin_for(0.05)
            chunks.publish(RCLPY.action_chunk(actions, now.nanoseconds, 0.2, task_hash(TASK), "0"))
            probe.spin_for(0.15)
        drawn = next(a for a in arrays if "chunk_window" in by_ns(a))
        assert drawn.markers[0].action == Marker.DELETEALL  # each array replaces the whole scene
        markers = by_ns(drawn)
        start, _ = ArmKinematics().fk(np.array(HOME))
        path = np.array([[p.x, p.y, p.z] for p in markers["chunk_path"].points])
        np.testing.assert_allclose(path[0], start, atol=2e-3)  # the joint state the markers node held then
        np.testing.assert_allclose(path[-1] - path[0], [0, 0, 0.08], atol=1e-6)
        assert markers["chunk_path"].header.frame_id == "base_link"
        assert len(markers["chunk_window"].points) == 3  # two executed steps: three positions
        assert markers["workspace"].type == Marker.LINE_LIST and len(markers["workspace"].points) == 24
        assert "task: " + TASK in markers["status"].text

        count = len(arrays)
        deadline = time.monotonic() + 10
        while not any("veto_text" in by_ns(a) for a in arrays[count:]):
            assert time.monotonic() < deadline, "no veto marker"
            vetoes.publish(String(data="workspace: end-effector target [0.6, 0.0, 0.1] m is outside the box"))
            probe.spin_for(0.3)
        markers = by_ns(next(a for a in arrays[count:] if "veto_text" in by_ns(a)))
        assert markers["veto_text"].text.startswith("veto: workspace")
        spot = markers["veto"].pose.position
        np.testing.assert_allclose([spot.x, spot.y, spot.z], start, atol=2e-3)
    finally:
        probe.close()
        graph.stop()
