"""The simulated WidowX 250 workcell: MuJoCo physics, seeded layouts, 5 Hz delta-action control, cameras."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

from pathlib import Path

import mujoco
import numpy as np

from vla_ros.core.settings import CONTROL_PERIOD_S
from vla_ros.robot.kinematics import ArmKinematics, IKResult, Pose, rot_y, rotmat_to_quat
from vla_ros.robot.wx250s import ARM_JOINTS, FINGER_JOINT, FINGER_OPEN, finger_position, gripper_opening
from vla_ros.sim.settings import CAMERAS
from vla_ros.sim.layout import BLOCK_SIZES, SceneLayout, sample_layout
from vla_ros.sim.scenes import apply_scene
from vla_ros.sim.tasks import ObjectState, Task, WorldState, sample_task, task_success

WORKCELL_MJCF = Path(__file__).resolve().parent / "assets" / "workcell.xml"  # includes the arm's MJCF
CONTROL_DT = CONTROL_PERIOD_S  # one `step`: the data's control period
HOME_POS = np.array([0.25, 0.0, 0.16])
HOME_ROT = rot_y(np.pi / 2)
MONITOR_STEPS = 5  # physics steps (10 ms) between two looks of an `advance` monitor  # gripper pointing straight down, fingers closing along y


@dataclass
class Observation:
    """What a policy sees after a step (image is None when rendering was skipped)."""

    image: np.ndarray | None  # uint8 [H,W,3]
    joint_pos: np.ndarray  # [6] rad, ARM_JOINTS order
    ee_pos: np.ndarray  # [3] m, base frame
    ee_quat: np.ndarray  # [4] (w, x, y, z)
    gripper: float  # measured opening, 1 = open, 0 = closed
    step: int
    # frames of the workcell's extra cameras (e.g. {"wrist": uint8 [H,W,3]}); empty when rendering was skipped
    cameras: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class WorkcellState:
    """A complete snapshot for look-ahead: physics plus everything the controller and task remember."""

    physics: np.ndarray
    ee_target: Pose
    q_target: np.ndarray
    gripper_command: float
    step: int
    task: Task | None
    layout: SceneLayout | None
    start_pos: dict[str, np.ndarray] = field(default_factory=dict)
    last_ik: IKResult | None = None


class Workcell:
    """The arm on a table with blocks, a plate, a towel and a can; one `step` is one 5 Hz control step."""

    def __init__(self, image_size: int = 128, camera: str = "over_shoulder", render: bool = True,
                 split: str = "train", scene: str = "default", extra_cameras: tuple[str, ...] = ()) -> None:
        """`extra_cameras` are rendered beside `camera` into every observation (`Observation.cameras`)."""
        for name in (camera, *extra_cameras):
            if name not in CAMERAS:
                raise ValueError(f"camera {name!r} is not one of {CAMERAS}")
        if camera in extra_cameras or len(set(extra_cameras)) != len(extra_cameras):
            raise ValueError(f"extra cameras {list(extra_cameras)} repeat a camera (the primary one is {camera!r})")
        self.extra_cameras = tuple(extra_cameras)
        self.model = mujoco.MjModel.from_xml_path(str(WORKCELL_MJCF))
        apply_scene(self.model, scene)  # before any renderer: textures are uploaded when one is made
        self.scene = scene
        self.data = mujoco.MjData(self.model)
        self.kinematics = ArmKinematics()
        self.image_size, self.camera, self.render_enabled, self.split = image_size, camera, render, split
        self.substeps = int(round(CONTROL_DT / self.model.opt.timestep))
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        model = self.model
        self._arm_qpos = np.array([model.jnt_qposadr[model.joint(n).id] for n in ARM_JOINTS])
        self._arm_dof = np.array([model.jnt_dofadr[model.joint(n).id] for n in ARM_JOINTS])
        self._finger_qpos = model.jnt_qposadr[model.joint(FINGER_JOINT).id]
        self._ee_site = model.site("ee").id
        self._state_spec = mujoco.mjtState.mjSTATE_INTEGRATION
        self._state_size = mujoco.mj_stateSize(model, self._state_spec)
        home = self.kinematics.ik(np.array([0.0, -0.3, 0.3, 0.0, 1.5, 0.0]), HOME_POS, HOME_ROT)
        if not home.reached:
            raise RuntimeError("the home pose is unreachable; the arm model and HOME_POS disagree")
        self.home_q = home.q
        self.task: Task | None = None
        self.layout: SceneLayout | None = None
        self.start_pos: dict[str, np.ndarray] = {}
        self.ee_target = Pose(*self.kinematics.fk(self.home_q))
        self.q_target = self.home_q.copy()
        self.gripper_command = 1.0
        self.step_count = 0
        self.last_ik: IKResult | None = None

    # ------------------------------------------------------------------------------------ episode
    def reset(self, seed: int, task: Task | None = None, *, family: str | None = None) -> Observation:
        """A fresh seeded layout (with distractors) and task; the arm at home with the gripper open.

        Without `task` one is sampled from the layout, of the given `family` if one is named.
        """
        rng = np.random.default_rng(seed)
        self.layout = sample_layout(rng, task, family=family)
        self.task = task if task is not None else sample_task(rng, self.layout, split=self.split, family=family)
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[self._arm_qpos] = self.home_q
        for placement in self.layout.placements:
            joint = self.model.joint(placement.body)
            adr = self.model.jnt_qposadr[joint.id]
            geom = self.model.geom(self.model.body_geomadr[self.model.body(placement.body).id])
            half_height = geom.size[2] if geom.type[0] == mujoco.mjtGeom.mjGEOM_BOX else geom.size[1]
            self.data.qpos[adr:adr + 3] = (placement.x, placement.y, half_height + 1e-4)
            self.data.qpos[adr + 3:adr + 7] = (np.cos(placement.yaw / 2), 0.0, 0.0, np.sin(placement.yaw / 2))
        self.q_target = self.home_q.copy()
        self.gripper_command = 1.0
        self.data.qpos[self._finger_qpos] = FINGER_OPEN
        self.data.qpos[self._finger_qpos + 1] = FINGER_OPEN
        self._apply_ctrl()
        mujoco.mj_forward(self.model, self.data)
        mujoco.mj_step(self.model, self.data, nstep=50)  # let objects settle onto the table
        self.ee_target = Pose(*self.kinematics.fk(self.home_q))
        self.step_count = 0
        self.last_ik = None
        self.start_pos = {key: obj.pos.copy() for key, obj in self._object_states().items()}
        return self.observe()

    def begin_task(self, task: Task | None) -> None:
        """Judge `task` from now on, in the scene as it is (a new instruction without a new layout)."""
        self.task = task
        self.start_pos = {key: obj.pos.copy() for key, obj in self._object_states().items()}

    def step(self, action7: np.ndarray, render: bool | None = None) -> Observation:
        """One control step: integrate the delta into the EE target, IK, set targets, simulate 0.2 s."""
        action = np.asarray(action7, dtype=np.float32).reshape(7)
        if not np.all(np.isfinite(action)):
            raise ValueError(f"action {action.tolist()} has non-finite entries")
        self.ee_target, self.last_ik = self.kinematics.apply_delta(self.q_target, self.ee_target, action)
        self.q_target = self.last_ik.q
        self.gripper_command = float(np.clip(action[6], 0.0, 1.0))
        return self.advance(CONTROL_DT, render=render, count_step=True)

    def set_arm_target(self, q6: np.ndarray) -> None:
        """Arm joint position target (what the arm controller receives), clamped to the limits."""
        self.q_target = self.kinematics.clamp(np.asarray(q6, dtype=np.float64))
        self.ee_target = Pose(*self.kinematics.fk(self.q_target))
        self._apply_ctrl()

    def set_gripper_target(self, opening: float) -> None:
        """Gripper target as an opening, 0 (closed) .. 1 (open)."""
        self.gripper_command = float(np.clip(opening, 0.0, 1.0))
        self._apply_ctrl()

    def set_joint_targets(self, q6: np.ndarray, gripper: float) -> None:
        """Direct joint position command (what a trajectory controller would send); clamped to limits."""
        self.q_target = self.kinematics.clamp(np.asarray(q6, dtype=np.float64))
        self.gripper_command = float(np.clip(gripper, 0.0, 1.0))
        self.ee_target = Pose(*self.kinematics.fk(self.q_target))
        self._apply_ctrl()

    def advance(self, duration_s: float = CONTROL_DT, render: bool | None = None, count_step: bool = False,
                monitor: Callable[[], None] | None = None) -> Observation:
        """Run physics under the current targets for `duration_s` and observe; `monitor` (e.g. a
        `safety_events.SafetyWatch`) is called every MONITOR_STEPS physics steps (the physics is the same)."""
        self._apply_ctrl()
        steps = max(1, int(round(duration_s / self.model.opt.timestep)))
        if monitor is None:
            mujoco.mj_step(self.model, self.data, nstep=steps)
        else:
            for done in range(0, steps, MONITOR_STEPS):
                mujoco.mj_step(self.model, self.data, nstep=min(MONITOR_STEPS, steps - done))
                monitor()
        if count_step:
            self.step_count += 1
        return self.observe(render=render)

    def _apply_ctrl(self) -> None:
        self.data.ctrl[:6] = self.q_target
        self.data.ctrl[6] = finger_position(self.gripper_command)

    # ------------------------------------------------------------------------------------ reading
    def observe(self, render: bool | None = None) -> Observation:
        do_render = self.render_enabled if render is None else render
        pos, quat = self.ee_pose()
        cameras = {name: self.render(name) for name in self.extra_cameras} if do_render else {}
        return Observation(image=self.render() if do_render else None, joint_pos=self.joint_positions(),
                           ee_pos=pos, ee_quat=quat, gripper=self.gripper_state(), step=self.step_count,
                           cameras=cameras)

    def joint_positions(self) -> np.ndarray:
        return self.data.qpos[self._arm_qpos].copy()

    def joint_velocities(self) -> np.ndarray:
        return self.data.qvel[self._arm_dof].copy()

    def ee_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """Measured end-effector position [3] and quaternion (w, x, y, z) in the base frame."""
        return (self.data.site_xpos[self._ee_site].copy(),
                rotmat_to_quat(self.data.site_xmat[self._ee_site].reshape(3, 3)))

    def gripper_state(self) -> float:
        """Measured finger opening, 0 = closed .. 1 = open."""
        return gripper_opening(self.data.qpos[self._finger_qpos])

    def _object_states(self) -> dict[str, ObjectState]:
        states = {}
        for placement in self.layout.placements if self.layout else ():
            body = self.model.body(placement.body)
            geom = self.model.geom(self.model.body_geomadr[body.id])
            if geom.type[0] == mujoco.mjtGeom.mjGEOM_BOX:
                half = geom.size.copy()
            else:  # cylinder: radius, half height
                half = np.array([geom.size[0], geom.size[0], geom.size[1]])
            states[placement.key] = ObjectState(pos=self.data.xpos[body.id].copy(), half_extents=half)
        return states

    def object_yaw(self, key: str) -> float:
        """Heading of an object on the table about the vertical, rad."""
        body = self.model.body(self.layout.placement(key).body)
        xmat = self.data.xmat[body.id].reshape(3, 3)
        return float(np.arctan2(xmat[1, 0], xmat[0, 0]))

    def world_state(self) -> WorldState:
        return WorldState(objects=self._object_states(), ee_pos=self.ee_pose()[0],
                          gripper=self.gripper_state(), start_pos=dict(self.start_pos))

    def success(self) -> bool:
        return self.task is not None and task_success(self.task, self.world_state())

    def block_edge(self, colour: str) -> float:
        return BLOCK_SIZES[self.layout.placement(colour).body[-1]]

    # ------------------------------------------------------------------------------------ snapshots
    def get_state(self) -> WorkcellState:
        physics = np.empty(self._state_size)
        mujoco.mj_getState(self.model, self.data, physics, self._state_spec)
        return WorkcellState(physics=physics, ee_target=Pose(self.ee_target.pos.copy(), self.ee_target.rot.copy()),
                             q_target=self.q_target.copy(), gripper_command=self.gripper_command,
                             step=self.step_count, task=self.task, layout=self.layout,
                             start_pos=copy.deepcopy(self.start_pos), last_ik=self.last_ik)

    def set_state(self, state: WorkcellState) -> None:
        mujoco.mj_setState(self.model, self.data, state.physics, self._state_spec)
        self.ee_target = Pose(state.ee_target.pos.copy(), state.ee_target.rot.copy())
        self.q_target = state.q_target.copy()
        self.gripper_command = state.gripper_command
        self.step_count, self.task, self.layout = state.step, state.task, state.layout
        self.start_pos = copy.deepcopy(state.start_pos)
        self.last_ik = state.last_ik
        self._apply_ctrl()
        mujoco.mj_forward(self.model, self.data)

    # ------------------------------------------------------------------------------------ cameras
    def render(self, camera: str | None = None, size: tuple[int, int] | None = None) -> np.ndarray:
        """RGB uint8 [H,W,3] from a named camera (default: the workcell's camera at image_size)."""
        camera = camera or self.camera
        if camera not in CAMERAS:
            raise ValueError(f"camera {camera!r} is not one of {CAMERAS}")
        height, width = size or (self.image_size, self.image_size)
        renderer = self._renderers.get((height, width))
        if renderer is None:
            renderer = self._renderers[(height, width)] = mujoco.Renderer(self.model, height, width)
        renderer.update_scene(self.data, camera=camera)
        return renderer.render().copy()

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()

    def __enter__(self) -> Workcell:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
