"""Recording demonstrations on the simulated graph with a scripted joystick, through ROS only.

The simulator (`expert_hints:=true`) publishes its scripted expert's next action after every command; the
scripted joystick (`vla_ros.teleop.scripted`) turns the newest one into Joy messages at 20 Hz for the graph's
teleop node, exactly as a person's gamepad would reach it, and presses the gamepad's buttons to take control
and to start and stop `vla-ros record-demos` episodes. Used by the demonstration loop test and benchmark.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from vla_ros.core import topics

JOY_RATE_HZ = 20.0
REST = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0])  # deadman held, no motion, gripper open


class ScriptedTeleopSession:
    """Episodes recorded on a running `widowx` graph (teleop:=joy, expert_hints:=true) and `record-demos`."""

    def __init__(self, probe, mapping_path: Path):
        from diagnostic_msgs.msg import DiagnosticArray  # noqa: PLC0415
        from rclpy.parameter_client import AsyncParameterClient  # noqa: PLC0415
        from sensor_msgs.msg import Joy  # noqa: PLC0415
        from std_msgs.msg import Float32MultiArray, String  # noqa: PLC0415
        from std_srvs.srv import Trigger  # noqa: PLC0415

        from vla_ros.nodes.qos import COMMANDS, DEFAULT, LATCHED  # noqa: PLC0415
        from vla_ros.teleop.mapping import load_mapping  # noqa: PLC0415
        from vla_ros.teleop.scripted import ScriptedJoystick  # noqa: PLC0415

        self.probe, node = probe, probe.node
        self.Joy, self.String, self.Trigger = Joy, String, Trigger
        self.joystick = ScriptedJoystick(load_mapping(mapping_path))
        self.hint: np.ndarray | None = None
        self.hints = 0
        self.following = False  # send the expert's actions (else rest): only while an episode is being recorded
        self.sim_status: dict[str, str] = {}
        self.teleop_status: dict[str, str] = {}
        self.reporting: set[str] = set()
        self.joy_pub = node.create_publisher(Joy, topics.JOY, DEFAULT)
        self.instruction_pub = node.create_publisher(String, topics.INSTRUCTION, COMMANDS)
        self.tasks = probe.collect(String, topics.TASK, LATCHED)
        self.modes = probe.collect(String, topics.CONTROL_MODE, LATCHED)
        self.demos = probe.collect(String, topics.DEMOS_STATUS, LATCHED)
        node.create_subscription(Float32MultiArray, topics.SIM_EXPERT_ACTION, self._on_hint, COMMANDS)
        node.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, self._on_diagnostics, DEFAULT)
        self.reset = node.create_client(Trigger, topics.SIM_RESET_SERVICE)
        self.sim_parameters = AsyncParameterClient(node, "widowx_sim")
        self._next_joy = 0.0
        self.sent_joy = 0

    # --- inputs -------------------------------------------------------------------------------------------
    def _on_hint(self, msg) -> None:
        self.hint = np.asarray(msg.data, np.float64)
        self.hints += 1
        if self.following:
            self._send(force=True)  # the executor's next tick is < 0.2 s away: do not wait for the 20 Hz beat

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            self.reporting.add(status.name.rsplit("/", 1)[-1])
            if status.name.endswith("widowx_sim"):
                self.sim_status = {kv.key: kv.value for kv in status.values}
            elif status.name.endswith("teleop"):
                self.teleop_status = {kv.key: kv.value for kv in status.values}

    def ready(self, nodes=("widowx_sim", "chunk_executor", "safety_monitor", "teleop", "instruction_listener")) -> bool:
        return (set(nodes) <= self.reporting and self.reset.service_is_ready() and self.sim_parameters.services_are_ready()
                and self.joy_pub.get_subscription_count() > 0 and self.instruction_pub.get_subscription_count() > 0
                and bool(self.tasks) and bool(self.modes))

    # --- the joystick -------------------------------------------------------------------------------------
    def _send(self, force: bool = False, engaged: bool = True) -> None:
        now = time.monotonic()
        if not force and now < self._next_joy:
            return
        self._next_joy = now + 1.0 / JOY_RATE_HZ
        action = self.hint if self.following and self.hint is not None else REST
        axes, buttons = self.joystick.joy(action if engaged else None)
        msg = self.Joy(axes=[float(a) for a in axes], buttons=[int(b) for b in buttons])
        msg.header.stamp = self.probe.node.get_clock().now().to_msg()
        self.joy_pub.publish(msg)
        self.sent_joy += 1

    def spin(self, seconds: float, engaged: bool = True) -> None:
        """Spin while the joystick sends the newest expert action (deadman down) at 20 Hz."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._send(engaged=engaged)
            self.probe.executor.spin_once(timeout_sec=0.01)

    def spin_until(self, predicate, timeout_s: float, what: str, engaged: bool = True) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
            self._send(engaged=engaged)
            self.probe.executor.spin_once(timeout_sec=0.01)

    def press(self, event: str, engaged: bool = True) -> None:
        """Press an event's button in the next messages (a press, then a release)."""
        self.joystick.press(event)
        for _ in range(2):
            self._send(force=True, engaged=engaged)
            self.probe.executor.spin_once(timeout_sec=0.03)

    def take_control(self) -> None:
        """Give teleop control, and the fastest speed preset: the one the expert's steps fit in."""
        if self.modes[-1].data != "teleop":
            self.press("toggle_mode", engaged=False)
        self.spin_until(lambda: self.modes[-1].data == "teleop", 10, "teleop to take control", engaged=False)
        speeds = self.joystick.mapping.speeds
        deadline = time.monotonic() + 20
        # A press sent before the teleop node had matched this publisher is lost: go by what the node reports.
        while self.teleop_status.get("speed") != f"{speeds[-1]:g}":
            if time.monotonic() > deadline:
                raise TimeoutError(f"the teleop node stays at speed {self.teleop_status.get('speed')}")
            reported = self.teleop_status.get("speed")
            if reported is not None:
                self.joystick.mirror.speed_index = [f"{v:g}" for v in speeds].index(reported)
            self.spin(1.2, engaged=False)  # the joystick presses the speed button; the node reports once a second

    # --- episodes -----------------------------------------------------------------------------------------
    def record_episode(self, family: str, seed: int, timeout_s: float) -> dict:
        """Reset the workcell, say its task, record one episode driven by the expert; stop it as success or not."""
        from rclpy.parameter import Parameter  # noqa: PLC0415

        future = self.sim_parameters.set_parameters([Parameter("family", value=family), Parameter("seed", value=seed)])
        self.spin_until(future.done, 10, "the simulator's parameters", engaged=False)
        future = self.reset.call_async(self.Trigger.Request())
        self.spin_until(future.done, 10, "the simulator's reset", engaged=False)
        instruction = future.result().message.split("suggested task '", 1)[1].rstrip("'")
        self.sim_status, self.hint = {}, None
        self.instruction_pub.publish(self.String(data=instruction))
        self.spin_until(lambda: self.tasks and self.tasks[-1].data == instruction, 15, "the task", engaged=False)
        self.spin(0.5)  # rest for a moment, deadman held: the executor anchors where the arm is
        statuses = len(self.demos)
        self.press("start_episode")
        self.spin_until(lambda: len(self.demos) > statuses and self.demos[-1].data.startswith("recording"), 10,
                        "the recorder to start the episode")
        self.following = True  # the expert moves only now: the episode starts from the layout's first state
        started = time.monotonic()
        success = False
        while time.monotonic() - started < timeout_s:
            self.spin(0.1)
            if (self.sim_status.get("seed") == str(seed) and self.sim_status.get("task") == instruction
                    and self.sim_status.get("success") == "true"):
                success = True
                break
        statuses = len(self.demos)
        self.following = False
        self.press("stop_success" if success else "stop_failure")
        self.spin_until(lambda: len(self.demos) > statuses and self.demos[-1].data.startswith("idle"), 10,
                        "the recorder to close the episode")
        self.instruction_pub.publish(self.String(data="stop"))
        self.spin_until(lambda: self.tasks[-1].data == "", 10, "the stop", engaged=False)
        return {"family": family, "seed": seed, "instruction": instruction, "success": success,
                "seconds": round(time.monotonic() - started, 2)}
