"""Safety rules as pure functions and the fail-closed gate that applies them (no rclpy)."""
