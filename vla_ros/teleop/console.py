"""`vla-ros teleop`: the keyboard's terminal UI (a virtual joystick on /vla/teleop/keyboard) and the mode switch.

The UI shows the key bindings, who is in control, the last key and the recorder's status, and publishes the
keyboard's sensor_msgs/Joy at `rate_hz` while it runs; the graph's teleop node (teleop:=keyboard) turns those
into chunks like a gamepad's. Quitting stops the messages: the teleop node goes silent and the arm holds.
"""

from __future__ import annotations

import sys
import time

from vla_ros.core import topics
from vla_ros.teleop.keyboard import KeyboardJoystick, bindings_table
from vla_ros.teleop.settings import DEFAULT_JOY_TOPIC
from vla_ros.teleop.terminal import ESCAPE, KeyReader


class _RosClient:
    """A node in its own context for a command-line client."""

    def __init__(self, name: str):
        import rclpy  # noqa: PLC0415

        from vla_ros.core.dds_profile import use_discovery_profile  # noqa: PLC0415

        use_discovery_profile()
        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context, start_parameter_services=False)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.context)


def switch_mode(mode: str, timeout_s: float = 10.0) -> tuple[bool, str]:
    """Ask the chunk executor to give control to `mode` (teleop or policy); (ok, its answer or why not)."""
    from std_srvs.srv import SetBool  # noqa: PLC0415

    client = _RosClient("vla_ros_teleop_mode")
    try:
        service = client.node.create_client(SetBool, topics.TELEOP_ENGAGE_SERVICE)
        if not service.wait_for_service(timeout_sec=timeout_s):
            return False, (f"no {topics.TELEOP_ENGAGE_SERVICE} service after {timeout_s:.0f} s: is the graph's "
                           "chunk_executor running in this ROS_DOMAIN_ID?")
        future = service.call_async(SetBool.Request(data=mode == "teleop"))
        deadline = time.monotonic() + timeout_s
        while not future.done():
            if time.monotonic() > deadline:
                return False, f"the chunk executor did not answer within {timeout_s:.0f} s"
            client.executor.spin_once(timeout_sec=0.05)
        result = future.result()
        return bool(result.success), result.message
    finally:
        client.close()


def run_keyboard(topic: str = DEFAULT_JOY_TOPIC["keyboard"], rate_hz: float = 20.0, hold_s: float = 0.3,
                 out=sys.stdout) -> int:
    """The keyboard teleop UI until Esc or Ctrl-C; returns the exit code."""
    from sensor_msgs.msg import Joy  # noqa: PLC0415
    from std_msgs.msg import String  # noqa: PLC0415

    from vla_ros.nodes.qos import DEFAULT, LATCHED  # noqa: PLC0415

    reader = KeyReader()
    if not reader.interactive:
        print("vla-ros teleop --keyboard: standard input is not a terminal; run it in a terminal", file=sys.stderr)
        return 2
    client = _RosClient("vla_ros_keyboard")
    state = {"mode": "?", "task": "", "demos": "no recorder", "last": ""}
    node = client.node
    publisher = node.create_publisher(Joy, topic, DEFAULT)
    node.create_subscription(String, topics.CONTROL_MODE, lambda m: state.update(mode=m.data), LATCHED)
    node.create_subscription(String, topics.TASK, lambda m: state.update(task=m.data), LATCHED)
    node.create_subscription(String, topics.DEMOS_STATUS, lambda m: state.update(demos=m.data), LATCHED)
    joystick = KeyboardJoystick(hold_s=hold_s)
    period, next_send, next_draw = 1.0 / rate_hz, 0.0, 0.0
    try:
        with reader:
            while True:
                for key in reader.keys(0.01):
                    if key == ESCAPE:
                        return 0
                    what = joystick.key(key, time.monotonic())
                    state["last"] = f"{key}: {what}" if what else f"{key!r} is not bound"
                client.executor.spin_once(timeout_sec=0.0)
                now = time.monotonic()
                if now >= next_send:
                    axes, buttons = joystick.joy(now)
                    msg = Joy(axes=axes, buttons=buttons)
                    msg.header.stamp = node.get_clock().now().to_msg()
                    publisher.publish(msg)
                    next_send = now + period
                if now >= next_draw:
                    _draw(out, topic, state)
                    next_draw = now + 0.5
    except KeyboardInterrupt:
        return 0
    finally:
        client.close()
        print("\nkeyboard teleop stopped: the teleop node goes silent and the arm holds", file=out)


def _draw(out, topic: str, state: dict) -> None:
    out.write("\x1b[H\x1b[2J")  # home, clear
    out.write(f"vla-ros keyboard teleop: a virtual joystick on {topic} (graph: vla-ros launch widowx teleop:=keyboard)\n")
    out.write(f"in control: {state['mode']}   task: '{state['task']}'   demonstrations: {state['demos']}\n")
    out.write(f"last key: {state['last']}\n\n{bindings_table()}\n")
    out.flush()
