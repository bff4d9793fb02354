"""What the robot sees and intends, as plain shapes in base_link: one source for the RViz markers and the viewer.

`SceneState` takes plain data (joint positions, a decoded chunk, a veto's text, the plan, the grounding head's
places) and `shapes()` turns the current state into `Shape`s: the chunk's end-effector path and its executed
window, the workspace box, the spot of the last veto with its rule, the grounded target (and reference) on the
table, and the task and plan as text. The markers node converts them to visualization_msgs/Marker; the rerun
viewer logs the same state its own way. No rclpy, no MuJoCo: frames come from the URDF (`robot.urdf`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from vla_ros.core.action_chunks import EE_DELTA, ActionChunk
from vla_ros.core.executor import ExecutorSettings
from vla_ros.core.safety.limits import BRIDGE_WORKSPACE_MAX, BRIDGE_WORKSPACE_MIN
from vla_ros.core.settings import Settings, length, non_negative, positive, setting
from vla_ros.core.stages.gate import split_veto
from vla_ros.robot.urdf import BASE_LINK, EE_LINK, RobotModel
from vla_ros.robot.wx250s import ARM_JOINTS

# Shape kinds: the visualization_msgs/Marker types they become.
LINE_STRIP, LINE_LIST, SPHERE_LIST, SPHERE, CUBE, CYLINDER, TEXT = (
    "line_strip", "line_list", "sphere_list", "sphere", "cube", "cylinder", "text")

PATH_COLOUR = (0.35, 0.65, 1.0, 0.8)
WINDOW_COLOUR = (0.1, 0.9, 0.3, 1.0)
WORKSPACE_COLOUR = (0.7, 0.7, 0.7, 0.6)
VETO_COLOUR = (1.0, 0.15, 0.1, 0.9)
TARGET_COLOUR = (1.0, 0.6, 0.0, 0.6)
REFERENCE_COLOUR = (0.7, 0.3, 1.0, 0.6)
TEXT_COLOUR = (1.0, 1.0, 1.0, 1.0)
OPEN_COLOUR, CLOSED_COLOUR = np.array([0.2, 0.85, 0.3, 1.0]), np.array([0.95, 0.3, 0.1, 1.0])
BLOCK_HALF_HEIGHT = 0.02  # the larger blocks' half edge: where a grounded block's centre sits above the table
JOINT_HISTORY_S = 3.0  # joint states kept to find the arm's pose at a chunk's observation stamp


@dataclass(frozen=True)
class SceneSettings(Settings):
    """The markers node's settings (the viewer uses the defaults)."""

    frame_id: str = setting(BASE_LINK, "Frame of every marker (the arm's base).")
    execute_steps: int = setting(ExecutorSettings().execute_steps, "Steps of each chunk the executor runs "
                                 "(the graph's execute_steps): the window drawn thick.", check=positive)
    workspace_min: tuple = setting(list(BRIDGE_WORKSPACE_MIN), "Workspace box, lower corner (m, base frame): the "
                                   "safety monitor's.", check=length(3))
    workspace_max: tuple = setting(list(BRIDGE_WORKSPACE_MAX), "Workspace box, upper corner (m, base frame).",
                                   check=length(3))
    republish_period: float = setting(1.0, "Seconds between re-sends of the markers while nothing changes "
                                      "(a display that joins late gets them; 0 = only on change).",
                                      check=non_negative)


@dataclass(frozen=True)
class Shape:
    """One marker: `points` [N, 3] in the scene frame (one point for a single sphere, cube, cylinder or text)."""

    ns: str
    kind: str
    points: np.ndarray
    scale: tuple[float, float, float]
    colour: tuple[float, float, float, float]
    colours: np.ndarray | None = None  # [N, 4] per point, for lists
    text: str = ""
    id: int = 0


