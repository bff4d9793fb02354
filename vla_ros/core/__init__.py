"""Pure logic with no rclpy import: unit-testable anywhere."""
