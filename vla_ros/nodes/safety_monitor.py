"""safety_monitor: the fail-closed gate between the executor and the arm controllers (a lifecycle node).

It is the only producer of the controller topics. Each command from /vla/arm_command and
/vla/gripper_command is forwarded when the rules allow it, slowed when they say scale, and otherwise the
arm is commanded to hold where it is and the reason goes out on /vla/safety/veto. Unconfigured,
misconfigured or inactive, it forwards nothing. The rules and the gate are `vla_ros.core.safety`.
"""

from __future__ import annotations

import sys
import threading
import time

from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Int32MultiArray, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from vla_ros.core import topics
from vla_ros.core.stages.gate import EXECUTOR_LEASE, POLICY_LEASE, TELEOP_LEASE, GateStage, SafetySettings
from vla_ros.nodes.diagnostics import ERROR, OK, WARN, DiagnosticsReporter
from vla_ros.nodes.messages import RCLPY
from vla_ros.nodes.parameters import SettingsParameters
from vla_ros.nodes.qos import COMMANDS, DEFAULT, LATCHED, LEASE_WATCH
from vla_ros.nodes.runtime import NodeThreads, run_node
from vla_ros.robot.kinematics import ArmKinematics


def _locked(method):
    def wrapper(self, *args, **kwargs):
        with self.lock:
            return method(self, *args, **kwargs)

    wrapper.__name__ = method.__name__
    return wrapper


