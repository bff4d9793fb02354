"""vla_ros: a ROS 2 stack that turns camera frames and plain-language instructions into safe arm commands."""

__version__ = "0.5.0"
