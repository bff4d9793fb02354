"""rosbag2 bags: reading with checks, writing without half-finished outputs, playback timing, sim episodes as bags.

The modules here do not import rclpy at module level (except `recorder`, the ROS side of `vla-ros bag record`),
so that offline tools (replay, golden checks, data generation) can use them anywhere.
"""
