"""The built-in VLA policy: camera frame + instruction → action tokens (early-fusion transformer).

Modules import torch and transformers; nothing here imports rclpy. `commands` registers
`vla-ros train|eval|export-policy` and keeps its heavy imports inside the handlers.
"""
