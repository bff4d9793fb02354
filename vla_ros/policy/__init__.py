"""The built-in VLA policy: camera frame + instruction → action tokens (early-fusion transformer).

Modules import torch and transformers; nothing here imports rclpy. `vla-ros train|eval|export-policy`
are parsed in `vla_ros/commands/policy.py`, which imports these modules inside its handlers.
"""
