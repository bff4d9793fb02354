"""widowx_sim: the MuJoCo WidowX 250 workcell as a ROS robot.

Follows the arm and gripper controller topics like ros2_control's JointTrajectoryControllers, publishes
/joint_states, /camera/image_raw and camera_info (and /camera/<name>/image_raw of each of `extra_cameras`), optionally /clock, resets to a seeded layout on
/widowx_sim/reset, and reports the current task's success on /diagnostics.

Two threads share the MuJoCo data under one lock. The physics thread (like a robot's hardware loop:
SCHED_FIFO when permitted) samples the trajectory followers, steps physics and publishes /joint_states;
it keeps real time with absolute deadlines and measures the real-time factor. The camera thread copies
the scene under the lock when a frame is due and renders it outside the lock: software rendering
(Mesa's llvmpipe) sometimes takes several hundred milliseconds on a busy 2-core machine, and that must
delay a camera frame, never the joint states the safety monitor watches.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time

import numpy as np
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.time import Time
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Float32MultiArray, MultiArrayDimension, MultiArrayLayout, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from vla_ros.core import topics
from vla_ros.core.image_msgs import rgb8_fields
from vla_ros.core.timing import Peak
from vla_ros.core.trajectory import TrajectoryFollower, TrajectoryPoint
from vla_ros.nodes.diagnostics import OK, WARN, DiagnosticsReporter
from vla_ros.nodes.frames import RobotFrames
from vla_ros.nodes.parameters import ParameterError, SettingsParameters
from vla_ros.sim.camera_frames import camera_frames, camera_matrix
from vla_ros.sim.settings import SimSettings
from vla_ros.nodes.qos import COMMANDS, DEFAULT, LATCHED, SENSOR
from vla_ros.nodes.realtime import request_realtime
from vla_ros.nodes.runtime import NodeThreads, run_node
from vla_ros.robot.urdf import load_robot
from vla_ros.robot.wx250s import ARM_JOINTS, FINGER_JOINT, FINGER_JOINTS, gripper_opening



class WidowXSim(Node):
    def __init__(self):
        super().__init__("widowx_sim")
        self.threads = NodeThreads(self)
        self.settings = SettingsParameters(self, SimSettings)
        self.params = self.settings.value  # the read-only ones; seed and family are read when used
        from vla_ros.sim.workcell import Workcell  # noqa: PLC0415 - MuJoCo after parameters

        self.workcell = Workcell(image_size=self.params.image_height, camera=self.params.camera, render=False,
                                 scene=self.params.scene)
        model = self.workcell.model
        self.joint_names = [*ARM_JOINTS, *(n for n in FINGER_JOINTS if _has_joint(model, n))]
        self.qpos_idx = [model.jnt_qposadr[model.joint(n).id] for n in self.joint_names]
        self.qvel_idx = [model.jnt_dofadr[model.joint(n).id] for n in self.joint_names]
        self.lock = threading.Lock()
        self.sim_time = 0.0
        self.episode: dict = {}
        self.task_text = ""
        self.rtf = float("nan")
        self.lateness_max = 0.0  # the physics loop's worst lateness in the last measuring window, seconds
        self.render_max = 0.0  # the slowest camera render in the last measuring window, seconds
        self.render_peak = Peak()  # the slowest render since start, and when (node clock)
        self.frames_skipped = 0  # frames due while the previous one was still rendering
        self.arm_commands = 0  # arm trajectories accepted from the controller topic since start
        self.scheduling = "not started"
        self.suggested = ""
        self._reset_layout(self.params.seed)

        self.joint_pub = self.create_publisher(JointState, topics.JOINT_STATES, DEFAULT)
        # camera → (image, camera_info) publishers: the primary camera first, then each extra one
        self.extra_cameras = topics.camera_names(self.params.extra_cameras)
        if self.params.camera in self.extra_cameras:
            raise ParameterError(f"parameter extra_cameras={self.params.extra_cameras!r} names the primary camera "
                                 f"{self.params.camera!r}, which is published on {topics.CAMERA_IMAGE} already")
        self.camera_pubs = {self.params.camera: (self.create_publisher(Image, topics.CAMERA_IMAGE, SENSOR),
                                                 self.create_publisher(CameraInfo, "/camera/camera_info", SENSOR))}
        for camera in self.extra_cameras:
            topic = topics.camera_image(camera)
            self.camera_pubs[camera] = (self.create_publisher(Image, topic, SENSOR), self.create_publisher(
                CameraInfo, topic.rsplit("/", 1)[0] + "/camera_info", SENSOR))
        self.clock_pub = self.create_publisher(Clock, "/clock", 10) if self.params.publish_clock else None
        self.create_subscription(JointTrajectory, topics.ARM_CONTROLLER, self.on_arm, COMMANDS)
        self.create_subscription(JointTrajectory, topics.GRIPPER_CONTROLLER, self.on_gripper, COMMANDS)
        self.create_subscription(String, topics.TASK, self.on_task, LATCHED)
        self.create_service(Trigger, topics.SIM_RESET_SERVICE, self.on_reset)
        self.expert = None  # with expert_hints: the scripted expert's next action after each command (tests)
        if self.params.expert_hints:
            from vla_ros.sim.expert import ScriptedExpert  # noqa: PLC0415

            self.expert = ScriptedExpert()
            self.hint_pub = self.create_publisher(Float32MultiArray, topics.SIM_EXPERT_ACTION, COMMANDS)
        # The arm's URDF and the cameras' frames for RViz and Foxglove (the image's frame_id is one of them).
        self.frames = RobotFrames(self, load_robot(), extra_static=camera_frames(model)) \
            if self.params.publish_tf else None
        DiagnosticsReporter(self, self.report)
        self._frame_due = threading.Event()
        self.threads.start(self.physics_loop, "physics")
        self.threads.start(self.camera_loop, "camera")
        self.get_logger().info(f"simulated wx250s up; suggested task: '{self.suggested}'")

    # --- time ---------------------------------------------------------------------------------------
    def stamp(self):
        """Message stamps: simulated time when publishing /clock, else the node clock."""
        if self.clock_pub is not None:
            sec, nanosec = divmod(int(round(self.sim_time * 1e9)), 1_000_000_000)
            return Time(seconds=sec, nanoseconds=nanosec).to_msg()
        return self.get_clock().now().to_msg()

    def now_s(self) -> float:
        return self.sim_time if self.clock_pub is not None else self.get_clock().now().nanoseconds * 1e-9

    # --- layout and task ------------------------------------------------------------------------------
    def _reset_layout(self, seed: int) -> None:
        family = self.settings.value.family or None
        self.workcell.reset(seed=seed, family=family)
        self.suggested = self.workcell.task.instruction
        self.arm = TrajectoryFollower(self.workcell.q_target)
        self.gripper = TrajectoryFollower(np.array([self.workcell.gripper_command]))
        self.layout_seed = seed
        self._start_episode(self.task_text)

    def _start_episode(self, task_text: str) -> None:
        from vla_ros.sim.tasks import parse_instruction  # noqa: PLC0415

        task, problem = None, ""
        if task_text:
            try:
                task = parse_instruction(task_text)
            except ValueError as exc:
                problem = str(exc)
        if task is not None:
            present = {p.key for p in self.workcell.layout.placements}
            missing = [name for name in (task.target, task.reference) if name and name not in present]
            if missing:
                task, problem = None, f"the layout has no {', '.join(missing)} object"
        self.workcell.begin_task(task)
        self.episode = {"task": task_text, "judged": task is not None, "problem": problem,
                        "started": self.sim_time, "success_at": None}

    def on_task(self, msg: String) -> None:
        with self.lock:
            self.task_text = msg.data
            self._start_episode(msg.data)

    def on_reset(self, _request, response):
        seed = self.settings.value.seed
        with self.lock:
            self._reset_layout(seed)
        self.set_parameters([Parameter("seed", value=seed + 1)])
        response.success = True
        response.message = f"seed {seed}: suggested task '{self.suggested}'"
        self.get_logger().info(f"reset: {response.message}")
        return response

    # --- controller topics ----------------------------------------------------------------------------
    def _trajectory(self, msg: JointTrajectory, names: list[str]) -> tuple[list[TrajectoryPoint], float | None] | None:
        index = {n: i for i, n in enumerate(msg.joint_names)}
        if not msg.points or any(n not in index for n in names):
            self.get_logger().warning(
                f"ignored a trajectory for joints {list(msg.joint_names)}; expected {names}", throttle_duration_sec=2.0)
            return None
        points = []
        for p in msg.points:
            positions = np.array([p.positions[index[n]] for n in names], dtype=np.float64)
            if not np.all(np.isfinite(positions)):
                self.get_logger().warning("ignored a trajectory with non-finite positions", throttle_duration_sec=2.0)
                return None
            points.append(TrajectoryPoint(positions, p.time_from_start.sec + p.time_from_start.nanosec * 1e-9))
        stamp = Time.from_msg(msg.header.stamp).nanoseconds * 1e-9
        return points, (stamp if stamp > 0 else None)

    def on_arm(self, msg: JointTrajectory) -> None:
        parsed = self._trajectory(msg, list(ARM_JOINTS))
        if parsed:
            with self.lock:
                self.arm.command(self.now_s(), *parsed)
                self.arm_commands += 1
            self.publish_expert_hint()

    def on_gripper(self, msg: JointTrajectory) -> None:
        # Like Interbotix's gripper controller: the left finger's position in metres.
        parsed = self._trajectory(msg, [FINGER_JOINT])
        if parsed:
            points, start = parsed
            opening = [TrajectoryPoint(np.array([gripper_opening(p.positions[0])]), p.time_s) for p in points]
            with self.lock:
                self.gripper.command(self.now_s(), opening, start)
            self.publish_expert_hint()

    def publish_expert_hint(self) -> None:
        """The expert's action from the commanded targets (where the executor's integration stands), as in-process."""
        if self.expert is None:
            return
        from vla_ros.core.action_chunks import ACTION_NAMES  # noqa: PLC0415
        from vla_ros.robot.kinematics import Pose  # noqa: PLC0415

        with self.lock:
            cell = self.workcell
            if cell.task is None:
                return
            saved = cell.q_target, cell.ee_target, cell.gripper_command
            try:
                cell.q_target = cell.kinematics.clamp(self.arm.goal())
                cell.ee_target = Pose(*cell.kinematics.fk(cell.q_target))
                cell.gripper_command = float(np.clip(self.gripper.goal()[0], 0.0, 1.0))
                action, phase = self.expert.act(cell)
            finally:
                cell.q_target, cell.ee_target, cell.gripper_command = saved
        label = f"action:{','.join(ACTION_NAMES)} phase:{phase}"
        self.hint_pub.publish(Float32MultiArray(
            layout=MultiArrayLayout(dim=[MultiArrayDimension(label=label, size=7, stride=7)]),
            data=[float(v) for v in action]))

    # --- physics loop ---------------------------------------------------------------------------------
    def physics_loop(self) -> None:
        self.scheduling = request_realtime(self.params.thread_priority)
        self.get_logger().info(f"physics thread: {self.scheduling}")
        period = self.params.physics_period
        next_joint = next_camera = 0.0
        wall_start, sim_start = time.monotonic(), self.sim_time
        deadline = wall_start
        lateness = 0.0
        while not self.threads.stopping.is_set():
            joint_state = None
            with self.lock:
                now = self.now_s()
                self.workcell.set_joint_targets(self.arm.sample(now), float(self.gripper.sample(now)[0]))
                self.workcell.advance(period, render=False)
                self.sim_time += period
                if self.episode.get("judged") and self.episode["success_at"] is None and self.workcell.success():
                    self.episode["success_at"] = self.sim_time
                    self.get_logger().info(f"task '{self.episode['task']}' succeeded after "
                                           f"{self.sim_time - self.episode['started']:.1f} s")
                if self.sim_time >= next_joint:
                    next_joint = max(next_joint + 1.0 / self.params.joint_state_rate, self.sim_time)
                    joint_state = self.publish_joint_states()
                if self.sim_time >= next_camera:
                    next_camera = max(next_camera + 1.0 / self.params.camera_rate, self.sim_time)
                    if self._frame_due.is_set():
                        self.frames_skipped += 1
                    self._frame_due.set()
            if joint_state is not None and self.frames is not None:  # outside the lock: the frames need no physics
                self.frames.publish_joints(joint_state.name, joint_state.position, joint_state.header.stamp)
            if self.clock_pub is not None:
                self.clock_pub.publish(Clock(clock=self.stamp()))
            deadline += period
            delay = deadline - time.monotonic()
            lateness = max(lateness, -delay)
            if delay > 0:
                time.sleep(delay)
            elif delay < -0.5:
                deadline = time.monotonic()  # far behind: stop trying to catch up
            elapsed = time.monotonic() - wall_start
            if elapsed > 2.0:
                self.rtf = (self.sim_time - sim_start) / elapsed
                self.lateness_max, lateness = lateness, 0.0
                wall_start, sim_start = time.monotonic(), self.sim_time

    def camera_loop(self) -> None:
        """Render each due frame from a copy of the scene; the EGL context lives and dies in this thread."""
        import mujoco  # noqa: PLC0415

        height, width = self.params.image_height, self.params.image_width
        # one renderer (and scene copy) per camera: every camera's frame shows the same instant
        renderers = {camera: mujoco.Renderer(self.workcell.model, height, width) for camera in self.camera_pubs}
        slowest, window_start = 0.0, time.monotonic()
        try:
            while not self.threads.stopping.is_set():
                if not self._frame_due.wait(timeout=0.1):
                    continue
                with self.lock:
                    for camera, renderer in renderers.items():
                        renderer.update_scene(self.workcell.data, camera=camera)
                    stamp = self.stamp()
                    self._frame_due.clear()
                started = time.monotonic()
                frames = {camera: renderer.render() for camera, renderer in renderers.items()}  # outside the lock
                took = time.monotonic() - started
                slowest = max(slowest, took)
                self.render_peak.add(took, self.get_clock().now().nanoseconds * 1e-9)
                for camera, frame in frames.items():
                    self.publish_camera(camera, frame, stamp)
                if started - window_start > 2.0:
                    self.render_max, slowest, window_start = slowest, 0.0, started
        finally:
            for renderer in renderers.values():
                renderer.close()

    def publish_joint_states(self) -> JointState:
        data = self.workcell.data
        msg = JointState(name=list(self.joint_names))
        msg.header.stamp = self.stamp()
        msg.position = [float(data.qpos[i]) for i in self.qpos_idx]
        msg.velocity = [float(data.qvel[i]) for i in self.qvel_idx]
        msg.effort = [float(data.qfrc_actuator[i]) for i in self.qvel_idx]
        self.joint_pub.publish(msg)
        return msg

    def publish_camera(self, camera: str, frame: np.ndarray, stamp) -> None:
        image_pub, info_pub = self.camera_pubs[camera]
        fields = rgb8_fields(frame)
        image = Image(height=fields.height, width=fields.width, encoding=fields.encoding, step=fields.step,
                      data=fields.data)
        image.header.stamp = stamp
        image.header.frame_id = f"{camera}_camera"
        image_pub.publish(image)
        # K of the camera's optical frame `<camera>_camera` (sim/camera_frames.py; published on /tf_static).
        k = camera_matrix(float(self.workcell.model.cam(camera).fovy[0]), fields.width, fields.height)
        info = CameraInfo(height=fields.height, width=fields.width, distortion_model="plumb_bob")
        info.header = image.header
        info.k = [float(v) for v in k.ravel()]
        info.p = [float(v) for v in np.hstack([k, np.zeros((3, 1))]).ravel()]
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        info.d = [0.0] * 5
        info_pub.publish(info)

    def report(self):
        episode = dict(self.episode)
        success = episode.get("success_at") is not None
        values = {
            "seed": str(self.layout_seed),
            "suggested_task": self.suggested,
            "task": episode.get("task", ""),
            "success": "true" if success else "false",
            "episode_time_s": f"{self.sim_time - episode.get('started', self.sim_time):.2f}",
            "real_time_factor": f"{self.rtf:.3f}",
            "sim_time_s": f"{self.sim_time:.2f}",
            "physics_lateness_max_ms": f"{self.lateness_max * 1e3:.1f}",
            "render_max_ms": f"{self.render_max * 1e3:.1f}",
            "frames_skipped": str(self.frames_skipped),
            "arm_commands": str(self.arm_commands),
            "scheduling": self.scheduling,
        } | self.render_peak.summary("render")
        if success:
            values["success_after_s"] = f"{episode['success_at'] - episode['started']:.2f}"
        if episode.get("problem"):
            values["task_problem"] = episode["problem"]
        slow = not math.isnan(self.rtf) and self.rtf < 0.9
        message = "task succeeded" if success else ("behind real time" if slow else "running")
        return (WARN if slow else OK), message, values

    def destroy_node(self):
        self.threads.stop(timeout_s=2.0)
        super().destroy_node()


def _has_joint(model, name: str) -> bool:
    try:
        model.joint(name)
        return True
    except KeyError:
        return False


def main(args: list[str] | None = None) -> int:
    # Mesa's llvmpipe renders with one thread per core by default; a 128-px frame does not need them, and on
    # two busy cores a frame waited for its slowest render thread (0.3-0.7 s now and then). A user's own
    # setting stays.
    os.environ.setdefault("LP_NUM_THREADS", "1")
    return run_node("widowx_sim", WidowXSim, args)


if __name__ == "__main__":
    sys.exit(main())
