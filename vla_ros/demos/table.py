"""The running table of recorded episodes (DIR/episodes.csv), kept by `vla-ros record-demos`; no ROS."""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, fields
from pathlib import Path

TABLE_FILE = "episodes.csv"
KEPT, DISCARDED = "kept", "discarded"


@dataclass
class EpisodeRow:
    index: int
    bag: str  # the bag's directory name under DIR
    instruction: str
    control_mode: str  # who drove the arm: teleop or policy
    seconds: float
    steps: int  # executed control steps (/vla/executed_action messages)
    frames: int  # camera frames (the primary camera)
    success: bool
    status: str = KEPT  # kept | discarded


class EpisodeTable:
    """Rows in recording order, saved after every change; a restarted recorder continues the numbering."""

    def __init__(self, directory: Path):
        self.path = Path(directory) / TABLE_FILE
        self.rows: list[EpisodeRow] = []
        if self.path.is_file():
            with self.path.open(newline="", encoding="utf-8") as f:
                for raw in csv.DictReader(f):
                    self.rows.append(EpisodeRow(
                        index=int(raw["index"]), bag=raw["bag"], instruction=raw["instruction"],
                        control_mode=raw["control_mode"], seconds=float(raw["seconds"]), steps=int(raw["steps"]),
                        frames=int(raw["frames"]), success=raw["success"] == "true", status=raw["status"]))

    @property
    def next_index(self) -> int:
        return max((r.index for r in self.rows), default=-1) + 1

    def add(self, row: EpisodeRow) -> None:
        self.rows.append(row)
        self.save()

    def last_kept(self) -> EpisodeRow | None:
        return next((r for r in reversed(self.rows) if r.status == KEPT), None)

    def discard(self, row: EpisodeRow) -> None:
        row.status = DISCARDED
        self.save()

    def counts(self) -> tuple[int, int]:
        """(kept episodes, of which successful)."""
        kept = [r for r in self.rows if r.status == KEPT]
        return len(kept), sum(r.success for r in kept)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".csv.partial")
        with partial.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=[x.name for x in fields(EpisodeRow)])
            writer.writeheader()
            for row in self.rows:
                writer.writerow({**asdict(row), "success": "true" if row.success else "false",
                                 "seconds": f"{row.seconds:.2f}"})
        partial.replace(self.path)

    def render(self, last: int = 12) -> str:
        """The last rows as a text table, with the totals."""
        lines = [f"{'#':>4}  {'bag':14s} {'outcome':9s} {'mode':7s} {'s':>6} {'steps':>5} {'frames':>6}  instruction"]
        for r in self.rows[-last:]:
            outcome = "discarded" if r.status == DISCARDED else ("success" if r.success else "failure")
            lines.append(f"{r.index:>4}  {r.bag:14s} {outcome:9s} {r.control_mode:7s} {r.seconds:6.1f} {r.steps:>5} "
                         f"{r.frames:>6}  {r.instruction}")
        kept, successful = self.counts()
        lines.append(f"kept {kept} episodes, {successful} successful; {len(self.rows) - kept} discarded")
        return "\n".join(lines)
