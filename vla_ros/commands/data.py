"""`vla-ros data generate|info`: scripted-expert demonstrations recorded in the workcell, and what a data set holds."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from vla_ros.commands.argument_types import non_negative_float, positive_int, unit_float
from vla_ros.sim.settings import SCENES


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
    gen.add_argument("--ray", metavar="ADDRESS", default=None,
                     help="run the episodes as tasks on this Ray cluster instead of --workers processes ('auto', "
                          "HOST:PORT, ray://HOST:PORT, or 'local' to start one here); the data set is the same")
    gen.add_argument("--image-size", type=positive_int, default=128, help="camera image size in pixels (default 128)")
    gen.add_argument("--camera", default="over_shoulder", choices=("over_shoulder", "front", "wrist"),
                     help="camera to record (default over_shoulder, like BridgeData's)")
    gen.add_argument("--extra-camera", dest="extra_cameras", action="append", default=[],
                     choices=("over_shoulder", "front", "wrist"), metavar="CAMERA",
                     help="also record this camera beside --camera, as obs/CAMERA_image (repeatable; e.g. wrist for "
                          "a policy with a second view, docs/policy.md)")
    gen.add_argument("--scene", default="default", choices=SCENES,
                     help="set-up shift of the workcell (docs/sim.md): default, camera_shift (over_shoulder moved "
                          "8 cm and turned 7°) or appearance (table colour, lighting, block shades); recorded in the "
                          "data set's env_args (default default)")
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
    gen.add_argument("--interpolate-commands", action="store_true",
                     help="the arm follows each command over its reach time, as the graph's simulator and a "
                          "trajectory controller do, instead of its target jumping at the tick (policy v6's data)")
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

    imp = data_sub.add_parser(
        "import", help="turn demonstration bags (or a LeRobot data set) into a training set",
        description="Turn rosbag2 bags into a training set (DIR/dataset.hdf5, what vla-ros train reads): one episode "
                    "per bag, between its start and stop marks. A YAML contract maps topics to features (default "
                    "config/import/vla_ros.yaml: vla-ros record-demos and data generate --bags). Actions are the "
                    "recorded 7-D commands at the control rate or, when a bag has only joint states, end-effector pose "
                    "differences by forward kinematics; each step gets the newest frame and joint state at most "
                    "tolerance_s older than it. A bad episode (missing topic, gap, stamps going backwards, wrong rate, "
                    "stale frames, no instruction) is reported by name and reason and skipped; the data set appears "
                    "only once complete. Writes OUT/import_report.json (speed, alignment error). --format lerobot "
                    "reads a LeRobotDataset v3.0 or v2.1 directory instead. docs/demonstrations.md.")
    imp.add_argument("sources", nargs="+", type=Path, metavar="BAG_OR_DIR",
                     help="bags (directories with metadata.yaml, .mcap/.db3 files) or folders holding them; with "
                          "--format lerobot, one LeRobot data set directory")
    imp.add_argument("--out", type=Path, required=True, help="output data set directory")
    imp.add_argument("--contract", type=Path, default=None,
                     help="YAML contract of topics -> features (default config/import/vla_ros.yaml)")
    imp.add_argument("--format", choices=("rosbag2", "lerobot"), default="rosbag2",
                     help="what the sources are (default rosbag2)")
    imp.add_argument("--camera", default=None,
                     help="--format lerobot: the camera to use as the primary one (default the first)")
    imp.add_argument("--image-size", type=positive_int, default=None,
                     help="--format lerobot: centre-crop and resize frames to this size (bags: the contract's "
                          "image_size)")
    imp.add_argument("--force", action="store_true", help="replace an existing --out")
    imp.set_defaults(func=_import)

    exp = data_sub.add_parser(
        "export", help="write a data set as a LeRobotDataset v3.0",
        description="Write a data set (DIR/dataset.hdf5) as a LeRobotDataset v3.0: parquet files (pyarrow), H.264 MP4 "
                    "videos per camera (libx264 through imageio-ffmpeg), meta/info.json, stats.json, tasks.parquet "
                    "and episodes/. Features: observation.images.<camera>, observation.state (six joints + gripper "
                    "opening), action (dx dy dz droll dpitch dyaw gripper), observation.ee_pos/ee_quat, phase. "
                    "docs/demonstrations.md.")
    exp.add_argument("dataset", type=Path, help="data set directory (holding dataset.hdf5) or the HDF5 file")
    exp.add_argument("--format", choices=("lerobot",), required=True, help="output format")
    exp.add_argument("--out", type=Path, required=True, help="output directory")
    exp.add_argument("--crf", type=positive_int, default=18,
                     help="H.264 constant rate factor: lower is closer to the frames, larger files (default 18)")
    exp.add_argument("--force", action="store_true", help="replace an existing --out")
    exp.set_defaults(func=_export)
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
    if args.camera in args.extra_cameras or len(set(args.extra_cameras)) != len(args.extra_cameras):
        raise SystemExit(f"vla-ros data generate: --extra-camera {' '.join(args.extra_cameras)} repeats a camera "
                         f"(--camera is {args.camera})")
    try:
        summary = generate_dataset(args.out, args.episodes, seed=args.seed, workers=args.workers,
                                   image_size=args.image_size, camera=args.camera, split=args.split,
                                   max_steps=args.max_steps, bags=args.bags, bag_storage=args.bag_storage,
                                   noise=args.noise, noisy_share=args.noisy_share, ray_address=args.ray,
                                   scene=args.scene, interpolate_commands=args.interpolate_commands,
                                   extra_cameras=tuple(args.extra_cameras))
    except ConnectionError as exc:
        raise SystemExit(f"vla-ros data generate: --ray: {exc}")
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


def _import(args: argparse.Namespace) -> int:
    from vla_ros.bags.errors import BagError
    from vla_ros.data.contract import ContractError, load_contract
    from vla_ros.data.importing import DatasetImportError, import_bags
    from vla_ros.data.lerobot import LeRobotError, import_lerobot

    say = lambda text: print(text, flush=True)  # noqa: E731
    try:
        if args.format == "lerobot":
            if len(args.sources) != 1 or args.contract is not None:
                raise SystemExit("vla-ros data import: --format lerobot takes one data set directory and no --contract")
            summary = import_lerobot(args.sources[0], args.out, force=args.force, camera=args.camera,
                                     image_size=args.image_size, say=say)
            print(f"wrote {args.out}: {summary['episodes']} episodes, {summary['samples']} steps from "
                  f"{summary['source']} ({summary['codebase_version']})")
            return 0
        if args.camera or args.image_size:
            raise SystemExit("vla-ros data import: --camera and --image-size apply to --format lerobot; for bags the "
                             "contract names the cameras and the image size")
        contract = load_contract(args.contract)
        say(f"importing with {contract.source}")
        report = import_bags(args.sources, args.out, contract, force=args.force, say=say)
    except (ContractError, DatasetImportError, LeRobotError, BagError) as exc:
        raise SystemExit(f"vla-ros data import: {exc}")
    print(f"wrote {args.out}: {report['imported']} of {report['bags']} episodes "
          f"({report['dataset']['samples']} steps) in {report['seconds']:.1f} s "
          f"({report['episodes_per_minute']} episodes/min, {report['megabytes_per_second']} MB/s of bag); frames "
          f"{report['frame_age_ms']['mean']:.0f} ms (p95 {report['frame_age_ms']['p95']:.0f}, max "
          f"{report['frame_age_ms']['max']:.0f}) before their control steps; {len(report['skipped'])} skipped")
    return 0 if report["imported"] else 1


def _export(args: argparse.Namespace) -> int:
    from vla_ros.data.importing import DatasetImportError
    from vla_ros.data.lerobot import LeRobotError, export_dataset

    try:
        summary = export_dataset(args.dataset, args.out, force=args.force, crf=args.crf)
    except FileNotFoundError as exc:
        raise SystemExit(f"vla-ros data export: {exc}")
    except (OSError, KeyError) as exc:
        raise SystemExit(f"vla-ros data export: cannot read a data set at {args.dataset} ({exc}); expected a "
                         "directory written by 'vla-ros data generate' or 'data import'")
    except (LeRobotError, DatasetImportError) as exc:
        raise SystemExit(f"vla-ros data export: {exc}")
    print(f"wrote {args.out}: LeRobotDataset v3.0, {summary['episodes']} episodes, {summary['frames']} frames, "
          f"{summary['tasks']} tasks, {summary['bytes'] / 1e6:.2f} MB (the HDF5 is {summary['source_bytes'] / 1e6:.2f} MB)")
    return 0
