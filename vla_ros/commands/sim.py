"""`vla-ros sim run`: a watchable rollout of a policy on one task in the simulated workcell."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from vla_ros.commands.argument_types import positive_int
from vla_ros.sim.settings import SCENES
from vla_ros.sim.video import VIDEO_SUFFIXES

# Policies `sim run --policy NAME` can use: NAME -> factory(workcell) -> policy(observation, instruction) -> action7.
# The policy team adds theirs here (keep imports inside the factory so --help stays instant).
POLICY_FACTORIES = {
    "expert": lambda workcell: __import__("vla_ros.sim.rollout", fromlist=["ExpertChunks"]).ExpertChunks(workcell),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    sim = subparsers.add_parser("sim", help="run policies in the simulated WidowX 250 workcell",
                                description="Run policies in the simulated WidowX 250 workcell (MuJoCo).")
    sim_sub = sim.add_subparsers(dest="sim_command", metavar="SUBCOMMAND")
    run = sim_sub.add_parser(
        "run", help="roll out a policy on a task and write a video",
        description="Roll out a policy on one task in the workcell, print whether it succeeded, and optionally "
                    "write an MP4/GIF of the camera view with the instruction and step drawn on it.")
    run.add_argument("--task", help="instruction, e.g. 'put the red block on the plate' (default: sampled from the "
                                    "seed)")
    run.add_argument("--policy", default="expert", choices=sorted(POLICY_FACTORIES),
                     help="policy to run (default expert)")
    run.add_argument("--seed", type=int, default=0, help="layout seed (default 0)")
    run.add_argument("--video", type=Path, help="write the rollout to this .mp4 or .gif")
    run.add_argument("--video-size", type=positive_int, default=320, help="video frame size in pixels (default 320)")
    run.add_argument("--camera", default="over_shoulder", choices=("over_shoulder", "front", "wrist"),
                     help="camera for the policy and the video (default over_shoulder)")
    run.add_argument("--scene", choices=SCENES, default="default",
                     help="set-up shift of the workcell (docs/sim.md): default, camera_shift or appearance "
                          "(default default)")
    run.add_argument("--image-size", type=positive_int, default=128, help="policy image size (default 128)")
    run.add_argument("--max-steps", type=positive_int, default=80, help="step limit (default 80)")
    run.set_defaults(func=_run)
    sim.set_defaults(func=lambda args: (sim.print_help(), 2)[1])


def _run(args: argparse.Namespace) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")
    if args.video is not None and args.video.suffix.lower() not in VIDEO_SUFFIXES:
        raise SystemExit(f"vla-ros sim run: --video {args.video} must end in .mp4 or .gif")
    from vla_ros.sim.tasks import parse_instruction

    task = None
    if args.task:
        try:
            task = parse_instruction(args.task)
        except ValueError as exc:
            raise SystemExit(f"vla-ros sim run: {exc}")
    from dataclasses import replace

    from vla_ros.core.executor import ExecutorSettings
    from vla_ros.sim.rollout import rollout
    from vla_ros.sim.video import annotate, write_video
    from vla_ros.sim.workcell import Workcell

    frames = []
    with Workcell(image_size=args.image_size, camera=args.camera, render=True, scene=args.scene) as workcell:
        policy = POLICY_FACTORIES[args.policy](workcell)

        def capture(observation, plan: str) -> None:
            if args.video is not None:
                frame = workcell.render(size=(args.video_size, args.video_size))
                frames.append(annotate(frame, workcell.task.instruction, observation.step, plan))

        # One action per chunk: the expert decides at every tick, through the graph's control loop and gate.
        executor = replace(ExecutorSettings(), execute_steps=1)
        record = rollout(workcell, policy, args.seed, task=task, executor=executor, max_steps=args.max_steps,
                         on_step=capture)
        if args.video is not None:
            final = workcell.render(size=(args.video_size, args.video_size))
            status = "SUCCESS" if record.success else "failed"
            frames.extend([annotate(final, workcell.task.instruction, workcell.step_count, status)] * 5)
            write_video(args.video, frames)
    print(json.dumps({"instruction": record.task.instruction, "family": record.task.family, "seed": args.seed,
                      "policy": args.policy, "scene": args.scene, "success": record.success, "steps": record.steps,
                      "video": str(args.video) if args.video else None}))
    return 0 if record.success else 1