@dataclass(frozen=True)
class ChunkPath:
    """A chunk as end-effector positions: `path[0]` where the arm was at the chunk's frame, `path[i+1]` after step i."""

    path: np.ndarray  # [H+1, 3]
    gripper: np.ndarray  # [H] opening commanded at each step (1 = open)
    window: tuple[int, int]  # the steps the executor runs, [start, end)
    stamp_s: float


@dataclass(frozen=True)
class Veto:
    rule: str
    reason: str
    spot: np.ndarray | None  # end effector when it happened (None: no joint state yet)
    stamp_s: float


@dataclass(frozen=True)
class Grounding:
    target: np.ndarray  # [3] on the table
    reference: np.ndarray | None
    stamp_s: float


@dataclass
class SceneState:
    robot: RobotModel
    settings: SceneSettings = field(default_factory=SceneSettings)
    task: str = ""
    plan: str = ""
    chunk: ChunkPath | None = None
    veto: Veto | None = None
    grounding: Grounding | None = None

    def __post_init__(self):
        self._joints: deque[tuple[float, dict[str, float]]] = deque()

    # ------------------------------------------------------------------------------------ inputs
    def update_joints(self, names: Sequence[str], positions: Sequence[float], stamp_s: float) -> None:
        if len(names) != len(positions):
            return
        values = {str(n): float(p) for n, p in zip(names, positions) if np.isfinite(p)}
        self._joints.append((stamp_s, values))
        while self._joints and self._joints[0][0] < stamp_s - JOINT_HISTORY_S:
            self._joints.popleft()

    def joints_at(self, stamp_s: float | None = None) -> dict[str, float] | None:
        """The newest joint positions measured at or before `stamp_s` (the newest of all when None or none is)."""
        if not self._joints:
            return None
        if stamp_s is not None:
            for t, values in reversed(self._joints):
                if t <= stamp_s:
                    return values
        return self._joints[-1][1]

    def ee_position(self, stamp_s: float | None = None) -> np.ndarray | None:
        joints = self.joints_at(stamp_s)
        if joints is None or not all(name in joints for name in ARM_JOINTS):
            return None
        return self.robot.link_poses(joints)[EE_LINK].translation

    def on_chunk(self, chunk: ActionChunk, received_s: float) -> ChunkPath | None:
        """Keep the chunk as a path; None (and nothing kept) before the first complete joint state."""
        stamp_s = chunk.stamp_ns * 1e-9
        actions = np.asarray(chunk.actions, dtype=np.float64)
        if chunk.action_space == EE_DELTA:
            start = self.ee_position(stamp_s)
            if start is None:
                return None
            path = np.vstack([start, start + np.cumsum(actions[:, :3], axis=0)])
        else:  # absolute joint targets: each step's end-effector position by FK
            joints = self.joints_at(stamp_s)
            if joints is None:
                return None
            targets = [self.robot.link_poses(dict(zip(ARM_JOINTS, row[:6])))[EE_LINK].translation for row in actions]
            path = np.vstack([self.robot.link_poses(joints)[EE_LINK].translation, *targets])
        first = int(np.clip(np.floor((received_s - stamp_s) / chunk.dt_s + 1e-9), 0, len(actions) - 1))
        self.chunk = ChunkPath(path, np.clip(actions[:, 6], 0.0, 1.0),
                               (first, min(len(actions), first + self.settings.execute_steps)), stamp_s)
        return self.chunk

    def on_veto(self, text: str, stamp_s: float) -> Veto:
        rule, reason = split_veto(text)
        self.veto = Veto(rule, reason, self.ee_position(), stamp_s)
        return self.veto

    def on_task(self, task: str) -> None:
        """A new task starts a clean scene: the previous task's chunk, plan, veto and grounding go."""
        if task != self.task:
            self.task, self.plan, self.chunk, self.veto, self.grounding = task, "", None, None, None

    def on_plan(self, plan: str) -> None:
        self.plan = plan

    def on_grounding(self, target_xy: Sequence[float], reference_xy: Sequence[float] | None, stamp_s: float) -> None:
        def place(xy):
            return np.array([float(xy[0]), float(xy[1]), BLOCK_HALF_HEIGHT])

        self.grounding = Grounding(place(target_xy), None if reference_xy is None else place(reference_xy), stamp_s)

    # ------------------------------------------------------------------------------------ output
    def shapes(self) -> list[Shape]:
        shapes = [workspace_box(self.settings.workspace_min, self.settings.workspace_max)]
        if self.chunk is not None:
            shapes += chunk_shapes(self.chunk)
        if self.veto is not None and self.veto.spot is not None:
            shapes += veto_shapes(self.veto)
        if self.grounding is not None:
            shapes += grounding_shapes(self.grounding)
        if self.task or self.plan:
            shapes.append(status_text(self.task, self.plan, self.settings.workspace_min, self.settings.workspace_max))
        return shapes


