"""markers: what the policy intends and why the arm stopped, as visualization_msgs/MarkerArray on /vla/markers.

The shapes come from `vla_ros.viewer.scene` (the viewer draws the same): the current chunk's end-effector path
(thin blue, steps coloured by the gripper command) and the executed window (thick green), the workspace box, the
spot of the last veto with its rule, the grounded target on the table (from grounding_probe's /vla/grounding)
and the task and plan as text. Each message starts with DELETEALL, then every current shape: a display shows
exactly the present scene. Latched (transient local), so RViz or Foxglove get it when they join.
"""

from __future__ import annotations

import sys

from geometry_msgs.msg import Point, PoseArray
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import ColorRGBA, String
from trajectory_msgs.msg import JointTrajectory
from visualization_msgs.msg import Marker, MarkerArray

from vla_ros.core import topics
from vla_ros.core.action_chunks import ChunkError
from vla_ros.core.messages import read_chunk
from vla_ros.nodes.diagnostics import OK, DiagnosticsReporter
from vla_ros.nodes.parameters import SettingsParameters
from vla_ros.nodes.qos import COMMANDS, LATCHED
from vla_ros.nodes.runtime import run_node
from vla_ros.robot.urdf import load_robot
from vla_ros.viewer import scene
from vla_ros.viewer.feed import GROUNDING
from vla_ros.viewer.scene import SceneSettings, SceneState, Shape

MARKERS = "/vla/markers"
MARKER_TYPES = {scene.LINE_STRIP: Marker.LINE_STRIP, scene.LINE_LIST: Marker.LINE_LIST,
                scene.SPHERE_LIST: Marker.SPHERE_LIST, scene.SPHERE: Marker.SPHERE, scene.CUBE: Marker.CUBE,
                scene.CYLINDER: Marker.CYLINDER, scene.TEXT: Marker.TEXT_VIEW_FACING}
BEST_EFFORT = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)


def _colour(rgba) -> ColorRGBA:
    return ColorRGBA(r=float(rgba[0]), g=float(rgba[1]), b=float(rgba[2]), a=float(rgba[3]))


def marker(shape: Shape, frame_id: str, stamp) -> Marker:
    msg = Marker(ns=shape.ns, id=shape.id, type=MARKER_TYPES[shape.kind], action=Marker.ADD, text=shape.text)
    msg.header.frame_id, msg.header.stamp = frame_id, stamp
    msg.pose.orientation.w = 1.0
    msg.scale.x, msg.scale.y, msg.scale.z = (float(v) for v in shape.scale)
    msg.color = _colour(shape.colour)
    if shape.kind in (scene.LINE_STRIP, scene.LINE_LIST, scene.SPHERE_LIST):
        msg.points = [Point(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in shape.points]
        if shape.colours is not None:
            msg.colors = [_colour(c) for c in shape.colours]
    else:
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in shape.points[0])
    return msg


class Markers(Node):
    def __init__(self):
        super().__init__("markers")
        self.settings = SettingsParameters(self, SceneSettings).value
        self.scene = SceneState(load_robot(), self.settings)
        self.published = 0
        self.publisher = self.create_publisher(MarkerArray, MARKERS, LATCHED)
        self.create_subscription(JointState, topics.JOINT_STATES, self.on_joint_states, BEST_EFFORT)
        self.create_subscription(JointTrajectory, topics.ACTION_CHUNK, self.on_chunk, COMMANDS)
        self.create_subscription(String, topics.SAFETY_VETO, self.on_veto, COMMANDS)
        self.create_subscription(String, topics.TASK, self.on_task, LATCHED)
        self.create_subscription(String, topics.PLAN, self.on_plan, COMMANDS)
        self.create_subscription(PoseArray, GROUNDING, self.on_grounding, COMMANDS)
        if self.settings.republish_period > 0:
            self.create_timer(self.settings.republish_period, self.publish)
        DiagnosticsReporter(self, lambda: (OK, "publishing", {"marker_arrays": str(self.published)}))
        self.publish()

    def now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def on_joint_states(self, msg: JointState) -> None:
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        self.scene.update_joints(msg.name, msg.position, stamp or self.now_s())

    def on_chunk(self, msg: JointTrajectory) -> None:
        try:
            chunk = read_chunk(msg)
        except ChunkError:
            return  # the executor refuses and reports it; nothing to draw
        if self.scene.on_chunk(chunk, self.now_s()) is not None:
            self.publish()

    def on_veto(self, msg: String) -> None:
        self.scene.on_veto(msg.data, self.now_s())
        self.publish()

    def on_task(self, msg: String) -> None:
        self.scene.on_task(msg.data)
        self.publish()

    def on_plan(self, msg: String) -> None:
        if msg.data != self.scene.plan:
            self.scene.on_plan(msg.data)
            self.publish()

    def on_grounding(self, msg: PoseArray) -> None:
        if msg.poses:
            places = [(p.position.x, p.position.y) for p in msg.poses]
            self.scene.on_grounding(places[0], places[1] if len(places) > 1 else None, self.now_s())
            self.publish()

    def publish(self) -> None:
        stamp = self.get_clock().now().to_msg()
        clear = Marker(action=Marker.DELETEALL)
        clear.header.frame_id, clear.header.stamp = self.settings.frame_id, stamp
        markers = [clear] + [marker(shape, self.settings.frame_id, stamp) for shape in self.scene.shapes()]
        self.publisher.publish(MarkerArray(markers=markers))
        self.published += 1


def main(args: list[str] | None = None) -> int:
    return run_node("markers", Markers, args)


if __name__ == "__main__":
    sys.exit(main())
