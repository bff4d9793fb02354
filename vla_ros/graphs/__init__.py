"""Graphs: which nodes run together, and the ways to start and talk to them.

- `spec`: graph files (`config/<graph>.yaml`): loading, typed arguments, resolution into nodes (pyyaml only).
- `launch_description`: the `launch_ros` description that `launch/<graph>.launch.py` returns to `ros2 launch`.
- `processes`: each node as a process without a ROS 2 distribution (`vla-ros launch`), and `vla-ros launch`
  itself as a subprocess.
- `probe`: a node in its own rclpy context that publishes, subscribes and waits on a running graph.
- `sim_session`: tasks on the simulated `widowx` graph through ROS (the demo, benchmarks, closed-loop tests).

Nothing is imported here, so importing one module never loads rclpy or launch.
"""
