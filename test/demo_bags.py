"""Synthetic demonstration bags shaped like `vla-ros record-demos` writes them, with faults on request (tests only).

An episode is a known 7-D action sequence integrated by the arm's kinematics from the home pose; the joint
states hold each step's joints (50 Hz), the camera (10 Hz) renders a frame that encodes the step, and the
executed actions come at 5 Hz, a few ms after their step, as the executor publishes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vla_ros.bags.message_types import typestore
from vla_ros.bags.writing import BagWriter
from vla_ros.core import topics
from vla_ros.core.action_chunks import ACTION_NAMES
from vla_ros.robot.kinematics import ArmKinematics, Pose
from vla_ros.robot.wx250s import ARM_JOINTS, finger_position
from vla_ros.sim.workcell import HOME_POS, HOME_ROT

NS = 1_000_000_000
T0 = 1_800_000_000 * NS
KINEMATICS = ArmKinematics()
HOME_Q = KINEMATICS.ik(np.array([0.0, -0.3, 0.3, 0.0, 1.5, 0.0]), HOME_POS, HOME_ROT).q


@dataclass
class Faults:
    camera_gap: tuple[float, float] | None = None  # seconds into the episode without frames
    joints_backwards_at: int | None = None  # swap two joint states' stamps at this index
    no_camera: bool = False
    action_rate_hz: float = 5.0
    no_actions: bool = False
    no_marks: bool = False
    instruction: str = "pick up the red block"
    success: bool = True
    image_size: int = 64
    lead_s: float = 0.3  # recording before the start mark
    extra: dict = field(default_factory=dict)


def actions_for(steps: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    actions = np.zeros((steps, 7))
    actions[:, :3] = rng.uniform(-0.012, 0.012, (steps, 3))
    actions[:, 5] = rng.uniform(-0.08, 0.08, steps)
    actions[:, 6] = (np.arange(steps) < steps // 2).astype(float)  # open, then closed
    return actions


def joints_for(actions: np.ndarray) -> np.ndarray:
    """q at the start of each step and after the last: [T+1, 6]."""
    q, pose = HOME_Q.copy(), Pose(*KINEMATICS.fk(HOME_Q))
    out = [q]
    for action in actions:
        pose, result = KINEMATICS.apply_delta(q, pose, action)
        q = result.q
        out.append(q)
    return np.asarray(out)


def frame(step: float, size: int) -> np.ndarray:
    """A frame that encodes its time smoothly (so a codec keeps it close)."""
    y, x = np.mgrid[0:size, 0:size] / size
    image = np.stack([128 + 100 * np.sin(2 * np.pi * (x + step / 20)), 128 + 100 * np.cos(2 * np.pi * y),
                      np.full_like(x, 40 + 8 * step)], -1)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_demo_bag(path: Path, steps: int = 12, seed: int = 0, faults: Faults | None = None) -> dict:
    """Write one episode; returns what it holds (actions, joints, frame times) for the test to compare."""
    f = faults or Faults()
    store = typestore()
    T = store.types
    Header, Time = T["std_msgs/msg/Header"], T["builtin_interfaces/msg/Time"]

    def header(ns: int, frame_id: str = ""):
        return Header(stamp=Time(sec=ns // NS, nanosec=ns % NS), frame_id=frame_id)

    def cdr(msg, kind):
        return bytes(store.serialize_cdr(msg, kind))

    actions = actions_for(steps, seed)
    q = joints_for(actions)
    start = T0 + int(f.lead_s * NS)
    period = int(NS / f.action_rate_hz)
    step_times = [start + k * period + 3_000_000 for k in range(steps)]  # ticks, 3 ms after the nominal time
    end = start + steps * period
    messages = []
    messages.append((T0, topics.TASK, cdr(T["std_msgs/msg/String"](data=f.instruction), "std_msgs/msg/String")))
    if not f.no_marks:
        messages.append((start, topics.DEMOS_MARK, cdr(T["std_msgs/msg/String"](data="start"), "std_msgs/msg/String")))
        label = "success" if f.success else "failure"
        messages.append((end + 10_000_000, topics.DEMOS_MARK,
                         cdr(T["std_msgs/msg/String"](data=label), "std_msgs/msg/String")))
    camera_times = []
    t = T0
    while t <= end + NS // 5:
        seconds = (t - start) / NS
        if not (f.camera_gap and f.camera_gap[0] <= seconds < f.camera_gap[1]) and not f.no_camera:
            rgb = frame((t - start) / (NS / 5), f.image_size)
            msg = T["sensor_msgs/msg/Image"](header=header(t, "camera"), height=f.image_size, width=f.image_size,
                                             encoding="rgb8", is_bigendian=0, step=3 * f.image_size,
                                             data=rgb.reshape(-1))
            messages.append((t + 2_000_000, topics.CAMERA_IMAGE, cdr(msg, "sensor_msgs/msg/Image")))
            camera_times.append(t)
        t += NS // 10
    joint_stamps = []
    t = T0
    while t <= end + NS // 5:
        k = int(np.clip((t - start) // (NS // 5), 0, steps))  # the step the arm is in (targets reached)
        gripper = actions[k - 1, 6] if k > 0 else 1.0  # what the last executed step commanded
        finger = finger_position(gripper)
        names = [*ARM_JOINTS, "left_finger", "right_finger"]
        msg = T["sensor_msgs/msg/JointState"](header=header(t), name=names,
                                              position=np.append(q[k], [finger, -finger]),
                                              velocity=np.zeros(8), effort=np.zeros(8))
        joint_stamps.append(t)
        messages.append((t + 1_000_000, topics.JOINT_STATES, cdr(msg, "sensor_msgs/msg/JointState")))
        t += NS // 50
    if f.joints_backwards_at is not None:  # two joint states leave in the wrong order
        indices = [i for i, m in enumerate(messages) if m[1] == topics.JOINT_STATES]
        a, b = indices[f.joints_backwards_at], indices[f.joints_backwards_at + 1]
        messages[a], messages[b] = (messages[a][0], topics.JOINT_STATES, messages[b][2]), \
            (messages[b][0], topics.JOINT_STATES, messages[a][2])
    if not f.no_actions:
        Point, Duration = T["trajectory_msgs/msg/JointTrajectoryPoint"], T["builtin_interfaces/msg/Duration"]
        for k, stamp in enumerate(step_times):
            msg = T["trajectory_msgs/msg/JointTrajectory"](
                header=header(stamp, "teleop"), joint_names=list(ACTION_NAMES),
                points=[Point(positions=actions[k].astype(np.float64), velocities=np.zeros(0), accelerations=np.zeros(0),
                              effort=np.zeros(0), time_from_start=Duration(sec=0, nanosec=200_000_000))])
            messages.append((stamp + 500_000, topics.EXECUTED_ACTION, cdr(msg, "trajectory_msgs/msg/JointTrajectory")))
    types = {topics.TASK: "std_msgs/msg/String", topics.DEMOS_MARK: "std_msgs/msg/String",
             topics.CAMERA_IMAGE: "sensor_msgs/msg/Image", topics.JOINT_STATES: "sensor_msgs/msg/JointState",
             topics.EXECUTED_ACTION: "trajectory_msgs/msg/JointTrajectory"}
    used = {m[1] for m in messages}
    with BagWriter(path, "mcap", custom_data={"instruction": f.instruction, **f.extra}) as writer:
        for topic, kind in types.items():
            if topic in used:
                writer.add_topic(topic, kind)
        for stamp, topic, data in sorted(messages, key=lambda m: m[0]):
            writer.write(topic, stamp, data)
    return {"actions": actions, "q": q, "start_ns": start, "step_ns": np.array(step_times),
            "camera_ns": np.array(camera_times)}
