"""Bags → a training set (`vla-ros data import`): one episode per bag, aligned to control steps, validated.

Topics are mapped to features by an `ImportContract` (`vla_ros.data.contract`). Per bag: the episode lies
between its start and stop marks (`/vla/demos/mark`, written by `vla-ros record-demos`) or spans the bag; the
control steps are the recorded 7-D actions' stamps (the executed action stream), or, when the bag has no
actions, a grid at the control rate whose actions are the end-effector pose differences between consecutive
steps by forward kinematics of the recorded joint states. Each step gets the newest frame of every camera and
the newest joint state at or before it (`vla_ros.data.alignment`). An episode with missing topics, stamps going
backwards, gaps, a wrong rate, frames too old for their step or no instruction is reported by bag name and
reason and left out; the data set is written to OUT.partial and moved to OUT only once complete, so a bad or
corrupt bag never leaves a half-written data set.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from vla_ros.bags.errors import BagError
from vla_ros.core.action_chunks import ACTION_NAMES
from vla_ros.data.alignment import (StreamProblem, align, check_gaps, check_order, check_rate, control_grid,
                                    measured_rate)
from vla_ros.data.contract import ImportContract
from vla_ros.data.episodes import Episode

PARTIAL_SUFFIX = ".partial"
REPORT_FILE = "import_report.json"
MARK_START, MARK_SUCCESS, MARK_FAILURE = "start", "success", "failure"
MAX_DERIVED_STEP_M = 0.1  # a derived action larger than this per step means the joint states jumped


class DatasetImportError(ValueError):
    """An import that cannot go ahead at all (no input, output in the way); one sentence naming it."""


@dataclass
class EpisodeReport:
    source: str
    ok: bool
    reason: str = ""
    steps: int = 0
    instruction: str = ""
    success: bool | None = None
    actions_from: str = ""  # the action topic, or "forward kinematics"
    frame_age_ms: dict = field(default_factory=dict)  # alignment error statistics of the primary camera
    bytes: int = 0


# ---------------------------------------------------------------------------------------------- finding bags
def find_bags(paths) -> list[Path]:
    """Every bag under the given paths: a bag directory (metadata.yaml), a .mcap/.db3 file, or folders holding bags."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise DatasetImportError(f"{path} does not exist; give bags (a directory with metadata.yaml, or .mcap/.db3 "
                               "files) or folders holding them")
        if path.is_file():
            if path.suffix not in (".mcap", ".db3"):
                raise DatasetImportError(f"{path} is not a bag; give a bag directory or a .mcap / .db3 file")
            found.append(path)
        elif (path / "metadata.yaml").is_file() or path.name.endswith(PARTIAL_SUFFIX):
            found.append(path)
        else:
            inner = sorted(p for p in path.rglob("metadata.yaml") if not any(
                part.endswith(PARTIAL_SUFFIX) for part in p.relative_to(path).parts))
            partial = sorted(p for p in path.iterdir() if p.is_dir() and p.name.endswith(PARTIAL_SUFFIX))
            if not inner and not partial:
                raise DatasetImportError(f"{path} holds no bag (no metadata.yaml below it)")
            found += [p.parent for p in inner] + partial
    return list(dict.fromkeys(found))


