"""Subcommands of `vla-ros` that talk to ROS or describe the installation."""
