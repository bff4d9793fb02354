"""A scripted expert that solves every task family through the 7-D delta interface at 5 Hz.

It is stateless: each call derives the phase from the world state (object poses, the gripper's
command and opening, the controller's EE target), so it resumes correctly after `Workcell.set_state`
and after steps that someone else's actions took (closed-loop tests with decoded chunks).
"""

from __future__ import annotations

import numpy as np

from vla_ros.robot.kinematics import rot_y, rot_z, rotation_to_rpy
from vla_ros.sim.workcell import Workcell

PHASES = ("reach", "grasp", "lift", "move", "place", "release", "push")

MAX_STEP_M = 0.03  # per control step: 0.15 m/s, close to BridgeData's teleoperation speeds
MAX_DESCENT_M = 0.025  # slower near objects so the fingers straddle the block cleanly
MAX_STEP_RAD = 0.3
HOVER_Z = 0.10  # EE height for approaching from above
CARRY_BOTTOM_Z = 0.10  # carried block's bottom clears the tallest object (the 8 cm can)
POSITION_TOL = 0.006
XY_TOL = 0.008
YAW_TOL = 0.08
FINGER_HALF_GAP_CLOSED = 0.019  # outer face of a closed finger pad from the EE site, metres


def top_down(yaw: float) -> np.ndarray:
    """Gripper pointing down, finger stroke turned by `yaw` from the base y axis."""
    return rot_z(yaw) @ rot_y(np.pi / 2)


def gripper_yaw(rot: np.ndarray) -> float:
    return float(np.arctan2(-rot[0, 1], rot[1, 1]))


def wrap_quarter_turn(angle: float) -> float:
    """A cube looks the same every 90 degrees: the equivalent angle in [-45, 45) degrees."""
    return float((angle + np.pi / 4) % (np.pi / 2) - np.pi / 4)


