"""teleop: a joystick (sensor_msgs/Joy) or the keyboard's virtual joystick → 7-D end-effector deltas as chunks.

From the executor on, a human's deltas take the policy's path: /vla/teleop/action_chunk → chunk_executor (the
window, EE integration, IK) → safety_monitor (every rule, and the teleop lease) → controllers. This node never
talks to the controllers. It publishes only while teleop is in control (/vla/control_mode) and a task is set: one
one-step chunk per Joy message and `publish_rate` repeats while the joystick is live; a joystick silent for
`input_timeout` sends nothing, so the executor starves and the gate's teleop lease lapses: the arm holds. The
mapping (deadman, speed presets, gripper, buttons) is `vla_ros.teleop.mapping`; button events switch the control
mode (/vla/teleop/engage) and drive `vla-ros record-demos` (/vla/demos/*).
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Joy
from std_msgs.msg import String
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory

from vla_ros.core import topics
from vla_ros.core.action_tokens import task_hash
from vla_ros.core.settings import CONTROL_PERIOD_S
from vla_ros.core.stages.control import TELEOP
from vla_ros.graphs.spec import default_config_dir
from vla_ros.nodes.diagnostics import OK, WARN, DiagnosticsReporter
from vla_ros.nodes.messages import RCLPY
from vla_ros.nodes.parameters import ParameterError, SettingsParameters
from vla_ros.nodes.qos import DEFAULT, LATCHED, LEASED_COMMANDS
from vla_ros.nodes.runtime import run_node
from vla_ros.teleop.mapping import JoyTeleop, MappingError, TeleopCommand, load_mapping
from vla_ros.teleop.settings import TeleopSettings

TELEOP_IDENTITY = "0"  # the chunk's "tokenizer" field: a human, not a tokenizer
MAX_CHUNK_RATE = 50.0  # chunks per second at most, however fast the joystick publishes


class TeleopNode(Node):
    def __init__(self):
        super().__init__("teleop")
        self.settings = SettingsParameters(self, TeleopSettings).value
        self.mapping_path = self.settings.mapping_path(default_config_dir())
        try:
            self.teleop = JoyTeleop(load_mapping(self.mapping_path))
        except MappingError as exc:
            raise ParameterError(str(exc)) from None
        self.lock = threading.Lock()
        self.task, self.mode = "", "policy"
        self.command: TeleopCommand | None = None
        self.joy_mono, self.sent_mono = -np.inf, -np.inf
        self.counts = {"joy_messages": 0, "chunks": 0, "events": 0}
        self.last_event = ""
        self.chunk_pub = self.create_publisher(JointTrajectory, topics.TELEOP_CHUNK, LEASED_COMMANDS)
        self.create_subscription(Joy, self.settings.topic, self.on_joy, DEFAULT)
        self.create_subscription(String, topics.TASK, self.on_task, LATCHED)
        self.create_subscription(String, topics.CONTROL_MODE, self.on_mode, LATCHED)
        self.engage = self.create_client(SetBool, topics.TELEOP_ENGAGE_SERVICE)
        self.demo_clients = {"start_episode": self.create_client(Trigger, topics.DEMOS_START_SERVICE),
                             "stop_success": self.create_client(SetBool, topics.DEMOS_STOP_SERVICE),
                             "discard_episode": self.create_client(Trigger, topics.DEMOS_DISCARD_SERVICE)}
        self.demo_clients["stop_failure"] = self.demo_clients["stop_success"]
        self.create_timer(1.0 / self.settings.publish_rate, self.on_timer)
        DiagnosticsReporter(self, self.report)
        self.get_logger().info(f"{self.settings.input} teleop on {self.settings.topic} with {self.mapping_path}; "
                               f"chunks on {topics.TELEOP_CHUNK} while teleop is in control")

    # --- inputs -------------------------------------------------------------------------------------------
    def on_task(self, msg: String) -> None:
        with self.lock:
            self.task = msg.data

    def on_mode(self, msg: String) -> None:
        with self.lock:
            self.mode = msg.data

    def on_joy(self, msg: Joy) -> None:
        with self.lock:
            self.command = self.teleop.update(msg.axes, msg.buttons)
            self.joy_mono = time.monotonic()
            self.counts["joy_messages"] += 1
            events = self.command.events
        for event in events:
            self.on_event(event)
        self.publish_chunk(repeat=False)

    def on_timer(self) -> None:
        self.publish_chunk(repeat=True)

    # --- outputs ------------------------------------------------------------------------------------------
    def publish_chunk(self, repeat: bool) -> None:
        now = time.monotonic()
        with self.lock:
            live = self.command is not None and now - self.joy_mono <= self.settings.input_timeout
            if not live or self.mode != TELEOP or not self.task:
                return
            if now - self.sent_mono < (1.0 / self.settings.publish_rate if repeat else 1.0 / MAX_CHUNK_RATE):
                return
            self.sent_mono = now
            action, task = self.command.action, self.task
        chunk = RCLPY.action_chunk(action[None, :], self.get_clock().now().nanoseconds, CONTROL_PERIOD_S,
                                   task_hash(task), TELEOP_IDENTITY)
        self.chunk_pub.publish(chunk)
        self.counts["chunks"] += 1

    def on_event(self, event: str) -> None:
        self.counts["events"] += 1
        self.last_event = event
        if event == "toggle_mode":
            client, request = self.engage, SetBool.Request(data=self.mode != TELEOP)
            missing = "the chunk executor's /vla/teleop/engage service is not available"
        else:
            client = self.demo_clients[event]
            request = SetBool.Request(data=event == "stop_success") if event.startswith("stop_") else Trigger.Request()
            missing = "no demonstration recorder is running (start `vla-ros record-demos`)"
        if not client.service_is_ready():
            self.get_logger().warning(f"{event}: {missing}")
            return
        future = client.call_async(request)
        future.add_done_callback(lambda f, event=event: self.get_logger().info(
            f"{event}: {f.result().message if f.result() is not None else 'no answer'}"))

    def report(self):
        with self.lock:
            command, age = self.command, time.monotonic() - self.joy_mono
            mode, task = self.mode, self.task
        live = command is not None and age <= self.settings.input_timeout
        values = {"input": self.settings.input, "topic": self.settings.topic, "mapping": str(self.mapping_path),
                  "control_mode": mode, "task": task, "joystick": "live" if live else "silent",
                  "joystick_age_s": f"{age:.2f}" if np.isfinite(age) else "never",
                  "deadman": str(bool(command and command.engaged)).lower(), "speed": f"{self.teleop.speed:g}",
                  "gripper": f"{self.teleop.gripper:g}", "last_event": self.last_event,
                  "problems": "; ".join(sorted(self.teleop.problems)),
                  **{k: str(v) for k, v in self.counts.items()}}
        if mode != TELEOP:
            return OK, "standing by: the policy is in control", values
        if not task:
            return OK, "teleop in control, no task: nothing to send", values
        if not live:
            return WARN, "teleop in control but the joystick is silent: the arm holds", values
        return OK, "teleop in control: " + ("moving" if command.engaged else "deadman released, holding"), values


def main(args: list[str] | None = None) -> int:
    return run_node("teleop", TeleopNode, args)


if __name__ == "__main__":
    sys.exit(main())
