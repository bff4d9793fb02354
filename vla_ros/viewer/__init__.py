"""Seeing what the robot sees and intends: the scene as plain shapes (`scene`, shared by the RViz markers and the
viewer), message readers that take rclpy and rosbags messages alike (`feed`), and the rerun viewer (`recording`,
`server`, `bag`, `evaluation`). Nothing here imports rclpy; the ROS side is vla_ros/nodes/markers.py and
vla_ros/nodes/viewer.py.
"""
