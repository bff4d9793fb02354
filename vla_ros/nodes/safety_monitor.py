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

import numpy as np
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.time import Time
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Int32MultiArray, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from vla_ros.core import topics
from vla_ros.core.safety.gate import FORWARD, HOLD, Decision, SafetyGate
from vla_ros.core.joint_commands import single_point
from vla_ros.core.safety.configuration import gate_from_parameters, joint_snapshot
from vla_ros.core.safety.limits import BRIDGE_WORKSPACE_MAX, BRIDGE_WORKSPACE_MIN, DEFAULT_MAX_JOINT_VELOCITY
from vla_ros.core.safety.rules import ArmCommand
from vla_ros.nodes.diagnostics import ERROR, OK, WARN, DiagnosticsReporter
from vla_ros.nodes.parameters import ParameterSpec, declare_parameters, non_negative, positive
from vla_ros.nodes.qos import COMMANDS, DEFAULT, LATCHED, LEASE_WATCH
from vla_ros.nodes.runtime import NodeThreads, run_node
from vla_ros.nodes.trajectory_messages import joint_command
from vla_ros.sim.kinematics import JOINT_NAMES, ArmKinematics
from vla_ros.sim.workcell import finger_position

FINGER_JOINT = "left_finger"

PARAMETERS = [
    ParameterSpec("autostart", True, "Configure and activate at start-up (else wait for lifecycle transitions).",
                  read_only=True),
    ParameterSpec("position_margin", 0.05, "rad kept clear of each joint limit.", read_only=True, check=non_negative),
    ParameterSpec("max_joint_velocity", [DEFAULT_MAX_JOINT_VELOCITY] * 6, "rad/s per arm joint.", read_only=True),
    ParameterSpec("max_joint_acceleration", 30.0, "rad/s² per joint.", read_only=True, check=positive),
    ParameterSpec("jump_factor", 2.0, "Over-limit ratio from which a command halts instead of being slowed.",
                  read_only=True, check=positive),
    ParameterSpec("workspace_min", list(BRIDGE_WORKSPACE_MIN), "End-effector box, lower corner (m, base frame).",
                  read_only=True),
    ParameterSpec("workspace_max", list(BRIDGE_WORKSPACE_MAX), "End-effector box, upper corner (m, base frame).",
                  read_only=True),
    ParameterSpec("slowdown_band", 0.02, "m inside the box where motion towards a wall is slowed.", read_only=True,
                  check=non_negative),
    ParameterSpec("max_ee_speed", 0.25, "End-effector speed cap, m/s (reduced-speed mode).", read_only=True,
                  check=positive),
    ParameterSpec("max_obs_age", 1.0, "Oldest observation a command may be computed from, s.", read_only=True,
                  check=positive),
    ParameterSpec("max_joint_state_age", 0.25, "Oldest joint state the rules accept, s.", read_only=True,
                  check=positive),
    ParameterSpec("clock_jump", 0.5, "ROS-time jump (against the monotonic clock) that halts, s.", read_only=True,
                  check=positive),
    ParameterSpec("max_gripper_effort", 20.0, "Finger effort above which closing further is refused.",
                  read_only=True, check=positive),
    ParameterSpec("max_command_rate", 50.0, "Most commands per second forwarded per controller.", read_only=True,
                  check=positive),
    ParameterSpec("policy_lease", 1.0, "Hold when the policy sends no tokens for this long during a task, s "
                  "(0 = liveliness only).", read_only=True, check=non_negative),
]


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
        self.params = declare_parameters(self, PARAMETERS)
        self.kinematics = ArmKinematics()
        self.gate: SafetyGate | None = None
        self.lock = threading.RLock()  # the executor thread (callbacks) and the watchdog thread
        self.task = ""
        self.state_label = "unconfigured"
        self.last_veto = ""
        self.arm_pub = self.create_publisher(JointTrajectory, topics.ARM_CONTROLLER, COMMANDS)
        self.gripper_pub = self.create_publisher(JointTrajectory, topics.GRIPPER_CONTROLLER, COMMANDS)
        self.veto_pub = self.create_publisher(String, topics.SAFETY_VETO, COMMANDS)
        self.create_subscription(
            JointTrajectory, topics.ARM_COMMAND, self.on_arm, LEASE_WATCH,
            event_callbacks=SubscriptionEventCallbacks(liveliness=lambda e: self.on_liveliness("chunk_executor", e)))
        self.create_subscription(JointTrajectory, topics.GRIPPER_COMMAND, self.on_gripper, LEASE_WATCH)
        self.create_subscription(
            Int32MultiArray, topics.ACTION_TOKENS, self.on_tokens, LEASE_WATCH,
            event_callbacks=SubscriptionEventCallbacks(liveliness=lambda e: self.on_liveliness("vla_policy", e)))
        self.create_subscription(JointState, topics.JOINT_STATES, self.on_joint_states, DEFAULT)
        self.create_subscription(Bool, topics.ESTOP, self.on_estop, LATCHED)
        self.create_subscription(String, topics.TASK, self.on_task, LATCHED)
        self.create_service(Trigger, topics.SAFETY_RESET_SERVICE, self.on_reset)
        # The watchdog (leases, liveliness, stale joint states) runs every 20 ms in a thread of its own, so it
        # never waits behind queued callbacks.
        self.threads.start(self.watchdog_loop, "safety_watchdog")
        DiagnosticsReporter(self, self.report)
        if self.params["autostart"]:
            self.trigger_configure()
            if self.gate is not None:
                self.trigger_activate()

    # --- lifecycle ------------------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        gate = gate_from_parameters(self.params, self.kinematics)
        if gate.problems:
            self.state_label = f"misconfigured: {'; '.join(gate.problems)}"
            self.get_logger().error(f"not configured, forwarding nothing: {self.state_label}")
            return TransitionCallbackReturn.FAILURE
        self.gate = gate
        self.state_label = "inactive"
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.gate.active = True
        self.state_label = "active"
        self.get_logger().info("active: gating commands to the arm controllers")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.gate.active = False
        self.state_label = "inactive"
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.gate = None
        self.state_label = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    # --- inputs ---------------------------------------------------------------------------------------
    def times(self) -> tuple[float, float]:
        return self.get_clock().now().nanoseconds * 1e-9, time.monotonic()

    @_locked
    def on_joint_states(self, msg: JointState) -> None:
        if self.gate is None:
            return
        snapshot = joint_snapshot(msg, time.monotonic())
        if snapshot is not None:
            self.gate.update_joints(snapshot)

    @_locked
    def on_liveliness(self, name: str, event) -> None:
        if self.gate is not None:
            self.gate.set_alive(name, event.alive_count > 0, time.monotonic())
            self.watchdog()

    @_locked
    def on_tokens(self, _msg: Int32MultiArray) -> None:
        if self.gate is not None:
            self.gate.touch("vla_policy", time.monotonic())

    @_locked
    def on_task(self, msg: String) -> None:
        self.task = msg.data
        if self.gate is not None:
            # A new task starts the policy's lease afresh, and speeds are judged from the measured joints.
            self.gate.touch("vla_policy", time.monotonic())
            self.gate.task_changed()

    @_locked
    def on_estop(self, msg: Bool) -> None:
        if self.gate is None:
            return
        now_ros, _ = self.times()
        self.act(self.gate.set_estop(bool(msg.data), now_ros))
        self.get_logger().warning("E-STOP asserted: holding" if msg.data else "e-stop released (still latched)")

    @_locked
    def on_reset(self, _request, response):
        if self.gate is None:
            response.success, response.message = False, f"refused: safety monitor is {self.state_label}"
            return response
        response.success, response.message = self.gate.try_reset(*self.times())
        self.get_logger().info(f"reset {response.message}")
        return response

    def watchdog_loop(self) -> None:
        while not self.threads.stopping.wait(0.02):
            self.watchdog()

    @_locked
    def watchdog(self) -> None:
        if self.gate is None or not self.gate.active:
            return
        now_ros, now_mono = self.times()
        decision = self.gate.check_leases(now_mono, now_ros, watching=bool(self.task))
        if decision is not None:
            self.act(decision)

    # --- commands -------------------------------------------------------------------------------------
    @_locked
    def on_arm(self, msg: JointTrajectory) -> None:
        command = single_point(msg, list(JOINT_NAMES))
        if isinstance(command, str):
            self.veto(f"arm command refused: {command}")
            return
        if self.gate is None:
            return  # unconfigured: forward nothing
        positions, reach = command
        now_ros, now_mono = self.times()
        stamp = Time.from_msg(msg.header.stamp).nanoseconds * 1e-9
        self.act(self.gate.evaluate_arm(ArmCommand(positions, reach, stamp), now_ros, now_mono))

    @_locked
    def on_gripper(self, msg: JointTrajectory) -> None:
        command = single_point(msg, ["gripper"])
        if isinstance(command, str):
            self.veto(f"gripper command refused: {command}")
            return
        if self.gate is None:
            return
        positions, reach = command
        now_ros, now_mono = self.times()
        stamp = Time.from_msg(msg.header.stamp).nanoseconds * 1e-9
        decision = self.gate.evaluate_gripper(float(positions[0]), reach, stamp, now_ros, now_mono)
        if decision.kind == FORWARD:
            # Controllers take the Interbotix finger joint in metres; the executor speaks 0 (closed) .. 1 (open).
            finger = np.array([finger_position(float(decision.positions[0]))])
            self.gripper_pub.publish(joint_command([FINGER_JOINT], finger, decision.reach_s))
        elif decision.rule:
            self.veto(decision.reason)

    def act(self, decision: Decision) -> None:
        if decision.kind == FORWARD:
            self.arm_pub.publish(joint_command(list(JOINT_NAMES), decision.positions, decision.reach_s))
        elif decision.kind == HOLD:
            self.arm_pub.publish(joint_command(list(JOINT_NAMES), decision.positions, decision.reach_s))
            self.veto(decision.reason)

    def veto(self, reason: str) -> None:
        self.last_veto = reason
        self.veto_pub.publish(String(data=reason))
        self.get_logger().warning(f"veto: {reason}", throttle_duration_sec=1.0)

    def destroy_node(self):
        self.threads.stop(timeout_s=1.0)
        super().destroy_node()

    def report(self):
        counts = dict(self.gate.counts) if self.gate else {}
        values = {k: str(v) for k, v in sorted(counts.items())}
        values.update(state=self.state_label, last_veto=self.last_veto, task=self.task,
                      blocks="; ".join(self.gate.blocks.values()) if self.gate else "")
        if self.gate is None:
            return ERROR, f"{self.state_label}: forwarding nothing", values
        if self.gate.blocks:
            return WARN, f"holding: {values['blocks']}", values
        return (OK if self.gate.active else WARN), self.state_label, values


def main(args: list[str] | None = None) -> int:
    return run_node("safety_monitor", SafetyMonitor, args)


if __name__ == "__main__":
    sys.exit(main())
