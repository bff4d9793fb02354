"""Logging what the robot sees and intends to rerun, from plain data (the live graph, a bag and evaluation alike).

Entities: `world/arm/<link>` (the URDF's links posed from the joint states), `world/workspace`, `world/chunk/…`
(the current chunk's end-effector path, its executed window and its steps coloured by the gripper command),
`world/veto`, `world/grounding/…`; `camera/image`; `status` (task, plan, last veto as markdown); `events` (a text
log: instructions, tasks, plans, rejections, vetoes); `plots/joints`, `plots/commands`, `plots/vetoes` and
`plots/latency/<node>/<figure>` (the p50 timings each node reports on /diagnostics). `blueprint()` lays them out.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

import numpy as np
import rerun as rr
import rerun.blueprint as rrb

from vla_ros.core.action_chunks import ActionChunk
from vla_ros.robot.urdf import RobotModel, link_visuals
from vla_ros.robot.wx250s import ARM_JOINTS, FINGER_JOINT, gripper_opening
from vla_ros.viewer.scene import SceneSettings, SceneState, gripper_colours, workspace_box

APPLICATION_ID = "vla_ros"
TIMELINE = "ros_time"
LATENCY_KEY = re.compile(r"^(.*?)_?(?:ms_p50|p50_ms)$")
# Coloured lines go to entities of their own under `events`: a colour is a component, and a later line on the same
# entity without one would be drawn in it (every task line red after a veto).
COLOUR_WARN, COLOUR_ERROR = (255, 140, 0), (230, 40, 30)
# The arm's links are near-black in the URDF (as the real arm), which vanishes in rerun's dark theme; the viewer draws
# them in a light steel blue, which the browser test also looks for.
ARM_COLOUR = (150, 170, 215)


def _rgba8(rgba: Sequence[float]) -> list[int]:
    return [int(round(255 * float(c))) for c in rgba]


def new_stream() -> rr.RecordingStream:
    """The viewer's recording stream (not rerun's global one: a process may hold several)."""
    return rr.RecordingStream(APPLICATION_ID)


def blueprint() -> rrb.Blueprint:
    """3-D scene and camera on the left; task and plan, events and plots on the right; the timeline below."""
    return rrb.Blueprint(
        rrb.Horizontal(
            rrb.Vertical(
                # From behind the arm's right shoulder, looking at the workspace (as the over-the-shoulder camera).
                rrb.Spatial3DView(origin="world", name="arm, chunk and vetoes (base_link)",
                                  eye_controls=rrb.EyeControls3D(position=[-0.22, -0.42, 0.4],
                                                                 look_target=[0.22, 0.0, 0.08], eye_up=[0, 0, 1])),
                rrb.Spatial2DView(origin="camera", name="camera"),
                row_shares=[3, 2],
            ),
            rrb.Vertical(
                rrb.TextDocumentView(origin="status", name="task and plan"),
                rrb.TextLogView(origin="events", name="events"),
                rrb.TimeSeriesView(origin="plots/joints", name="joints (rad)"),
                rrb.TimeSeriesView(origin="plots/commands", name="commands (rad)"),
                rrb.TimeSeriesView(origin="plots/vetoes", name="vetoes"),
                rrb.TimeSeriesView(origin="plots/latency", name="latency p50 (ms)"),
                row_shares=[1, 2, 2, 2, 1, 2],
            ),
            column_shares=[3, 2],
        ),
        rrb.BlueprintPanel(state="collapsed"),
        rrb.SelectionPanel(state="collapsed"),
    )


class ViewerRecording:
    """Plain data in, rerun entities out, on one timeline (`timestamp` seconds, or `duration` for simulated time)."""

    def __init__(self, stream: rr.RecordingStream, robot: RobotModel, *, settings: SceneSettings | None = None,
                 timeline: str = TIMELINE, clock: str = "timestamp", joint_period_s: float = 0.1,
                 chunk_period_s: float = 0.2):
        self.rr, self.robot = stream, robot
        self.scene = SceneState(robot, settings or SceneSettings())
        self.timeline, self.clock = timeline, clock
        self.joint_period_s, self.chunk_period_s = joint_period_s, chunk_period_s
        self._last_joints = self._last_chunk = -np.inf
        self._last_veto = ""
        self._series_styled: set[str] = set()
        self._log_static()

    # ------------------------------------------------------------------------------------ set-up
    def _log_static(self) -> None:
        log = self.rr.log
        log("world", rr.ViewCoordinates.RIGHT_HAND_Z_UP, static=True)
        box = workspace_box(self.scene.settings.workspace_min, self.scene.settings.workspace_max)
        log("world/workspace", rr.LineStrips3D(box.points.reshape(-1, 2, 3), colors=_rgba8(box.colour),
                                               radii=0.0015), static=True)
        for index, visual in enumerate(link_visuals(self.robot.text)):
            path = f"world/arm/{visual.link}/visual_{index}"
            quaternion = rr.Quaternion(xyzw=visual.origin.quaternion_xyzw)
            colour = _rgba8(visual.rgba) if np.mean(visual.rgba[:3]) > 0.3 else ARM_COLOUR
            if visual.kind == "box":
                shape = rr.Boxes3D(sizes=[visual.size], centers=[visual.origin.translation], quaternions=[quaternion],
                                   colors=[colour], fill_mode="solid")
            elif visual.kind == "cylinder":
                shape = rr.Cylinders3D(radii=[visual.size[0]], lengths=[visual.size[1]],
                                       centers=[visual.origin.translation], quaternions=[quaternion], colors=[colour],
                                       fill_mode="solid")
            else:
                shape = rr.Ellipsoids3D(radii=[visual.size[0]], centers=[visual.origin.translation], colors=[colour],
                                        fill_mode="solid")
            log(path, shape, static=True)
        for group, names in (("joints", ARM_JOINTS), ("commands", ARM_JOINTS)):
            for name in names:
                log(f"plots/{group}/{name}", rr.SeriesLines(names=name, widths=1.5), static=True)
        log("plots/joints/gripper", rr.SeriesLines(names="gripper opening", widths=1.5), static=True)
        log("plots/commands/gripper", rr.SeriesLines(names="gripper command", widths=1.5), static=True)

    def at(self, stamp_s: float) -> None:
        """Log what follows at `stamp_s` on the timeline."""
        if self.clock == "duration":
            self.rr.set_time(self.timeline, duration=float(stamp_s))
        else:
            self.rr.set_time(self.timeline, timestamp=float(stamp_s))

    # ------------------------------------------------------------------------------------ inputs
    def joints(self, stamp_s: float, names: Sequence[str], positions: Sequence[float]) -> None:
        """A joint state: the arm's links (at most every `joint_period_s`) and the joint plots."""
        self.scene.update_joints(names, positions, stamp_s)
        if stamp_s - self._last_joints < self.joint_period_s:
            return
        self._last_joints = stamp_s
        self.at(stamp_s)
        values = dict(zip((str(n) for n in names), (float(p) for p in positions)))
        for link, pose in self.robot.link_poses(values).items():
            self.rr.log(f"world/arm/{link}", rr.Transform3D(translation=pose.translation, mat3x3=pose.rotation))
        for name in ARM_JOINTS:
            if name in values:
                self.rr.log(f"plots/joints/{name}", rr.Scalars(values[name]))
        if FINGER_JOINT in values:
            self.rr.log("plots/joints/gripper", rr.Scalars(gripper_opening(values[FINGER_JOINT])))

    def camera(self, stamp_s: float, rgb: np.ndarray) -> None:
        self.at(stamp_s)
        self.rr.log("camera/image", rr.Image(rgb, color_model="RGB"))

    def chunk(self, stamp_s: float, chunk: ActionChunk, received_s: float) -> None:
        """A decoded chunk: its end-effector path from where the arm was at the chunk's frame."""
        path = self.scene.on_chunk(chunk, received_s)
        # The policy sends a chunk per camera frame (10 Hz); the executor adopts one every few ticks. Drawing five a
        # second shows the same and keeps a software-rendered web viewer from falling further behind.
        if path is None or stamp_s - self._last_chunk < self.chunk_period_s:
            return
        self._last_chunk = stamp_s
        self.at(stamp_s)
        start, end = path.window
        self.rr.log("world/chunk/path", rr.LineStrips3D([path.path], colors=[(90, 165, 255)], radii=0.003))
        self.rr.log("world/chunk/window", rr.LineStrips3D([path.path[start:end + 1]], colors=[(25, 230, 75)],
                                                          radii=0.006))
        self.rr.log("world/chunk/steps", rr.Points3D(path.path[1:], radii=0.008,
                                                     colors=(gripper_colours(path.gripper) * 255).astype(np.uint8)))

    def command(self, stamp_s: float, names: Sequence[str], positions: Sequence[float]) -> None:
        """An executor command (arm joints in rad, or the gripper opening)."""
        self.at(stamp_s)
        for name, value in zip(names, positions):
            if name in ARM_JOINTS or name == "gripper":
                self.rr.log(f"plots/commands/{name}", rr.Scalars(float(value)))

    def veto(self, stamp_s: float, text: str) -> None:
        veto = self.scene.on_veto(text, stamp_s)
        self.at(stamp_s)
        rule = veto.rule or "unspecified"
        self.rr.log("events/vetoes", rr.TextLog(f"veto {text}", level="WARN", color=COLOUR_ERROR))
        series = f"plots/vetoes/{rule}"
        if series not in self._series_styled:
            self._series_styled.add(series)
            self.rr.log(series, rr.SeriesPoints(names=rule, markers="cross", marker_sizes=6.0), static=True)
        self.rr.log(series, rr.Scalars(1.0))
        if veto.spot is not None:
            self.rr.log("world/veto", rr.Points3D([veto.spot], radii=0.02, colors=[COLOUR_ERROR],
                                                  labels=[f"veto: {rule}"], show_labels=True))
        self._last_veto = text
        self._status()

    def task(self, stamp_s: float, text: str) -> None:
        self.scene.on_task(text)
        self.at(stamp_s)
        self.rr.log("events", rr.TextLog(f"task: {text or '(idle)'}", level="INFO"))
        self.rr.log("world/chunk", rr.Clear(recursive=True))
        self.rr.log("world/veto", rr.Clear(recursive=True))
        self.rr.log("world/grounding", rr.Clear(recursive=True))
        self._last_veto = ""
        self._status()

    def instruction(self, stamp_s: float, text: str, rejected: bool = False) -> None:
        self.at(stamp_s)
        if rejected:
            self.rr.log("events/rejections", rr.TextLog(f"instruction rejected: {text}", level="WARN",
                                                        color=COLOUR_WARN))
        else:
            self.rr.log("events", rr.TextLog(f"instruction: {text}", level="INFO"))

    def plan(self, stamp_s: float, text: str) -> None:
        changed = text != self.scene.plan
        self.scene.on_plan(text)
        if changed:
            self.at(stamp_s)
            self.rr.log("events", rr.TextLog(f"plan: {text}", level="DEBUG"))
            self._status()

    def grounding(self, stamp_s: float, target_xy: Sequence[float], reference_xy: Sequence[float] | None) -> None:
        self.scene.on_grounding(target_xy, reference_xy, stamp_s)
        found = self.scene.grounding
        self.at(stamp_s)
        self.rr.log("world/grounding/target", rr.Boxes3D(half_sizes=[[0.025, 0.025, 0.025]], centers=[found.target],
                                                         colors=[(255, 150, 0)], labels=["grounded target"]))
        if found.reference is not None:
            self.rr.log("world/grounding/reference", rr.Cylinders3D(lengths=[0.006], radii=[0.04],
                                                                    centers=[found.reference * [1, 1, 0]],
                                                                    colors=[(180, 80, 255)], labels=["reference"]))
        else:
            self.rr.log("world/grounding/reference", rr.Clear(recursive=False))

    def diagnostics(self, stamp_s: float, statuses: Iterable[tuple[str, int, str, dict[str, str]]]) -> None:
        """(node, level, message, values) per status: the p50 timings go to plots/latency/<node>/<figure>."""
        self.at(stamp_s)
        for name, level, message, values in statuses:
            node = name.rsplit("/", 1)[-1] or "node"
            for key, value in values.items():
                match = LATENCY_KEY.match(key)
                if not match:
                    continue
                try:
                    number = float(value)
                except ValueError:
                    continue
                if np.isfinite(number):
                    self.rr.log(f"plots/latency/{node}/{match.group(1) or 'latency'}", rr.Scalars(number))
            if level >= 2:
                self.rr.log("events/errors", rr.TextLog(f"{node}: {message}", level="ERROR", color=COLOUR_ERROR))

    # ------------------------------------------------------------------------------------ status
    def _status(self) -> None:
        lines = [f"**task:** {self.scene.task or '(idle)'}", "", f"**plan:** {self.scene.plan or '—'}"]
        if self._last_veto:
            lines += ["", f"**last veto:** {self._last_veto}"]
        self.rr.log("status", rr.TextDocument("\n".join(lines), media_type=rr.MediaType.MARKDOWN))