def bag_bytes(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# ---------------------------------------------------------------------------------------------- one bag
@dataclass
class _Streams:
    frames: dict[str, tuple[list[float], list[np.ndarray]]]
    joint_stamps: list[float] = field(default_factory=list)
    joints: list[np.ndarray] = field(default_factory=list)
    openings: list[float] = field(default_factory=list)
    action_stamps: list[float] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    texts: list[tuple[float, str]] = field(default_factory=list)
    marks: list[tuple[float, str]] = field(default_factory=list)


def _stamp(msg, bag_time_ns: int) -> float:
    header = getattr(msg, "header", None)
    if header is not None and (header.stamp.sec or header.stamp.nanosec):
        return header.stamp.sec + header.stamp.nanosec * 1e-9
    return bag_time_ns * 1e-9


def _first_present(candidates, topics: dict, what: str, required: bool = True) -> str | None:
    for topic in candidates:
        if topic in topics:
            return topic
    if required:
        raise StreamProblem(f"missing topic: none of {', '.join(candidates)} ({what}) is in the bag; it has "
                            f"{', '.join(topics) or 'no topics'}")
    return None


def read_bag_episode(path: Path, contract: ImportContract, kinematics) -> tuple[Episode, dict]:
    """One bag as an Episode, plus facts for the report; raises StreamProblem or BagError with the reason."""
    from vla_ros.bags.message_types import typestore  # noqa: PLC0415
    from vla_ros.bags.reading import BagReader  # noqa: PLC0415
    from vla_ros.core.image_msgs import compressed_to_rgb8, image_to_rgb8  # noqa: PLC0415
    from vla_ros.core.preprocess import center_crop_resize  # noqa: PLC0415
    from vla_ros.robot.wx250s import FINGER_JOINT, gripper_opening  # noqa: PLC0415

    store = typestore()
    with BagReader(path) as bag:
        topics = bag.info.topics
        cameras = [(name, _first_present(candidates, topics, f"camera {name}"))
                   for name, candidates in contract.cameras]
        state_topic = _first_present(contract.state_topics, topics, "joint states")
        action_topic = _first_present(contract.action_topics, topics, "actions", required=False)
        text_topic = _first_present(contract.instruction_topics, topics, "instruction", required=False)
        mark_topic = _first_present(contract.success_topics, topics, "success marks", required=False)
        custom = bag.custom_data
        camera_of = {topic: name for name, topic in cameras}
        streams = _Streams(frames={name: ([], []) for name, _ in cameras})
        chosen = [t for t in (*camera_of, state_topic, action_topic, text_topic, mark_topic) if t]
        gripper_joint = None
        for message in bag.messages(chosen):
            msg = store.deserialize_cdr(message.data, message.msgtype)
            stamp = _stamp(msg, message.timestamp_ns)
            if message.topic in camera_of:
                try:
                    rgb = compressed_to_rgb8(msg) if message.msgtype.endswith("CompressedImage") else image_to_rgb8(msg)
                except ValueError as exc:
                    raise StreamProblem(f"{message.topic}: a frame cannot be read ({exc})") from None
                stamps, frames = streams.frames[camera_of[message.topic]]
                stamps.append(stamp)
                frames.append(center_crop_resize(rgb, contract.image_size))
            elif message.topic == state_topic:
                index = {n: i for i, n in enumerate(msg.name)}
                if any(j not in index for j in contract.joints):
                    continue  # another publisher's partial joint state (e.g. the gripper alone)
                if gripper_joint is None:
                    gripper_joint = next((g for g in contract.gripper_joints if g in index), "")
                positions = np.asarray(msg.position, np.float64)
                streams.joint_stamps.append(stamp)
                streams.joints.append(np.array([positions[index[j]] for j in contract.joints]))
                if gripper_joint and gripper_joint in index:
                    value = float(positions[index[gripper_joint]])
                    streams.openings.append(gripper_opening(value) if gripper_joint == FINGER_JOINT else value)
                else:
                    streams.openings.append(np.nan)
            elif message.topic == action_topic:
                streams.action_stamps.append(stamp)
                streams.actions.append(_read_action(msg, message.topic))
            elif message.topic == text_topic:
                streams.texts.append((stamp, str(msg.data)))
            elif message.topic == mark_topic:
                streams.marks.append((stamp, str(msg.data).strip().lower()))
    return _episode_from(path, streams, contract, kinematics, custom, action_topic)


def _read_action(msg, topic: str) -> np.ndarray:
    if hasattr(msg, "joint_names"):  # trajectory_msgs/JointTrajectory: names are the action dimensions
        if tuple(msg.joint_names) != ACTION_NAMES or len(msg.points) != 1:
            raise StreamProblem(f"{topic}: expected one point over {list(ACTION_NAMES)}, got joint names "
                                f"{list(msg.joint_names)} and {len(msg.points)} points")
        values = np.asarray(msg.points[0].positions, np.float64)
    else:  # std_msgs/Float32MultiArray or Float64MultiArray
        values = np.asarray(msg.data, np.float64)
    if values.shape != (7,) or not np.all(np.isfinite(values)):
        raise StreamProblem(f"{topic}: an action is not 7 finite numbers ({values.tolist()})")
    return values


def _window(streams: _Streams, bounds: list[float]) -> tuple[float, float, bool | None]:
    """(start, end, success) from the marks, else the streams' span and no label."""
    start = next((t for t, m in streams.marks if m == MARK_START), min(bounds))
    stop = next(((t, m) for t, m in streams.marks if m in (MARK_SUCCESS, MARK_FAILURE) and t >= start), None)
    end = stop[0] if stop else max(bounds)
    return start, end, (None if stop is None else stop[1] == MARK_SUCCESS)


def _episode_from(path: Path, s: _Streams, c: ImportContract, kinematics, custom: dict,
                  action_topic: str | None) -> tuple[Episode, dict]:
    from vla_ros.robot.kinematics import rotmat_to_quat  # noqa: PLC0415
    from vla_ros.core.ee_delta import pose_delta  # noqa: PLC0415

    if not s.joint_stamps:
        raise StreamProblem("joint states: no message names all six arm joints "
                            f"({', '.join(c.joints)})")
    joint_stamps = np.asarray(s.joint_stamps)
    check_order("joint states", joint_stamps)
    frame_stamps = {}
    for name, (stamps, _) in s.frames.items():
        if not stamps:
            raise StreamProblem(f"camera {name}: no frame in the bag")
        frame_stamps[name] = np.asarray(stamps)
        check_order(f"camera {name}", frame_stamps[name])
    bounds = [joint_stamps[0], joint_stamps[-1]]
    if action_topic:
        if len(s.action_stamps) < 2:
            raise StreamProblem(f"{action_topic}: fewer than two actions")
        bounds = [s.action_stamps[0], s.action_stamps[-1] + c.period_s]
    start, end, marked = _window(s, bounds)
    if action_topic:
        stamps = np.asarray(s.action_stamps)
        check_order(action_topic, stamps)
        keep = (stamps >= start - 1e-9) & (stamps < end)
        steps, actions = stamps[keep], np.asarray(s.actions)[keep]
        if len(steps) < 2:
            raise StreamProblem(f"{action_topic}: fewer than two actions between the episode's marks")
        check_rate(action_topic, steps, c.control_rate_hz, c.rate_tolerance)
        check_gaps(action_topic, steps, steps[0], steps[-1], c.max_gap_s)
        start, end = steps[0], steps[-1]
    else:
        start = max(start, joint_stamps[0], *(f[0] for f in frame_stamps.values()))
        steps = control_grid(start, min(end, joint_stamps[-1]), c.period_s)
        if len(steps) < 3:
            raise StreamProblem("fewer than three control steps of joint states and frames")
    for name, stamps in frame_stamps.items():
        check_rate(f"camera {name}", stamps, c.control_rate_hz, c.rate_tolerance, at_least=True)
        check_gaps(f"camera {name}", stamps, start, end, c.max_gap_s)
    check_rate("joint states", joint_stamps, c.control_rate_hz, c.rate_tolerance, at_least=True)
    check_gaps("joint states", joint_stamps, start, end, c.max_gap_s)
    # Steps before the first frame or joint state (a recording that starts with the motion) are left out.
    first_ready = max(joint_stamps[0], *(f[0] for f in frame_stamps.values()))
    trimmed = int(np.sum(steps < first_ready))
    if trimmed:
        steps = steps[trimmed:]
        if action_topic:
            actions = actions[trimmed:]
    if len(steps) < 2:
        raise StreamProblem("fewer than two control steps once frames and joint states are there")
    alignments = {name: align(f"camera {name}", stamps, steps, c.tolerance_s) for name, stamps in frame_stamps.items()}
    joint_alignment = align("joint states", joint_stamps, steps, c.tolerance_s)
    q = np.asarray(s.joints)[joint_alignment.indices]
    openings = np.asarray(s.openings)[joint_alignment.indices]
    if np.any(~np.isfinite(openings)):
        raise StreamProblem(f"joint states: no gripper joint ({' or '.join(c.gripper_joints)})")
    poses = [kinematics.fk(qi) for qi in q]
    if not action_topic:  # the motion between consecutive steps, by forward kinematics
        actions = np.array([np.append(pose_delta(*poses[k], *poses[k + 1]),
                                      1.0 if openings[k + 1] >= c.gripper_threshold else 0.0)
                            for k in range(len(steps) - 1)])
        jump = np.abs(actions[:, :3]).max()
        if jump > MAX_DERIVED_STEP_M:
            raise StreamProblem(f"joint states: the end effector jumps {jump * 100:.0f} cm in one control step")
        steps, q, openings, poses = steps[:-1], q[:-1], openings[:-1], poses[:-1]
        alignments = {name: type(a)(a.indices[:-1], a.errors_s[:-1]) for name, a in alignments.items()}
    instruction = _instruction(s, c, custom, end)
    if marked is not None:
        success = marked
    elif "success" in custom:
        success = str(custom["success"]).lower() == "true"
    else:
        success = True
    family = custom.get("family", "")
    try:
        from vla_ros.sim.tasks import parse_instruction  # noqa: PLC0415

        family = family or parse_instruction(instruction).family
    except ValueError:
        pass
    names = [name for name, _ in c.cameras]
    frames = {name: np.stack([s.frames[name][1][i] for i in alignments[name].indices]) for name in names}
    episode = Episode(
        name=path.name, actions=np.asarray(actions, np.float32), images=frames[names[0]],
        joint_pos=q.astype(np.float32), ee_pos=np.array([p[0] for p in poses], np.float32),
        ee_quat=np.array([rotmat_to_quat(p[1]) for p in poses], np.float32),
        gripper=openings.astype(np.float32).reshape(-1, 1), phases=np.full(len(steps), -1, np.int64),
        instruction=instruction, family=family, seed=int(custom.get("seed", -1)), success=success,
        camera=names[0], cameras={name: frames[name] for name in names[1:]}, source=str(path))
    errors = alignments[names[0]].errors_s * 1e3
    facts = {"steps": len(steps), "trimmed_steps": trimmed, "actions_from": action_topic or "forward kinematics",
             "action_rate_hz": round(measured_rate(steps), 3),
             "frame_age_ms": {"mean": round(float(errors.mean()), 2), "p50": round(float(np.median(errors)), 2),
                              "p95": round(float(np.percentile(errors, 95)), 2), "max": round(float(errors.max()), 2)},
             "frame_ages_ms": errors.tolist()}
    return episode, facts


def _instruction(s: _Streams, c: ImportContract, custom: dict, end: float) -> str:
    for stamp, text in s.texts:
        if text.strip() and stamp <= end:
            return text.strip()
    if c.instruction_text:
        return c.instruction_text
    if custom.get("instruction"):
        return str(custom["instruction"])
    raise StreamProblem("no instruction: the bag has no non-empty "
                        f"{' or '.join(c.instruction_topics) or 'instruction topic'} and the contract gives no text")


# ---------------------------------------------------------------------------------------------- the data set
def prepare_output(out: Path, force: bool) -> Path:
    """OUT.partial, made fresh; refuses an existing OUT unless `force`."""
    out = Path(out)
    if out.exists() and not force:
        raise DatasetImportError(f"{out} already exists; choose another --out or pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise DatasetImportError(f"--out {out} is a file; give a directory")
    partial = out.with_name(out.name + PARTIAL_SUFFIX)
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    return partial


def publish_output(partial: Path, out: Path) -> None:
    """Move the finished OUT.partial to OUT (replacing OUT only now, when the new data set is complete)."""
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)


def write_dataset(out: Path, episodes, env_args: dict, force: bool = False,
                  on_episode: Callable[[int, Episode], None] | None = None) -> dict:
    """Write episodes (an iterable, consumed one at a time) as OUT/dataset.hdf5, atomically; returns the summary."""
    import h5py  # noqa: PLC0415

    from vla_ros.data.writer import DATASET_FILE, finalize, write_demo  # noqa: PLC0415

    out = Path(out)
    partial = prepare_output(out, force)
    try:
        count = 0
        with h5py.File(partial / DATASET_FILE, "w") as f:
            data = f.create_group("data")
            for episode in episodes:
                write_demo(data, count, episode)
                if on_episode:
                    on_episode(count, episode)
                count += 1
        if count == 0:
            raise DatasetImportError(f"no episode could be imported into {out}; see the reasons above")
        summary = finalize(partial / DATASET_FILE, env_args)
        publish_output(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return summary


def import_bags(paths, out: Path, contract: ImportContract, force: bool = False,
                say: Callable[[str], None] = print) -> dict:
    """Import every bag under `paths` into OUT (robomimic HDF5); bad episodes are reported and skipped."""
    from vla_ros.robot.kinematics import ArmKinematics  # noqa: PLC0415

    bags = find_bags(paths)
    kinematics = ArmKinematics()
    reports: list[EpisodeReport] = []
    ages: list[float] = []
    started = time.perf_counter()

    def episodes():
        for index, bag in enumerate(bags):
            report = EpisodeReport(source=str(bag), ok=False, bytes=bag_bytes(bag))
            reports.append(report)
            try:
                episode, facts = read_bag_episode(bag, contract, kinematics)
            except (StreamProblem, BagError) as exc:
                report.reason = str(exc)
                say(f"  skipped {bag.name}: {exc}")
                continue
            report.ok, report.steps, report.instruction, report.success = True, facts["steps"], \
                episode.instruction, episode.success
            report.actions_from, report.frame_age_ms = facts["actions_from"], facts["frame_age_ms"]
            ages.extend(facts["frame_ages_ms"])
            say(f"  {bag.name}: {facts['steps']} steps, '{episode.instruction}', "
                f"{'success' if episode.success else 'failure'}, frames {facts['frame_age_ms']['mean']:.0f} ms "
                f"before their steps on average (max {facts['frame_age_ms']['max']:.0f}), actions from "
                f"{facts['actions_from']}")
            yield episode

    env_args = {"env_name": "imported", "type": "rosbag2",
                "env_kwargs": {"contract": contract.source, "control_hz": contract.control_rate_hz,
                               "image_size": contract.image_size, "camera": contract.cameras[0][0],
                               "tolerance_s": contract.tolerance_s}}
    summary = write_dataset(out, episodes(), env_args, force=force)
    seconds = time.perf_counter() - started
    total_bytes = sum(r.bytes for r in reports)
    ages_array = np.asarray(ages) if ages else np.zeros(1)
    report = {
        "out": str(out), "contract": contract.source, "bags": len(bags), "imported": sum(r.ok for r in reports),
        "skipped": [{"bag": r.source, "reason": r.reason} for r in reports if not r.ok],
        "seconds": round(seconds, 3), "bag_bytes": total_bytes,
        "episodes_per_minute": round(len(bags) / seconds * 60, 1) if seconds > 0 else None,
        "megabytes_per_second": round(total_bytes / 1e6 / seconds, 2) if seconds > 0 else None,
        "frame_age_ms": {"mean": round(float(ages_array.mean()), 2), "p50": round(float(np.median(ages_array)), 2),
                         "p95": round(float(np.percentile(ages_array, 95)), 2), "max": round(float(ages_array.max()), 2),
                         "tolerance": contract.tolerance_s * 1e3},
        "episodes": [vars(r) for r in reports], "dataset": summary,
    }
    (Path(out) / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return {**report, "frame_ages_ms_all": ages}  # every step's frame age, for a histogram (not in the file)
