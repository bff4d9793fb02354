"""OpenVLA's two sanity checks, on demonstrations from an HDF5 data set or episode bags.

replay-actions   the recorded actions, fed as 8-step chunks through the executor core (sliding window,
                 execute 3), `EndEffectorIntegrator` and `Workcell.set_joint_targets/advance` (the path the
                 ROS graph takes), reproduce the demonstration's outcome: agreement of success with the
                 recorded success, and how far the arm ends from where the demonstration's arm was.
policy-actions   each recorded frame through the policy (greedy) and the tokenizer gives a chunk close to the
                 demonstration's next 8 actions: normalized RMSE per dimension (the tokenizer's q01/q99
                 scaling, so 1.0 is half the data's range) and gripper agreement, against the trivial
                 baseline that always predicts the mean action.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vla_ros.bags.errors import BagError
from vla_ros.core.executor import ExecutorSettings
from vla_ros.core.settings import CONTROL_PERIOD_S

CHUNK = 8
EXECUTE = ExecutorSettings.execute_steps
STEP_NS = round(CONTROL_PERIOD_S * 1e9)
DIMENSIONS = ("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper")


@dataclass
class Demonstration:
    name: str
    seed: int
    family: str
    instruction: str
    success: bool
    actions: np.ndarray  # [T, 7]
    images: np.ndarray | None  # [T, H, W, 3]: the observation before each action
    joint_pos: np.ndarray  # [T, 6]


# ------------------------------------------------------------------------------------------------ inputs
def load_demonstrations(path: str | Path, episodes: int | None = None, with_images: bool = True,
                        successful_only: bool = False) -> tuple[list[Demonstration], str]:
    """Demonstrations from a data set (directory with dataset.hdf5, or the file), a folder of episode bags or one
    bag; also the workcell split they were generated in."""
    path = Path(path)
    if not path.exists():
        raise BagError(f"data {path} does not exist; give a data set directory, a dataset.hdf5, a folder of "
                       "episode bags or one episode bag")
    bag_dirs = ([path] if (path / "metadata.yaml").exists() else
                sorted(p for p in path.iterdir() if (p / "metadata.yaml").exists()) if path.is_dir() else [])
    if path.is_dir() and (path / "bags").is_dir() and not (path / "dataset.hdf5").exists():
        bag_dirs = sorted(p for p in (path / "bags").iterdir() if (p / "metadata.yaml").exists())
    if path.suffix in (".hdf5", ".h5") or (path / "dataset.hdf5").exists():
        demos, split = _from_hdf5(path, with_images)
    elif bag_dirs:
        demos = [_from_bag(p, with_images) for p in bag_dirs[: episodes or None]]
        split = "train"
    else:
        raise BagError(f"data {path} holds neither dataset.hdf5 nor episode bags (`vla-ros data generate --bags`)")
    if successful_only:
        demos = [d for d in demos if d.success]
    return demos[: episodes or None], split


def _from_hdf5(path: Path, with_images: bool) -> tuple[list[Demonstration], str]:
    import h5py

    from vla_ros.data.episodes import dataset_path, load_episodes

    file = dataset_path(path)
    with h5py.File(file, "r") as f:
        env_args = json.loads(f["data"].attrs.get("env_args", "{}"))
    split = env_args.get("env_kwargs", {}).get("split", "train")
    return [Demonstration(e.name, e.seed, e.family, e.instruction, e.success, e.actions, e.images, e.joint_pos)
            for e in load_episodes(file, successful_only=False, with_images=with_images)], split


def _from_bag(path: Path, with_images: bool) -> Demonstration:
    import yaml

    from vla_ros.bags.episodes import EXPERT_ACTION
    from vla_ros.bags.message_types import typestore
    from vla_ros.bags.reading import BagReader
    from vla_ros.core import topics
    from vla_ros.core.image_msgs import image_to_rgb8
    from vla_ros.robot.wx250s import ARM_JOINTS

    meta = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    custom = meta.get("custom_data") or {}
    missing = [k for k in ("seed", "family", "instruction", "success") if k not in custom]
    if missing:
        raise BagError(f"bag {path} is not an episode bag: its custom_data lacks {', '.join(missing)}")
    store = typestore()
    actions, images, joints = [], [], []
    wanted = [EXPERT_ACTION, topics.JOINT_STATES] + ([topics.CAMERA_IMAGE] if with_images else [])
    with BagReader(path) as reader:
        for message in reader.messages(wanted):
            msg = store.deserialize_cdr(message.data, message.msgtype)
            if message.topic == EXPERT_ACTION:
                actions.append(np.asarray(msg.data, np.float32))
            elif message.topic == topics.JOINT_STATES:
                index = {n: i for i, n in enumerate(msg.name)}
                joints.append(np.array([msg.position[index[n]] for n in ARM_JOINTS]))
            else:
                images.append(image_to_rgb8(msg))
    steps = len(actions)  # observations: one before each action, plus the final one
    return Demonstration(path.name, int(custom["seed"]), str(custom["family"]), str(custom["instruction"]),
                         str(custom["success"]).lower() == "true", np.stack(actions),
                         np.stack(images[:steps]) if with_images else None, np.stack(joints[:steps]))


# ------------------------------------------------------------------------------------------------ check 1
def replay_actions(demo: Demonstration, workcell, kinematics) -> dict:
    """Feed the recorded actions as 8-step chunks through the executor core and the EE integrator into the sim."""
    from vla_ros.core.action_chunks import ActionChunk
    from vla_ros.core.action_tokens import task_hash
    from vla_ros.core.stages.control import ControlLoop
    from vla_ros.tokenizers.chunking import chunks_from_episode

    observation = workcell.reset(demo.seed, family=demo.family)
    if workcell.task.instruction != demo.instruction:
        raise BagError(f"episode {demo.name}: seed {demo.seed} gives the task {workcell.task.instruction!r}, not the "
                       f"recorded {demo.instruction!r} (was it generated in another split?)")
    loop = ControlLoop(ExecutorSettings(execute_steps=EXECUTE, control_rate=1e9 / STEP_NS), kinematics)
    loop.set_task(demo.instruction)
    hashed = task_hash(demo.instruction)
    chunks = chunks_from_episode(demo.actions, CHUNK)
    success, ee_errors = False, []
    for step, chunk in enumerate(chunks):
        now = step * STEP_NS / 1e9
        # The recorded observation before action `step` against the replayed one (the last is the final state).
        ee_errors.append(float(np.linalg.norm(kinematics.fk(observation.joint_pos)[0]
                                              - kinematics.fk(demo.joint_pos[step])[0]) * 1e3))
        # A policy at 5 Hz offers a chunk every step; the executor adopts one every EXECUTE steps.
        valid = chunk[: len(demo.actions) - step]
        loop.executor.add_chunk(ActionChunk(valid.astype(np.float64), step * STEP_NS, STEP_NS / 1e9, hashed, "demo"),
                                received_s=now)
        loop.update_joint_positions(observation.joint_pos, now)
        output = loop.tick(now, now)
        if output.targets is not None:
            workcell.set_joint_targets(output.targets.arm, output.targets.gripper)
        observation = workcell.advance(STEP_NS / 1e9, render=False, count_step=True)
        if workcell.success():
            success = True
            break
    return {"episode": demo.name, "family": demo.family, "recorded_success": demo.success, "replayed_success": success,
            "steps": step + 1, "recorded_steps": len(demo.actions),
            "max_ee_error_mm": float(max(ee_errors)), "final_ee_error_mm": ee_errors[-1]}





def check_replay_actions(demos: list[Demonstration], split: str = "train", progress: bool = False) -> dict:
    from tqdm import tqdm

    from vla_ros.robot.kinematics import ArmKinematics
    from vla_ros.sim.workcell import Workcell

    kinematics = ArmKinematics()
    rows = []
    with Workcell(render=False, split=split) as workcell:
        for demo in tqdm(demos, desc="replay actions", unit="ep", disable=not progress):
            rows.append(replay_actions(demo, workcell, kinematics))
    agree = [r["recorded_success"] == r["replayed_success"] for r in rows]
    successful = [r for r in rows if r["recorded_success"]]
    return {
        "check": "replay-actions", "episodes": len(rows),
        "agreement": float(np.mean(agree)) if rows else None,
        "agreement_on_successful": float(np.mean([r["replayed_success"] for r in successful])) if successful else None,
        "final_ee_error_mm_mean": float(np.mean([r["final_ee_error_mm"] for r in rows])) if rows else None,
        "final_ee_error_mm_max": float(np.max([r["final_ee_error_mm"] for r in rows])) if rows else None,
        "episodes_detail": rows,
    }


# ------------------------------------------------------------------------------------------------ check 2
def check_policy_actions(demos: list[Demonstration], runner, batch: int = 32, progress: bool = False) -> dict:
    """Greedy chunks for every recorded frame against the demonstration's next 8 actions (and the mean action)."""
    from tqdm import tqdm

    from vla_ros.core.preprocess import center_crop_resize
    from vla_ros.tokenizers.chunking import chunks_from_episode

    tokenizer = runner.tokenizer
    size = runner.config.image_size
    predicted, expected, valid = [], [], []
    frames = [(d, t) for d in demos for t in range(len(d.actions))]
    for start in tqdm(range(0, len(frames), batch), desc="policy actions", unit="batch", disable=not progress):
        part = frames[start:start + batch]
        images = np.stack([_model_image(d.images[t], size, center_crop_resize) for d, t in part])
        joints = np.stack([d.joint_pos[t] for d, t in part]).astype(np.float32)
        tokens = runner.infer(images, [d.instruction for d, _ in part], joints, temperature=0.0).tokens
        predicted.append(tokenizer.decode(tokens))
        for d, t in part:
            expected.append(chunks_from_episode(d.actions, CHUNK)[t])
            valid.append(np.arange(CHUNK) < len(d.actions) - t)  # padding past the episode's end is not compared
    predicted, expected, valid = np.concatenate(predicted), np.stack(expected), np.stack(valid)
    mean_action = np.concatenate([d.actions for d in demos]).mean(0)
    baseline = np.broadcast_to(mean_action, expected.shape)
    # What perfect tokens would give: the demonstration's own chunks through the tokenizer and back.
    round_trip = tokenizer.decode(tokenizer.encode(expected.astype(np.float32)))
    return {"check": "policy-actions", "episodes": len(demos), "frames": len(frames),
            "tokenizer_identity": tokenizer.identity,
            "policy": _action_errors(predicted, expected, valid, tokenizer.normalizer),
            "mean_action_baseline": _action_errors(baseline, expected, valid, tokenizer.normalizer),
            "tokenizer_round_trip": _action_errors(round_trip, expected, valid, tokenizer.normalizer)}