class SafetyMonitor(LifecycleNode):
    def __init__(self):
        super().__init__("safety_monitor")
        self.threads = NodeThreads(self)
        self.settings = SettingsParameters(self, SafetySettings).value
        self.kinematics = ArmKinematics()
        self.stage: GateStage | None = None  # configured
        self.lock = threading.RLock()  # the executor thread (callbacks) and the watchdog thread
        self.task = ""
        self.control_mode = "policy"  # /vla/control_mode: whose chunks the executor takes, so whose lease counts
        self.state_label = "unconfigured"
        self.arm_pub = self.create_publisher(JointTrajectory, topics.ARM_CONTROLLER, COMMANDS)
        self.gripper_pub = self.create_publisher(JointTrajectory, topics.GRIPPER_CONTROLLER, COMMANDS)
        self.veto_pub = self.create_publisher(String, topics.SAFETY_VETO, COMMANDS)
        self.create_subscription(
            JointTrajectory, topics.ARM_COMMAND, self.on_arm, LEASE_WATCH,
            event_callbacks=SubscriptionEventCallbacks(liveliness=lambda e: self.on_liveliness(EXECUTOR_LEASE, e)))
        self.create_subscription(JointTrajectory, topics.GRIPPER_COMMAND, self.on_gripper, LEASE_WATCH)
        self.create_subscription(
            Int32MultiArray, topics.ACTION_TOKENS, self.on_tokens, LEASE_WATCH,
            event_callbacks=SubscriptionEventCallbacks(liveliness=lambda e: self.on_liveliness(POLICY_LEASE, e)))
        # The policy's lease follows what the policy publishes: tokens, or (remote backend) chunks. vla_policy's token
        # writer exists in every backend, so its liveliness still says within ~150 ms that the process is gone.
        self.create_subscription(JointTrajectory, topics.ACTION_CHUNK, self.on_policy_chunk, COMMANDS)
        # Teleoperation: the teleop node's chunks are leased like the policy's tokens (a silent or dead joystick
        # makes the arm hold), and the lease that counts is that of the chunk source in control.
        self.create_subscription(
            JointTrajectory, topics.TELEOP_CHUNK, self.on_teleop_chunk, LEASE_WATCH,
            event_callbacks=SubscriptionEventCallbacks(liveliness=lambda e: self.on_liveliness(TELEOP_LEASE, e)))
        self.create_subscription(String, topics.CONTROL_MODE, self.on_control_mode, LATCHED)
        self.create_subscription(JointState, topics.JOINT_STATES, self.on_joint_states, DEFAULT)
        self.create_subscription(Bool, topics.ESTOP, self.on_estop, LATCHED)
        self.create_subscription(String, topics.TASK, self.on_task, LATCHED)
        self.create_service(Trigger, topics.SAFETY_RESET_SERVICE, self.on_reset)
        # The watchdog (leases, liveliness, stale joint states) runs every 20 ms in a thread of its own, so it
        # never waits behind queued callbacks.
        self.threads.start(self.watchdog_loop, "safety_watchdog")
        DiagnosticsReporter(self, self.report)
        self.publishers_by_topic = {topics.ARM_CONTROLLER: self.arm_pub, topics.GRIPPER_CONTROLLER: self.gripper_pub,
                                    topics.SAFETY_VETO: self.veto_pub}
        if self.settings.autostart:
            self.trigger_configure()
            if self.stage is not None:
                self.trigger_activate()

    # --- lifecycle ------------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        stage = GateStage(self.settings, self.kinematics, RCLPY)
        if stage.problems:
            self.state_label = f"misconfigured: {'; '.join(stage.problems)}"
            self.get_logger().error(f"not configured, forwarding nothing: {self.state_label}")
            return TransitionCallbackReturn.FAILURE
        stage.set_control_mode(self.control_mode, time.monotonic())
        self.stage = stage
        self.state_label = "inactive"
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stage.gate.active = True
        self.state_label = "active"
        self.get_logger().info("active: gating commands to the arm controllers")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stage.gate.active = False
        self.state_label = "inactive"
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stage = None
        self.state_label = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    # --- inputs ---------------------------------------------------------------------------------------
    def times(self) -> tuple[float, float]:
        return self.get_clock().now().nanoseconds * 1e-9, time.monotonic()

    @_locked
    def on_joint_states(self, msg: JointState) -> None:
        if self.stage is not None:
            self.stage.on_joint_state(msg, time.monotonic())

    @_locked
    def on_liveliness(self, name: str, event) -> None:
        if self.stage is not None:
            self.stage.gate.set_alive(name, event.alive_count > 0, time.monotonic())
            self.watchdog()

    @_locked
    def on_tokens(self, _msg: Int32MultiArray) -> None:
        if self.stage is not None:
            self.stage.on_tokens(time.monotonic())

    @_locked
    def on_policy_chunk(self, _msg: JointTrajectory) -> None:
        if self.stage is not None:
            self.stage.on_chunk(time.monotonic())

    @_locked
    def on_teleop_chunk(self, _msg: JointTrajectory) -> None:
        if self.stage is not None:
            self.stage.on_teleop_chunk(time.monotonic())

    @_locked
    def on_control_mode(self, msg: String) -> None:
        self.control_mode = msg.data
        if self.stage is not None:
            self.stage.set_control_mode(msg.data, time.monotonic())
        self.get_logger().info(f"control mode: {msg.data}")

    @_locked
    def on_task(self, msg: String) -> None:
        self.task = msg.data
        if self.stage is not None:
            self.stage.on_task(time.monotonic())

    @_locked
    def on_estop(self, msg: Bool) -> None:
        if self.stage is None:
            return
        now_ros, _ = self.times()
        self.publish(self.stage.on_estop(bool(msg.data), now_ros))
        self.get_logger().warning("E-STOP asserted: holding" if msg.data else "e-stop released (still latched)")

    @_locked
    def on_reset(self, _request, response):
        if self.stage is None:
            response.success, response.message = False, f"refused: safety monitor is {self.state_label}"
            return response
        response.success, response.message = self.stage.gate.try_reset(*self.times())
        self.get_logger().info(f"reset {response.message}")
        return response

    def watchdog_loop(self) -> None:
        while not self.threads.stopping.wait(0.02):
            self.watchdog()

    @_locked
    def watchdog(self) -> None:
        if self.stage is not None:
            self.publish(self.stage.watchdog(*self.times(), watching=bool(self.task)))

    # --- commands -------------------------------------------------------------------------------------
    @_locked
    def on_arm(self, msg: JointTrajectory) -> None:
        if self.stage is not None:  # unconfigured: forward nothing
            self.publish(self.stage.on_arm(msg, *self.times()))

    @_locked
    def on_gripper(self, msg: JointTrajectory) -> None:
        if self.stage is not None:
            self.publish(self.stage.on_gripper(msg, *self.times()))

    def publish(self, outputs: list) -> None:
        for topic, message in outputs:
            self.publishers_by_topic[topic].publish(message)
            if topic == topics.SAFETY_VETO:
                self.get_logger().warning(f"veto: {message.data}", throttle_duration_sec=1.0)

    def destroy_node(self):
        self.threads.stop(timeout_s=1.0)
        super().destroy_node()

    def report(self):
        gate = self.stage.gate if self.stage else None
        values = {k: str(v) for k, v in sorted((gate.counts if gate else {}).items())}
        values.update(state=self.state_label, last_veto=self.stage.last_veto if self.stage else "", task=self.task,
                      control_mode=self.control_mode,
                      blocks="; ".join(gate.blocks.values()) if gate else "")
        if gate is None:
            return ERROR, f"{self.state_label}: forwarding nothing", values
        if gate.blocks:
            return WARN, f"holding: {values['blocks']}", values
        return (OK if gate.active else WARN), self.state_label, values


def main(args: list[str] | None = None) -> int:
    return run_node("safety_monitor", SafetyMonitor, args)


if __name__ == "__main__":
    sys.exit(main())
