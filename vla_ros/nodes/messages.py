"""The message kit of the nodes: rclpy's message classes for `vla_ros.core.messages.MessageKit`."""

from __future__ import annotations

from builtin_interfaces.msg import Duration, Time
from sensor_msgs.msg import Image
from std_msgs.msg import Header, Int32MultiArray, MultiArrayDimension, MultiArrayLayout, String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from vla_ros.core.messages import MessageKit

RCLPY = MessageKit(Time=Time, Duration=Duration, Header=Header, Image=Image, String=String,
                   Int32MultiArray=Int32MultiArray, MultiArrayLayout=MultiArrayLayout,
                   MultiArrayDimension=MultiArrayDimension, JointTrajectory=JointTrajectory,
                   JointTrajectoryPoint=JointTrajectoryPoint, numpy_sequences=False)
