"""Teleoperation: a human's 7-D end-effector deltas as one more chunk source for the control loop and the gate.

Pure logic (no rclpy): the joystick mapping (`mapping`), the keyboard's virtual joystick (`keyboard`), the inverse
mapping a scripted joystick uses (`scripted`), the teleop node's settings (`settings`) and terminal key reading
(`terminal`). `console` is the ROS client behind `vla-ros teleop` (the keyboard UI, the mode switch); the node is
`vla_ros/nodes/teleop.py`.
"""
