"""/robot_description, /tf and /tf_static for a node (widowx_sim, robot_state): the URDF's frames as messages.

tf2_msgs/TFMessage ships with every ROS 2 distribution but has no PyPI wheel, so where no distribution is
installed /tf and /tf_static are not published (said once in the log); /robot_description (std_msgs/String) is,
and the viewer computes the frames from it and /joint_states itself. QoS as tf2_ros and robot_state_publisher
use them: /tf reliable depth 100; /tf_static and /robot_description reliable, transient local, depth 1.
"""

from __future__ import annotations

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from vla_ros.nodes.qos import LATCHED
from vla_ros.robot.frames import ROBOT_DESCRIPTION, TF, TF_STATIC, FrameTransform, fixed_frames, joint_map, moving_frames
from vla_ros.robot.urdf import RobotModel

TF_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)
TF_STATIC_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)


def tf_message_class():
    """tf2_msgs.msg.TFMessage, or None where it is not installed (no distribution: there is no wheel of it)."""
    try:
        from tf2_msgs.msg import TFMessage  # noqa: PLC0415
    except ImportError:
        return None
    return TFMessage


class RobotFrames:
    """Publishes the robot's description once, its fixed frames (and `extra_static` ones) once, its joints' on demand."""

    def __init__(self, node: Node, robot: RobotModel, *, extra_static: list[FrameTransform] = (),
                 publish_description: bool = True, prefix: str = ""):
        self.node, self.robot, self.prefix = node, robot, prefix
        if publish_description:
            self.description_pub = node.create_publisher(String, ROBOT_DESCRIPTION, LATCHED)
            self.description_pub.publish(String(data=robot.text))
        self.tf_class = tf_message_class()
        self.tf_pub = self.static_pub = None
        if self.tf_class is None:
            node.get_logger().info("tf2_msgs is not installed (it comes with a ROS 2 distribution): /tf and /tf_static "
                                   "are not published; /robot_description and /joint_states are")
            return
        self.tf_pub = node.create_publisher(self.tf_class, TF, TF_QOS)
        self.static_pub = node.create_publisher(self.tf_class, TF_STATIC, TF_STATIC_QOS)
        self.static_pub.publish(self._message(fixed_frames(robot, prefix) + list(extra_static),
                                              node.get_clock().now().to_msg()))

    @property
    def publishes_tf(self) -> bool:
        return self.tf_pub is not None

    def publish_joints(self, names, positions, stamp) -> None:
        """/tf for a JointState's positions, stamped `stamp` (builtin_interfaces/Time)."""
        if self.tf_pub is None:
            return
        values = joint_map(names, positions)
        if values:
            self.tf_pub.publish(self._message(moving_frames(self.robot, values, self.prefix), stamp))

    def _message(self, frames: list[FrameTransform], stamp):
        return tf_message(frames, stamp, self.tf_class)


def tf_message(frames: list[FrameTransform], stamp, tf_class):
    """A TFMessage (`tf_class`) of geometry_msgs/TransformStamped, one per frame, all stamped `stamp`."""
    from geometry_msgs.msg import TransformStamped  # noqa: PLC0415

    transforms = []
    for frame in frames:
        msg = TransformStamped()
        msg.header.stamp = stamp
        msg.header.frame_id, msg.child_frame_id = frame.parent, frame.child
        msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = (
            float(v) for v in frame.translation)
        (msg.transform.rotation.x, msg.transform.rotation.y, msg.transform.rotation.z,
         msg.transform.rotation.w) = (float(v) for v in frame.quaternion_xyzw)
        transforms.append(msg)
    return tf_class(transforms=transforms)