def workspace_box(low: Sequence[float], high: Sequence[float]) -> Shape:
    """The 12 edges of the box [low, high] as a line list."""
    low, high = np.asarray(low, float), np.asarray(high, float)
    corners = np.array([[x, y, z] for x in (low[0], high[0]) for y in (low[1], high[1]) for z in (low[2], high[2])])
    edges = [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1]
    return Shape("workspace", LINE_LIST, corners[np.array(edges).ravel()], (0.003, 0.0, 0.0), WORKSPACE_COLOUR)


def gripper_colours(openings: np.ndarray) -> np.ndarray:
    """[N, 4]: green for an open gripper, orange-red for a closed one."""
    openings = np.clip(np.asarray(openings, float), 0.0, 1.0)[:, None]
    return openings * OPEN_COLOUR + (1.0 - openings) * CLOSED_COLOUR


def chunk_shapes(chunk: ChunkPath) -> list[Shape]:
    start, end = chunk.window
    shapes = [Shape("chunk_path", LINE_STRIP, chunk.path, (0.004, 0.0, 0.0), PATH_COLOUR),
              Shape("chunk_steps", SPHERE_LIST, chunk.path[1:], (0.012, 0.012, 0.012), PATH_COLOUR,
                    colours=gripper_colours(chunk.gripper))]
    if end > start:
        shapes.append(Shape("chunk_window", LINE_STRIP, chunk.path[start:end + 1], (0.01, 0.0, 0.0), WINDOW_COLOUR))
    return shapes


def veto_shapes(veto: Veto) -> list[Shape]:
    label = f"veto: {veto.rule}" if veto.rule else "veto"
    return [Shape("veto", SPHERE, veto.spot[None], (0.04, 0.04, 0.04), VETO_COLOUR),
            Shape("veto_text", TEXT, (veto.spot + np.array([0.0, 0.0, 0.06]))[None], (0.0, 0.0, 0.025), VETO_COLOUR,
                  text=f"{label}\n{_shorten(veto.reason, 60)}")]


def grounding_shapes(grounding: Grounding) -> list[Shape]:
    edge = 2 * BLOCK_HALF_HEIGHT + 0.01
    shapes = [Shape("grounding_target", CUBE, grounding.target[None], (edge, edge, edge), TARGET_COLOUR)]
    if grounding.reference is not None:
        shapes.append(Shape("grounding_reference", CYLINDER, (grounding.reference * [1, 1, 0] + [0, 0, 0.003])[None],
                            (0.08, 0.08, 0.006), REFERENCE_COLOUR))
    return shapes


def status_text(task: str, plan: str, low: Sequence[float], high: Sequence[float]) -> Shape:
    low, high = np.asarray(low, float), np.asarray(high, float)
    where = np.array([(low[0] + high[0]) / 2, 0.0, high[2] + 0.08])
    lines = [f"task: {task or '(idle)'}"] + ([f"plan: {_shorten(plan, 80)}"] if plan else [])
    return Shape("status", TEXT, where[None], (0.0, 0.0, 0.03), TEXT_COLOUR, text="\n".join(lines))


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