def _model_image(image: np.ndarray, size: int, resize) -> np.ndarray:
    return image if image.shape[:2] == (size, size) else resize(image, size)


def _action_errors(predicted: np.ndarray, expected: np.ndarray, valid: np.ndarray, normalizer) -> dict:
    p = normalizer.normalize(predicted[valid].astype(np.float64))
    e = normalizer.normalize(expected[valid].astype(np.float64))
    rmse = np.sqrt(np.mean((p - e) ** 2, axis=0))
    gripper = float(np.mean((predicted[valid][:, 6] >= 0.5) == (expected[valid][:, 6] >= 0.5)))
    return {"nrmse": dict(zip(DIMENSIONS, rmse.tolist())), "nrmse_mean": float(rmse.mean()),
            "gripper_agreement": gripper}


# ------------------------------------------------------------------------------------------------ reports
def replay_table(result: dict) -> str:
    lines = ["| episode | family | recorded | replayed | steps | final EE error (mm) |", "|---|---|---|---|---|---|"]
    for r in result["episodes_detail"]:
        lines.append(f"| {r['episode']} | {r['family']} | {'ok' if r['recorded_success'] else 'fail'} | "
                     f"{'ok' if r['replayed_success'] else 'fail'} | {r['steps']}/{r['recorded_steps']} | "
                     f"{r['final_ee_error_mm']:.1f} |")
    lines.append(f"\nagreement {result['agreement']:.0%} over {result['episodes']} episodes; mean final EE error "
                 f"{result['final_ee_error_mm_mean']:.1f} mm (max {result['final_ee_error_mm_max']:.1f})")
    return "\n".join(lines)


def policy_table(result: dict) -> str:
    head = "| predictor | " + " | ".join(DIMENSIONS) + " | mean | gripper agreement |"
    lines = [head, "|---|" + "---|" * (len(DIMENSIONS) + 2)]
    for label, key in (("policy", "policy"), ("mean action (baseline)", "mean_action_baseline"),
                       ("tokenizer round trip (floor)", "tokenizer_round_trip")):
        row = result[key]
        cells = " | ".join(f"{row['nrmse'][d]:.3f}" for d in DIMENSIONS)
        lines.append(f"| {label} | {cells} | {row['nrmse_mean']:.3f} | {row['gripper_agreement']:.1%} |")
    lines.append(f"\nnormalized RMSE (tokenizer q01/q99 scaling) over {result['frames']} frames of "
                 f"{result['episodes']} episodes")
    return "\n".join(lines)


def write_result(out: Path | None, name: str, result: dict) -> Path | None:
    if out is None:
        return None
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{name}.json"
    target.write_text(json.dumps(result, indent=2) + "\n")
    return target
