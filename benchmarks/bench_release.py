"""Where stacking misses: the release, against where the policy's own grounding head puts the lower block.

Runs the evaluation's stacking episodes (`vla-ros eval` seeds and tasks of `--split`, the same control loop
and gate) and watches every tick. At the last tick the moved block is in the hand before it leaves it (the
release), it records:

* the release offset: the moved block's horizontal distance from the lower block's centre (success needs about
  15 mm, half a small block);
* the grounding error at release: how far the grounding head, reading that tick's frame, puts the lower block
  from where it stands; and the same from the episode's first frame, before anything occludes it;
* whether the miss points the way the grounding error does (cosine of the two offsets).

If the head finds the lower block to about a centimetre while releases miss by several, the frame holds what
the policy needs and the loss is between seeing and acting (the action path); if the head is lost at release
too, the view is (the held block and the gripper hide the lower block from the shoulder camera: a wrist view).

    MUJOCO_GL=egl python benchmarks/bench_release.py --policy models/policy/vla --episodes 100

Writes runs/bench_release/<policy>/results.json, results.md and release.png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


class ReleaseProbe:
    """Hooks into `EpisodeWorker.run` (the interface of the live view): watches the hand every tick."""

    def __init__(self, runner):
        self.runner = runner

    def episode(self, workcell, index, source):
        self.workcell, self.index = workcell, index  # the episode's reset comes after this call
        self.first_error, self.last_in_hand, self.release = None, None, None
        return source

    def on_step(self, observation, plan) -> None:
        from vla_ros.sim.tasks import blocks_in_hand

        workcell = self.workcell
        if self.first_error is None:  # the first tick: the arm has barely moved, no block has
            self.first_error = self._grounding_error(workcell.observe(render=True))
        world = workcell.world_state()
        task = workcell.task
        if task.target in blocks_in_hand(world):
            offset = world.objects[task.target].pos[:2] - world.objects[task.reference].pos[:2]
            self.last_in_hand = (offset, observation.joint_pos.copy())
        elif self.last_in_hand is not None and self.release is None:  # it left the hand at this tick
            offset, joints = self.last_in_hand
            frame = workcell.observe(render=True)
            estimate = self._grounded_reference(frame.image, joints)
            truth = world.objects[task.reference].pos[:2]
            self.release = (offset, estimate - truth)  # metres, table x, y

    def end_episode(self, result) -> None:
        self.result = result

    def _grounded_reference(self, image: np.ndarray, joints: np.ndarray) -> np.ndarray:
        places = self.runner.grounded_places(image[None], [self.workcell.task.instruction], joints[None])[0]
        return np.asarray(places[2:4], np.float64)

    def _grounding_error(self, observation) -> float:
        truth = self.workcell.world_state().objects[self.workcell.task.reference].pos[:2]
        return float(np.linalg.norm(self._grounded_reference(observation.image, observation.joint_pos) - truth))

    def row(self) -> dict:
        result = self.result
        row = {"index": self.index, "seed": result.seed, "instruction": result.instruction,
               "success": result.success, "failure": result.failure, "first_frame_error_mm": self.first_error * 1e3,
               "released": self.release is not None}
        if self.release is not None:
            offset, error = self.release
            row.update(release_offset_mm=float(np.linalg.norm(offset) * 1e3),
                       release_error_mm=float(np.linalg.norm(error) * 1e3),
                       same_direction=float(offset @ error / max(1e-9, np.linalg.norm(offset) * np.linalg.norm(error))))
        return row


def summarize(rows: list[dict]) -> dict:
    def median(key, subset):
        values = [r[key] for r in subset if key in r]
        return float(np.median(values)) if values else float("nan")

    groups = {"all": rows, "succeeded": [r for r in rows if r["success"]],
              "released off target": [r for r in rows if r["failure"] == "released off target"]}
    return {name: {"episodes": len(group), "released": sum(r["released"] for r in group),
                   "release_offset_mm": median("release_offset_mm", group),
                   "grounding_error_at_release_mm": median("release_error_mm", group),
                   "grounding_error_first_frame_mm": median("first_frame_error_mm", group),
                   "cosine_miss_vs_grounding_error": median("same_direction", group)}
            for name, group in groups.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", type=Path, required=True, help="policy directory")
    parser.add_argument("--episodes", type=int, default=100, help="stacking episodes")
    parser.add_argument("--split", choices=("unseen", "paraphrase"), default="unseen",
                        help="evaluation split whose stacking seeds and phrasings to use (default unseen)")
    parser.add_argument("--out", type=Path, default=None, help="default runs/bench_release/<policy name>")
    args = parser.parse_args()

    from vla_ros.graphs.pipeline import pipeline_settings
    from vla_ros.policy.evaluation import EpisodeWorker, EvaluationSpec
    from vla_ros.policy.runners import PolicyRunner
    from vla_ros.sim.tasks import FAMILIES

    out = args.out or REPO / "runs" / "bench_release" / args.policy.name
    out.mkdir(parents=True, exist_ok=True)
    runner = PolicyRunner(args.policy, "builtin-torch", threads=1)
    settings = pipeline_settings("widowx", [])  # the graph's executor and gate, as `vla-ros eval` uses them
    spec = EvaluationSpec(policy=str(args.policy), backend="builtin-torch", split=args.split,
                          executor=settings.executor, safety=settings.safety)
    worker = EpisodeWorker(spec, runner)
    probe = ReleaseProbe(runner)
    rows = []
    try:
        for k in tqdm(range(args.episodes), desc="stacking releases"):
            worker.run(len(FAMILIES) * k + FAMILIES.index("stack"), view=probe)  # episode i: FAMILIES[i % 4]
            rows.append(probe.row())
    finally:
        worker.close()
    summary = summarize(rows)
    (out / "results.json").write_text(json.dumps({"policy": str(args.policy), "split": args.split,
                                                  "summary": summary, "episodes": rows}, indent=2) + "\n")
    lines = ["| stacking episodes | n | released | release offset (mm) | grounding error at release (mm) "
             "| grounding error, first frame (mm) | cosine of miss and grounding error |", "|---|---|---|---|---|---|---|"]
    for name, s in summary.items():
        lines.append(f"| {name} | {s['episodes']} | {s['released']} | {s['release_offset_mm']:.0f} | "
                     f"{s['grounding_error_at_release_mm']:.0f} | {s['grounding_error_first_frame_mm']:.0f} | "
                     f"{s['cosine_miss_vs_grounding_error']:.2f} |")
    lines.append("\nMedians over the episodes of each row; offsets are horizontal, from the lower block's centre.")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    write_plot(out / "release.png", rows)
    print("\n".join(lines))
    print(f"wrote {out}/results.json, results.md and release.png")
    return 0


def write_plot(path: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    for success, colour, label in ((True, "tab:green", "succeeded"), (False, "tab:red", "failed")):
        points = [(r["release_error_mm"], r["release_offset_mm"]) for r in rows
                  if r["released"] and r["success"] == success]
        if points:
            ax.scatter(*zip(*points), c=colour, label=label, s=18)
    ax.axhline(15, color="grey", ls="--", lw=1)
    ax.set_xlabel("grounding head's error on the lower block at release (mm)")
    ax.set_ylabel("release offset from the lower block's centre (mm)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