class ScriptedExpert:
    """Privileged-state expert: `act(workcell) -> (action7 float32, phase)`."""

    def act(self, workcell: Workcell) -> tuple[np.ndarray, str]:
        task = workcell.task
        if task is None:
            raise RuntimeError("the workcell has no task; call reset() first")
        if task.family == "push":
            return self._push(workcell)
        return self._pick_and_place(workcell)

    # --------------------------------------------------------------------------------------------
    @staticmethod
    def _toward(workcell: Workcell, pos: np.ndarray, yaw: float, gripper: float,
                max_step: float = MAX_STEP_M) -> np.ndarray:
        """A delta action moving the EE target toward (pos, top-down yaw), clipped per step."""
        target = workcell.ee_target
        dpos = np.asarray(pos) - target.pos
        norm = np.linalg.norm(dpos)
        if norm > max_step:
            dpos *= max_step / norm
        drot = rotation_to_rpy(top_down(yaw) @ target.rot.T)
        drot = np.clip(drot, -MAX_STEP_RAD, MAX_STEP_RAD)
        return np.concatenate([dpos, drot, [gripper]]).astype(np.float32)

    @staticmethod
    def _grasp_yaw(workcell: Workcell, colour: str) -> float:
        current = gripper_yaw(workcell.ee_target.rot)
        block = wrap_quarter_turn(workcell.object_yaw(colour))
        # of the four equivalent headings take the one nearest to where the wrist already is
        return block + np.pi / 2 * np.round((current - block) / (np.pi / 2))

    def _pick_and_place(self, workcell: Workcell) -> tuple[np.ndarray, str]:
        task = workcell.task
        world = workcell.world_state()
        block = world.objects[task.target]
        half = block.half_extents[2]
        ee = workcell.ee_target.pos
        ee_measured = world.ee_pos
        yaw_now = gripper_yaw(workcell.ee_target.rot)
        closed_cmd = workcell.gripper_command < 0.5
        near_block = np.linalg.norm(block.pos - ee_measured) < 0.03
        held = closed_cmd and near_block and world.gripper > 0.08

        if task.family == "pick":
            destination = None
        else:
            base = world.objects[task.reference]
            destination = (base.pos[:2], base.pos[2] + base.half_extents[2])  # xy, support height

        if held:
            if destination is None:
                goal = np.array([ee[0], ee[1], block.pos[2] + 0.10])
                return self._toward(workcell, goal, yaw_now, 0.0), "lift"
            dest_xy, support_z = destination
            offset = ee - block.pos  # keep the block where it sits in the hand
            xy_err = np.linalg.norm(block.pos[:2] - dest_xy)
            if xy_err > XY_TOL:
                carry_z = CARRY_BOTTOM_Z + half + offset[2]
                if block.pos[2] - half < CARRY_BOTTOM_Z - 0.02 and xy_err > 0.03:
                    goal = np.array([ee[0], ee[1], carry_z])
                    return self._toward(workcell, goal, yaw_now, 0.0), "lift"
                goal = np.array([dest_xy[0] + offset[0], dest_xy[1] + offset[1], max(ee[2], carry_z - 0.03)])
                return self._toward(workcell, goal, yaw_now, 0.0), "move"
            gap = block.pos[2] - half - support_z
            if gap > 0.006:
                goal = np.array([dest_xy[0] + offset[0], dest_xy[1] + offset[1], ee[2] - (gap - 0.003)])
                return self._toward(workcell, goal, yaw_now, 0.0, MAX_DESCENT_M), "place"
            return self._toward(workcell, ee, yaw_now, 1.0), "release"

        if destination is not None and closed_cmd and near_block:
            # the block reached its support but is not squeezed (slipped or settled): let go
            dest_xy, support_z = destination
            if np.linalg.norm(block.pos[:2] - dest_xy) < 0.02 and block.pos[2] - half - support_z < 0.01:
                return self._toward(workcell, ee, yaw_now, 1.0), "release"
        if destination is not None and not closed_cmd:
            dest_xy, support_z = destination
            if np.linalg.norm(block.pos[:2] - dest_xy) < 0.02 and abs(block.pos[2] - half - support_z) < 0.012:
                # released; back off upward while the block settles
                goal = np.array([ee[0], ee[1], ee[2] + 0.03])
                return self._toward(workcell, goal, yaw_now, 1.0), "release"

        grasp_pos = np.array([block.pos[0], block.pos[1], block.pos[2] + 0.002])
        yaw = self._grasp_yaw(workcell, task.target)
        if closed_cmd:
            if near_block and world.gripper > 0.08:
                return self._toward(workcell, grasp_pos, yaw, 0.0), "grasp"  # fingers still closing
            goal = np.array([ee[0], ee[1], HOVER_Z])  # missed: open and back off
            return self._toward(workcell, goal, yaw_now, 1.0), "reach"
        xy_err = np.linalg.norm(ee[:2] - grasp_pos[:2])
        yaw_err = abs(yaw - yaw_now)
        if xy_err > XY_TOL or yaw_err > YAW_TOL:
            if ee[2] < HOVER_Z - 0.03 and xy_err > 0.02:
                goal = np.array([ee[0], ee[1], HOVER_Z])  # rise before travelling sideways
            else:
                goal = np.array([grasp_pos[0], grasp_pos[1], max(HOVER_Z, ee[2] - MAX_STEP_M)])
            return self._toward(workcell, goal, yaw, 1.0), "reach"
        if np.linalg.norm(ee - grasp_pos) > POSITION_TOL or np.linalg.norm(ee_measured - grasp_pos) > 2 * POSITION_TOL:
            return self._toward(workcell, grasp_pos, yaw, 1.0, MAX_DESCENT_M), "reach"
        return self._toward(workcell, grasp_pos, yaw, 0.0), "grasp"

    def _push(self, workcell: Workcell) -> tuple[np.ndarray, str]:
        task = workcell.task
        world = workcell.world_state()
        block = world.objects[task.target]
        sign = 1.0 if task.direction == "left" else -1.0
        ee = workcell.ee_target.pos
        # a block turned 45 degrees reaches out by half its diagonal
        standoff = block.half_extents[0] * 1.42 + FINGER_HALF_GAP_CLOSED + 0.006
        push_z = 0.014
        behind = sign * (block.pos[1] - ee[1])  # how far the EE is behind the block along the push
        aligned_x = abs(ee[0] - block.pos[0]) < 0.015
        low = ee[2] < push_z + 0.015
        if low and aligned_x and 0.0 < behind < standoff + 0.02:
            goal = np.array([block.pos[0], ee[1] + sign * MAX_STEP_M, push_z])
            return self._toward(workcell, goal, 0.0, 0.0, 0.03), "push"
        pre = np.array([block.pos[0], block.pos[1] - sign * standoff, push_z])
        xy_err = np.linalg.norm(ee[:2] - pre[:2])
        if xy_err > XY_TOL:
            if ee[2] < HOVER_Z - 0.03 and xy_err > 0.02:
                goal = np.array([ee[0], ee[1], HOVER_Z])
            else:
                goal = np.array([pre[0], pre[1], max(HOVER_Z, ee[2] - MAX_STEP_M)])
            return self._toward(workcell, goal, 0.0, 0.0), "reach"
        return self._toward(workcell, pre, 0.0, 0.0, MAX_DESCENT_M), "reach"


def lookahead_actions(workcell: Workcell, expert: ScriptedExpert, horizon: int = 8
                      ) -> tuple[np.ndarray, list[str]]:
    """The expert's next `horizon` actions, simulated from a snapshot; the workcell is restored after.

    Physics runs without rendering. Returns actions [H,7] float32 and their phases.
    """
    snapshot = workcell.get_state()
    actions, phases = [], []
    try:
        for _ in range(horizon):
            action, phase = expert.act(workcell)
            actions.append(action)
            phases.append(phase)
            workcell.step(action, render=False)
    finally:
        workcell.set_state(snapshot)
    return np.stack(actions).astype(np.float32), phases
