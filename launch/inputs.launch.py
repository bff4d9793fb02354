"""ros2 launch vla_ros inputs.launch.py [name:=value ...] — the graph described by config/inputs.yaml."""

from pathlib import Path

from vla_ros.graphs.launch_description import generate_graph_launch_description


def generate_launch_description():
    # Installed: share/vla_ros/launch/ beside share/vla_ros/config/; in the source tree: launch/ beside config/.
    return generate_graph_launch_description(Path(__file__).resolve().parent.parent / "config" / "inputs.yaml")
