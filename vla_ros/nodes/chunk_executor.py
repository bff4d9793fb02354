"""chunk_executor: action chunks → the sliding window → EE targets → IK → /vla/arm_command, /vla/gripper_command.

The control loop runs in its own thread on absolute deadlines (not an rclpy timer) so its period does
not jitter behind other callbacks; the logic is `vla_ros.core.executor` and `vla_ros.core.ee_integration`.
"""

from __future__ import annotations

import sys
import threading
import time

from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from std_srvs.srv import SetBool
from trajectory_msgs.msg import JointTrajectory

from vla_ros.core import topics
from vla_ros.core.executor import ExecutorSettings
from vla_ros.core.stages.control import POLICY, TELEOP, ControlLoop
from vla_ros.core.timing import Samples, StarvationLog
from vla_ros.nodes.diagnostics import OK, WARN, DiagnosticsReporter
from vla_ros.nodes.messages import RCLPY
from vla_ros.nodes.parameters import SettingsParameters
from vla_ros.nodes.qos import COMMANDS, DEFAULT, LATCHED, LEASED_COMMANDS
from vla_ros.nodes.realtime import ScheduledCollector, request_realtime, shorten_gil_switch_interval
from vla_ros.nodes.runtime import NodeThreads, run_node
from vla_ros.robot.kinematics import ArmKinematics


