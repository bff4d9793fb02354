"""The built-in VLA policy: camera frame + instruction → action tokens (a transformer; early, middle or late fusion).

Modules import torch and transformers (all but configuration_vla); nothing here imports rclpy.
`vla-ros train|eval|export-policy` are parsed in `vla_ros/commands/policy.py`, which imports the torch
modules inside its handlers.
"""
