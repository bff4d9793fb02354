"""The pipeline's stages, free of rclpy, MuJoCo and torch: ingest → policy → decoder → control loop → gate.

Each stage has a frozen settings dataclass (the one place its settings are declared) and handlers that take
messages (rclpy's or rosbags', read duck-typed) or plain data and return what to publish. The ROS nodes,
offline replay and the in-process rollout are drivers of these objects: they move data in and out.
"""
