"""`vla-ros data generate|info`: scripted-expert demonstrations recorded in the workcell, and what a data set holds."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from vla_ros.commands.argument_types import non_negative_float, positive_int, unit_float


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="generate and inspect demonstration data sets",
                                 description="Generate and inspect demonstration data sets (robomimic HDF5 layout).")
    data_sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    gen = data_sub.add_parser(
        "generate", help="record scripted-expert demonstrations in the simulated workcell",
        description="Record scripted-expert demonstrations in the simulated workcell into DIR/dataset.hdf5 "
                    "(robomimic layout), with DIR/generation.json (success rates, time, size) and DIR/preview.png. "
                    "Episode i uses seed SEED+i and task family i mod 4, so the output depends only on the seed.")
    gen.add_argument("--episodes", type=positive_int, required=True, help="number of episodes to record")
    gen.add_argument("--out", type=Path, required=True, help="output directory (created if missing)")
    gen.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    gen.add_argument("--workers", type=positive_int, default=1,
                     help="worker processes writing shards that are merged in order (default 1)")
    gen.add_argument("--image-size", type=positive_int, default=128, help="camera image size in pixels (default 128)")
    gen.add_argument("--camera", default="over_shoulder", choices=("over_shoulder", "front", "wrist"),
                     help="camera to record (default over_shoulder, like BridgeData's)")
    gen.add_argument("--split", default="train", choices=("train", "heldout"),
                     help="which instruction paraphrases to use: training or held-out templates (default train)")
    gen.add_argument("--max-steps", type=positive_int, default=80, help="step limit per episode (default 80)")
    gen.add_argument("--noise", type=non_negative_float, default=0.0, metavar="METRES",
                     help="DART perturbation: execute the expert's actions with correlated position noise of this "
                          "standard deviation per step (and 8x as much yaw noise, in radians), recording the "
                          "unperturbed actions, so the data shows recoveries (default 0: none; 0.006 for the "
                          "shipped model's data)")
    gen.add_argument("--noisy-share", type=unit_float, default=0.75, metavar="SHARE",
                     help="share of the episodes recorded with --noise, chosen from the seed (default 0.75)")
    gen.add_argument("--force", action="store_true", help="overwrite an existing data set in --out")
    gen.add_argument("--bags", action="store_true",
                     help="also write each episode as a rosbag2 bag DIR/bags/episode_NNNNNN: camera, joint states, "
                          "instruction, task and the expert's actions on /vla/expert_action (docs/bags.md)")
    gen.add_argument("--bag-storage", choices=("mcap", "sqlite3"), default="mcap",
                     help="storage of the episode bags (default mcap)")
    gen.set_defaults(func=_generate)

    info = data_sub.add_parser("info", help="print counts and action statistics of a data set",
                               description="Print episode counts, success rates and per-dimension action "
                                           "statistics (q01/q99/mean/std) of a data set.")
    info.add_argument("path", type=Path, help="data set directory (holding dataset.hdf5) or the HDF5 file")
    info.add_argument("--all", action="store_true", help="include failed episodes in the statistics")
    info.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")
    info.set_defaults(func=_info)
    data.set_defaults(func=lambda args: (data.print_help(), 2)[1])


def _generate(args: argparse.Namespace) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")
    from vla_ros.data.generate import generate_dataset
    from vla_ros.data.writer import DATASET_FILE

    if (args.out / DATASET_FILE).exists() and not args.force:
        raise SystemExit(f"vla-ros data generate: {args.out / DATASET_FILE} already exists; "
                         f"choose another --out or pass --force to overwrite it")
    if args.out.exists() and not args.out.is_dir():
        raise SystemExit(f"vla-ros data generate: --out {args.out} is a file; give a directory")
    if args.bags and (args.out / "bags").exists() and not args.force:
        raise SystemExit(f"vla-ros data generate: {args.out / 'bags'} already exists; "
                         f"choose another --out or pass --force to replace it")
    summary = generate_dataset(args.out, args.episodes, seed=args.seed, workers=args.workers,
                               image_size=args.image_size, camera=args.camera, split=args.split,
                               max_steps=args.max_steps, bags=args.bags, bag_storage=args.bag_storage,
                               noise=args.noise, noisy_share=args.noisy_share)
    print(f"wrote {summary['path']}: {summary['episodes']} episodes, {summary['successful']} successful "
          f"({summary['success_rate']:.1%}), {summary['samples']} steps, {summary['bytes'] / 1e6:.1f} MB "
          f"in {summary['seconds']:.0f} s")
    if args.bags:
        print(f"wrote {summary['bags']} episode bags ({summary['bag_storage']}, {summary['bag_bytes'] / 1e6:.1f} MB) "
              f"to {summary['bags_dir']}")
    for family, rate in summary["success_rate_per_family"].items():
        print(f"  {family:6s} success {rate:.1%} of {summary['episodes_per_family'][family]}")
    return 0


def _info(args: argparse.Namespace) -> int:
    import h5py

    from vla_ros.data.episodes import action_statistics, dataset_path, load_episodes

    try:
        path = dataset_path(args.path)
        episodes = load_episodes(path, successful_only=False, with_images=False)
        with h5py.File(path, "r") as f:
            masks = {k: len(f["mask"][k]) for k in f["mask"]} if "mask" in f else {}
            image_shape = None
            if episodes and "agentview_image" in f["data"][episodes[0].name]["obs"]:
                image_shape = list(f["data"][episodes[0].name]["obs"]["agentview_image"].shape[1:])
    except (FileNotFoundError, OSError, KeyError) as exc:
        raise SystemExit(f"vla-ros data info: cannot read a data set at {args.path} ({exc}); "
                         f"expected a directory written by 'vla-ros data generate' or its dataset.hdf5")
    chosen = episodes if args.all else [e for e in episodes if e.success]
    families = sorted({e.family for e in episodes})
    report = {
        "path": str(path), "episodes": len(episodes), "successful": sum(e.success for e in episodes),
        "steps": int(sum(len(e.actions) for e in episodes)), "masks": masks, "image_shape": image_shape,
        "per_family": {f: {"episodes": sum(e.family == f for e in episodes),
                           "successful": sum(e.family == f and e.success for e in episodes)} for f in families},
        "action_statistics": action_statistics(chosen) if chosen else None,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['path']}")
    print(f"episodes {report['episodes']}  successful {report['successful']}  steps {report['steps']}  "
          f"masks {masks}  image {image_shape}")
    for family, counts in report["per_family"].items():
        print(f"  {family:6s} {counts['successful']}/{counts['episodes']} successful")
    if report["action_statistics"]:
        stats = report["action_statistics"]
        print(f"action statistics over {'all' if args.all else 'successful'} episodes:")
        print("  dim      " + "".join(f"{k:>10s}" for k in ("q01", "q99", "mean", "std")))
        for i, dim in enumerate(("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper")):
            print(f"  {dim:8s}" + "".join(f"{stats[k][i]:10.4f}" for k in ("q01", "q99", "mean", "std")))
    return 0
