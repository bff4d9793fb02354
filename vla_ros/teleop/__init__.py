"""Teleoperation: a human's 7-D end-effector deltas as one more chunk source for the control loop and the gate.

Pure logic only (no rclpy): the joystick mapping (`mapping`), the keyboard's virtual joystick (`keyboard`), the
inverse mapping a scripted joystick uses (`scripted`) and the teleop node's settings (`settings`). The node is
`vla_ros/nodes/teleop.py`; the terminal UI is `vla-ros teleop --keyboard`.
"""
