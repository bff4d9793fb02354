"""Thin rclpy nodes: parameters, QoS and message conversion around vla_ros.core."""