class ChunkExecutorNode(Node):
    def __init__(self):
        super().__init__("chunk_executor")
        self.threads = NodeThreads(self)
        self.settings = SettingsParameters(self, ExecutorSettings).value
        self.period = self.settings.control_period_s
        self.loop = ControlLoop(self.settings, ArmKinematics())
        self.lock = threading.Lock()  # the control thread and the callbacks share the executor state
        self.task = ""
        self.counts = {"chunks": 0, "rejected": 0, "commands": 0, "holds": 0, "unreachable": 0, "vetoes_seen": 0}
        self.hold_reason = "idle"
        self.last_rejection = ""
        self.latency, self.margin, self.jitter, self.first_wait = Samples(), Samples(), Samples(), Samples()
        self.starvation = StarvationLog()
        self.arm_pub = self.create_publisher(JointTrajectory, topics.ARM_COMMAND, LEASED_COMMANDS)
        self.gripper_pub = self.create_publisher(JointTrajectory, topics.GRIPPER_COMMAND, LEASED_COMMANDS)
        self.create_subscription(String, topics.TASK, self.on_task, LATCHED)
        self.create_subscription(JointTrajectory, topics.ACTION_CHUNK, self.on_chunk, COMMANDS)
        # A human's chunks (the teleop node) go through the same window, integration and gate; only the source in
        # control is taken (/vla/teleop/engage switches it; /vla/control_mode tells everyone).
        self.create_subscription(JointTrajectory, topics.TELEOP_CHUNK, self.on_teleop_chunk, COMMANDS)
        self.executed_pub = self.create_publisher(JointTrajectory, topics.EXECUTED_ACTION, COMMANDS)
        self.mode_pub = self.create_publisher(String, topics.CONTROL_MODE, LATCHED)
        self.mode_pub.publish(String(data=self.loop.mode))
        self.create_service(SetBool, topics.TELEOP_ENGAGE_SERVICE, self.on_engage)
        self.create_subscription(JointState, topics.JOINT_STATES, self.on_joint_states, DEFAULT)
        self.create_subscription(String, topics.SAFETY_VETO, self.on_veto, COMMANDS)
        DiagnosticsReporter(self, self.report)
        shorten_gil_switch_interval()
        self.scheduling = "starting"
        self.collector: ScheduledCollector | None = None  # made by the control thread
        self.threads.start(self.control_loop, "control_loop")
        self.get_logger().info(
            f"executing {self.settings.execute_steps} steps per chunk at {self.settings.control_rate:g} Hz "
            f"({'temporal ensembling' if self.settings.blend else 'plain switching'})"
        )

    # --- inputs -----------------------------------------------------------------------------------
    def now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def on_task(self, msg: String) -> None:
        with self.lock:
            self.task = msg.data
            self.loop.set_task(msg.data)

    def on_veto(self, msg: String) -> None:
        # The gate held the arm where it is: integrate from there, not from the vetoed target.
        with self.lock:
            self.loop.vetoed()
        self.counts["vetoes_seen"] += 1

    def on_joint_states(self, msg: JointState) -> None:
        with self.lock:
            self.loop.update_joints(msg.name, msg.position, time.monotonic())

    def on_engage(self, request, response):
        mode = TELEOP if request.data else POLICY
        with self.lock:
            previous = self.loop.mode
            changed = self.loop.set_mode(mode)
        if changed:
            self.mode_pub.publish(String(data=mode))
            self.get_logger().info(f"control mode: {mode} (was {previous}); queued chunks dropped")
        response.success = True
        response.message = f"{mode} in control" + ("" if changed else " already")
        return response

    def on_teleop_chunk(self, msg: JointTrajectory) -> None:
        self.on_chunk(msg, TELEOP)

    def on_chunk(self, msg: JointTrajectory, source: str = POLICY) -> None:
        with self.lock:
            reason = self.loop.on_chunk(msg, received_s=self.now_s(), source=source)
        if reason:
            self.counts["rejected"] += 1
            self.last_rejection = reason
            self.get_logger().warning(f"chunk refused: {reason}", throttle_duration_sec=2.0)
        else:
            self.counts["chunks"] += 1

    # --- control loop -----------------------------------------------------------------------------
    def control_loop(self) -> None:
        self.scheduling = request_realtime(self.settings.thread_priority)
        # Full collections every ~10 s whatever the rate.
        self.collector = ScheduledCollector(full_every=max(1, round(10.0 / self.period)))
        self.get_logger().info(f"control thread: {self.scheduling}")
        deadline = time.monotonic()
        last_tick = None
        while not self.threads.stopping.is_set():
            deadline += self.period
            delay = deadline - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                deadline = time.monotonic()  # overrun: resynchronise rather than burst
            tick = time.monotonic()
            if last_tick is not None:
                self.jitter.add(abs((tick - last_tick) - self.period))
            last_tick = tick
            try:
                self.control_tick()
            except Exception as exc:  # noqa: BLE001 - the loop must survive; the error goes to the log and diagnostics
                if not self.context.ok():
                    break  # ROS shut down under us (Ctrl-C): destroy_node() is on its way
                self.hold_reason = f"control tick failed: {exc}"
                self.get_logger().error(self.hold_reason, throttle_duration_sec=2.0)
            self.collector.after_tick()  # garbage collection now, a control period before the next tick
        self.collector.close()

    def control_tick(self) -> None:
        now = self.now_s()
        with self.lock:
            output = self.loop.tick(now, time.monotonic())
            mode = self.loop.mode
        if output.targets is None:
            self.counts["holds"] += output.new_hold
            self.hold_reason = output.reason
            if self.task:
                self.starvation.hold(output.reason)
            return
        step, targets = output.step, output.targets
        self.starvation.command(step.arrival_margin_s, step.arrival_age_s, step.arrival_gap_s, self.now_s())
        if step.arrival_margin_s is not None:
            self.margin.add(step.arrival_margin_s)
        if step.first_chunk_wait_s is not None:
            self.first_wait.add(step.first_chunk_wait_s)
        self.counts["unreachable"] += not targets.ik.reached
        arm, gripper = self.loop.command_messages(output, RCLPY)  # stamped with their observation
        self.arm_pub.publish(arm[1])
        self.gripper_pub.publish(gripper[1])
        self.executed_pub.publish(RCLPY.executed_action(output.executed, int(now * 1e9), self.period, mode))
        self.counts["commands"] += 1
        self.latency.add(self.now_s() - step.chunk_stamp_s)
        self.hold_reason = ""

    def report(self):
        values = {**{k: str(v) for k, v in self.counts.items()}, "task": self.task, "hold_reason": self.hold_reason,
                  "last_rejection": self.last_rejection, "scheduling": self.scheduling, "control_mode": self.loop.mode}
        if self.collector is not None:
            values["gc_after_tick_ms_max"] = f"{self.collector.longest_s * 1e3:.2f}"
        values.update(self.latency.summary("obs_to_command_latency"))
        values.update(self.margin.summary("chunk_arrival_margin"))
        values.update(self.first_wait.summary("first_chunk_wait"))
        values.update(self.jitter.summary("period_jitter"))
        values.update(self.starvation.summary())
        holding = bool(self.hold_reason) and self.task != ""
        return (WARN if holding else OK), (f"holding: {self.hold_reason}" if self.hold_reason else "executing"), values

    def destroy_node(self):
        self.threads.stop(timeout_s=2.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node("chunk_executor", ChunkExecutorNode, args)


if __name__ == "__main__":
    sys.exit(main())
