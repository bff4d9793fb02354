"""Seeded random table layouts: which objects are on the table, where, and which are parked away."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vla_ros.sim.tasks import COLOURS, RECEPTACLES, Task

BLOCK_SIZES = {"s": 0.03, "l": 0.04}  # edge length, metres; the gripper opens to 66 mm between the pads
# Footprint radius of each non-block object, for spacing; must match workcell.xml.
OBJECT_RADIUS = {"plate": 0.065, "towel": 0.06 * 1.414, "can": 0.025}
WORKSPACE_X = (0.20, 0.40)
WORKSPACE_Y = (-0.20, 0.20)
REACH_R = (0.20, 0.40)  # horizontal distance from the waist axis where top-down grasps are comfortable
MARGIN = 0.03  # free space between footprints, so the open fingers fit beside a block


def block_body(colour: str, size: str) -> str:
    return f"block_{colour}_{size}"


@dataclass(frozen=True)
class Placement:
    """One object on the table: MJCF body, what it is, and its planar pose."""

    body: str
    key: str  # colour for blocks, otherwise the kind (plate, towel, can)
    x: float
    y: float
    yaw: float


@dataclass(frozen=True)
class SceneLayout:
    """The objects on the table for one episode; everything else is parked off the table."""

    placements: tuple[Placement, ...]

    def block_colours(self) -> tuple[str, ...]:
        return tuple(p.key for p in self.placements if p.body.startswith("block_"))

    def has(self, key: str) -> bool:
        return any(p.key == key for p in self.placements)

    def placement(self, key: str) -> Placement:
        for p in self.placements:
            if p.key == key:
                return p
        raise KeyError(f"{key!r} is not on the table (present: {[p.key for p in self.placements]})")

    def position(self, key: str) -> tuple[float, float]:
        p = self.placement(key)
        return p.x, p.y

    def block_edge(self, colour: str) -> float:
        return BLOCK_SIZES[self.placement(colour).body[-1]]

    def clearance(self, x: float, y: float, exclude: str) -> float:
        """Distance from (x, y) to the nearest footprint of any other object."""
        return min((np.hypot(x - p.x, y - p.y) - _footprint(p.body, p.key)
                    for p in self.placements if p.key != exclude), default=np.inf)


def _footprint(body: str, key: str) -> float:
    if body.startswith("block_"):
        return BLOCK_SIZES[body[-1]] * 0.75
    return OBJECT_RADIUS[key]


def sample_layout(rng: np.random.Generator, task: Task | None = None, family: str | None = None) -> SceneLayout:
    """3-4 blocks of distinct colours and random sizes, maybe a plate, a towel and a can, non-overlapping.

    Objects the task names are always included; for a `place` family at least one receptacle is.
    """
    required_colours = [c for c in ((task.target, task.reference) if task else ()) if c in COLOURS]
    required_receptacles = [task.reference] if task and task.reference in RECEPTACLES else []
    n_blocks = int(rng.integers(3, 5))
    others = [str(c) for c in rng.permutation(COLOURS) if c not in required_colours]
    colours = required_colours + others[: max(0, n_blocks - len(required_colours))]
    items = [(block_body(c, "sl"[int(rng.integers(2))]), c) for c in colours]
    present = [r for r in RECEPTACLES if r in required_receptacles or rng.random() < 0.6]
    if family == "place" and not present:
        present = [RECEPTACLES[int(rng.integers(len(RECEPTACLES)))]]
    items += [(r, r) for r in present]
    if rng.random() < 0.5:
        items.append(("can", "can"))
    # Big things first: they are the hardest to fit.
    items.sort(key=lambda item: -_footprint(*item))
    for _ in range(200):
        placements: list[Placement] = []
        for body, key in items:
            r_obj = _footprint(body, key)
            for _ in range(100):
                x, y = rng.uniform(*WORKSPACE_X), rng.uniform(*WORKSPACE_Y)
                if not REACH_R[0] <= np.hypot(x, y) <= REACH_R[1]:
                    continue
                if all(np.hypot(x - p.x, y - p.y) >= r_obj + _footprint(p.body, p.key) + MARGIN
                       for p in placements):
                    placements.append(Placement(body, key, float(x), float(y), float(rng.uniform(-np.pi, np.pi))))
                    break
            else:
                break  # this attempt boxed itself in; start over
        if len(placements) == len(items):
            return SceneLayout(tuple(placements))
    raise RuntimeError("could not place the objects without overlap; the workspace is too small for them")
