"""LeRobotDataset: writing v3.0 and reading v3.0 and v2.1, with pyarrow and the ffmpeg of imageio-ffmpeg.

Written from the format as LeRobot documents and writes it (`lerobot/datasets/utils.py`, `dataset_metadata.py`,
`scripts/convert_dataset_v21_to_v30.py`); the `lerobot` package itself is not needed. v3.0:

    meta/info.json                                  codebase_version, fps, features, path templates, totals
    meta/stats.json                                 per feature min/max/mean/std/count/q01…q99 (images per channel, 0..1)
    meta/tasks.parquet                              task_index, indexed by the task text (pandas index "task")
    meta/episodes/chunk-000/file-000.parquet        per episode: tasks, length, dataset_from/to_index, the data and
                                                    video files it lies in, video from/to_timestamp, stats/…
    data/chunk-000/file-000.parquet                 one row per frame: observation.state, action, timestamp,
                                                    frame_index, episode_index, index, task_index, …
    videos/observation.images.<camera>/chunk-000/file-000.mp4   H.264 (libx264, yuv420p), episodes one after another

v2.1 keeps one parquet file and one MP4 per episode (`data/chunk-000/episode_000000.parquet`,
`videos/chunk-000/<key>/episode_000000.mp4`) and JSON-lines metadata (`meta/episodes.jsonl`, `meta/tasks.jsonl`).

Our features: `observation.images.<camera>` (video), `observation.state` = the six arm joints (rad) and the
gripper opening (1 = open), `action` = [dx, dy, dz, droll, dpitch, dyaw, gripper] (Bridge convention),
`observation.ee_pos`, `observation.ee_quat` (w, x, y, z) and `phase` (the expert's phase index, -1 unknown); per
episode also `success`, `family`, `seed`. Actions and states round-trip exactly (float32 both ways); frames
within the codec's loss.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from vla_ros.core.action_chunks import ACTION_NAMES
from vla_ros.data.episodes import Episode
from vla_ros.robot.wx250s import ARM_JOINTS

CODEBASE_VERSION = "v3.0"
READABLE_VERSIONS = ("v3.0", "v2.1", "v2.0")
CHUNKS_SIZE = 1000  # files per chunk folder
DATA_FILE_MB = 100
VIDEO_FILE_MB = 200
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
STATE_NAMES = (*ARM_JOINTS, "gripper")
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
VIDEO_CRF = 18  # libx264 constant rate factor: visually lossless at these sizes (LeRobot's default AV1 uses 30)
ROBOT_TYPE = "wx250s"
# The round trip's codec tolerance: frames come back at least this close (peak signal-to-noise ratio). Measured at
# crf 18 on 50 teleoperated episodes of the simulator's 64 px frames: 30.4 dB for the worst episode, 31.7 dB on
# average; 38 dB on smooth synthetic frames. The loss is yuv420p's colour at half resolution (what LeRobot's videos
# use, and browsers need) on objects a few pixels wide, not the rate factor: crf 10 gains 0.5 dB at 1.6x the size.
FRAME_TOLERANCE_PSNR_DB = 28.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 frame stacks, dB (inf when identical)."""
    error = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return math.inf if error == 0 else 10.0 * math.log10(255.0 ** 2 / error)


class LeRobotError(ValueError):
    """A LeRobot data set that cannot be written or read; one sentence naming the path and what is wrong."""


def is_lerobot(path: str | Path) -> bool:
    return (Path(path) / "meta" / "info.json").is_file()


def image_key(camera: str) -> str:
    return f"observation.images.{camera}"


# ---------------------------------------------------------------------------------------------- statistics
def feature_stats(values: np.ndarray) -> dict[str, list]:
    """LeRobot's per-feature statistics over the first axis (frames)."""
    values = np.asarray(values, np.float64)
    stats = {"min": values.min(0), "max": values.max(0), "mean": values.mean(0), "std": values.std(0),
             "count": np.array([len(values)])}
    for q in QUANTILES:
        stats[f"q{round(q * 100):02d}"] = np.quantile(values, q, axis=0)
    return {k: np.asarray(v).tolist() for k, v in stats.items()}


def image_stats(frames: np.ndarray, sample: int = 200) -> dict[str, list]:
    """Per-channel statistics of frames in 0..1, shaped [3, 1, 1] as LeRobot keeps them (a sample of frames)."""
    frames = np.asarray(frames)
    if len(frames) > sample:
        frames = frames[np.linspace(0, len(frames) - 1, sample).astype(int)]
    pixels = frames.reshape(-1, 3).astype(np.float64) / 255.0
    stats = feature_stats(pixels)
    out = {k: [[[v]] for v in values] if k != "count" else [len(frames)] for k, values in stats.items()}
    return out


# ---------------------------------------------------------------------------------------------- writing
class _VideoFile:
    """One MP4 being written through ffmpeg (libx264, yuv420p)."""

    def __init__(self, path: Path, width: int, height: int, fps: int, crf: int):
        import imageio_ffmpeg  # noqa: PLC0415

        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.frames = path, 0
        self._writer = imageio_ffmpeg.write_frames(
            str(path), (width, height), fps=fps, codec="libx264", pix_fmt_in="rgb24", pix_fmt_out="yuv420p",
            quality=None, macro_block_size=1, ffmpeg_log_level="error",
            output_params=["-crf", str(crf), "-g", "2", "-preset", "medium", "-movflags", "+faststart"])
        self._writer.send(None)

    def add(self, frames: np.ndarray) -> None:
        for frame in frames:
            self._writer.send(np.ascontiguousarray(frame, np.uint8))
            self.frames += 1

    def written_bytes(self) -> int:
        """Bytes ffmpeg has written so far (0 before it has created the file: it starts as a subprocess)."""
        return self.path.stat().st_size if self.path.exists() else 0

    def close(self) -> None:
        self._writer.close()


def _schema_metadata(features: dict) -> dict:
    """The `huggingface` schema metadata Hugging Face datasets reads its feature types from."""
    hf = {}
    for key, feature in features.items():
        if feature["dtype"] == "video":
            continue
        value = {"dtype": feature["dtype"], "_type": "Value"}
        hf[key] = value if feature["shape"] == [1] else {"feature": value, "length": feature["shape"][0],
                                                         "_type": "List"}
    return {b"huggingface": json.dumps({"info": {"features": hf}}).encode()}


def _table(columns: dict, features: dict):
    import pyarrow as pa  # noqa: PLC0415

    arrays, names = [], []
    for key, values in columns.items():
        feature = features.get(key)
        values = np.asarray(values)
        if feature is not None and feature["shape"] != [1]:
            flat = pa.array(values.reshape(-1).astype(feature["dtype"]))
            arrays.append(pa.FixedSizeListArray.from_arrays(flat, feature["shape"][0]))
        else:
            arrays.append(pa.array(values.reshape(-1)))
        names.append(key)
    table = pa.Table.from_arrays(arrays, names=names)
    return table.replace_schema_metadata(_schema_metadata({k: v for k, v in features.items() if k in columns}))


def _tasks_table(tasks: list[str]):
    """meta/tasks.parquet as pandas writes a frame indexed by "task" (LeRobot reads it with pandas.read_parquet)."""
    import pyarrow as pa  # noqa: PLC0415

    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "task": pa.array(tasks, pa.string())})
    pandas_meta = {"index_columns": ["task"], "column_indexes": [
        {"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
         "metadata": {"encoding": "UTF-8"}}],
        "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
                     "metadata": None},
                    {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object",
                     "metadata": None}],
        "creator": {"library": "pyarrow", "version": pa.__version__}, "pandas_version": "2.2.0"}
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})


def features_for(episode: Episode, fps: int) -> dict:
    """info.json's features for episodes shaped like `episode`."""
    height, width = episode.images.shape[1:3]
    video_info = {"video.height": int(height), "video.width": int(width), "video.codec": "h264",
                  "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "video.fps": fps, "video.channels": 3,
                  "has_audio": False, "is_depth_map": False}
    features = {}
    for camera, frames in ((episode.camera, episode.images), *episode.cameras.items()):
        features[image_key(camera)] = {"dtype": "video", "shape": list(frames.shape[1:]),
                                       "names": ["height", "width", "channels"],
                                       "info": {**video_info, "video.height": int(frames.shape[1]),
                                                "video.width": int(frames.shape[2])}}
    features.update({
        "observation.state": {"dtype": "float32", "shape": [7], "names": list(STATE_NAMES)},
        "observation.ee_pos": {"dtype": "float32", "shape": [3], "names": ["x", "y", "z"]},
        "observation.ee_quat": {"dtype": "float32", "shape": [4], "names": ["w", "x", "y", "z"]},
        "action": {"dtype": "float32", "shape": [7], "names": list(ACTION_NAMES)},
        "phase": {"dtype": "int64", "shape": [1], "names": None},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    })
    for key, feature in features.items():
        if feature["dtype"] != "video":
            feature["fps"] = fps
    return features


def _frame_columns(episode: Episode, episode_index: int, first_index: int, task_index: int, fps: int) -> dict:
    length = len(episode.actions)
    return {
        "observation.state": np.concatenate([np.asarray(episode.joint_pos, np.float32),
                                             np.asarray(episode.gripper, np.float32).reshape(-1, 1)], 1),
        "observation.ee_pos": np.asarray(episode.ee_pos, np.float32),
        "observation.ee_quat": np.asarray(episode.ee_quat, np.float32),
        "action": np.asarray(episode.actions, np.float32),
        "phase": np.asarray(episode.phases, np.int64),
        "timestamp": (np.arange(length) / fps).astype(np.float32),
        "frame_index": np.arange(length, dtype=np.int64),
        "episode_index": np.full(length, episode_index, np.int64),
        "index": np.arange(first_index, first_index + length, dtype=np.int64),
        "task_index": np.full(length, task_index, np.int64),
    }


@dataclass
class _Shard:
    """Where the next rows (or frames) go: chunk and file index, and the open file's size so far."""

    chunk: int = 0
    file: int = 0
    size: int = 0

    def advance(self) -> None:
        self.file += 1
        if self.file == CHUNKS_SIZE:
            self.chunk, self.file = self.chunk + 1, 0
        self.size = 0


def write_lerobot(episodes: list[Episode], out: Path, fps: int, *, crf: int = VIDEO_CRF) -> dict:
    """Write episodes as a LeRobotDataset v3.0 directory `out` (which must be new and empty); returns info.json."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    if not episodes:
        raise LeRobotError("no episodes to export")
    first = episodes[0]
    cameras = [first.camera, *first.cameras]
    for episode in episodes:
        shapes = [episode.images.shape[1:], *(f.shape[1:] for f in episode.cameras.values())]
        if [episode.camera, *episode.cameras] != cameras or any(s[0] % 2 or s[1] % 2 for s in shapes):
            raise LeRobotError(f"episode {episode.name}: every episode needs the same cameras ({', '.join(cameras)}) "
                               "with even frame sizes (H.264 in yuv420p)")
    features = features_for(first, fps)
    tasks = list(dict.fromkeys(e.instruction for e in episodes))
    out.mkdir(parents=True, exist_ok=True)
    data_shard, video_shards = _Shard(), {c: _Shard() for c in cameras}
    rows: list = []
    videos: dict[str, _VideoFile] = {}
    episode_rows, index = [], 0
    all_columns: dict[str, list] = {k: [] for k in ("observation.state", "observation.ee_pos", "observation.ee_quat",
                                                    "action")}
    frames_for_stats: dict[str, list] = {c: [] for c in cameras}

    def flush_rows() -> None:
        if rows:
            path = out / DATA_PATH.format(chunk_index=data_shard.chunk, file_index=data_shard.file)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.concat_tables(rows), path, compression="snappy")
            rows.clear()

    for episode_index, episode in enumerate(episodes):
        columns = _frame_columns(episode, episode_index, index, tasks.index(episode.instruction), fps)
        table = _table(columns, features)
        if data_shard.size and data_shard.size + table.nbytes > DATA_FILE_MB * 1e6:
            flush_rows()
            data_shard.advance()
        row = {"episode_index": episode_index, "tasks": [episode.instruction], "length": len(episode.actions),
               "data/chunk_index": data_shard.chunk, "data/file_index": data_shard.file,
               "dataset_from_index": index, "dataset_to_index": index + len(episode.actions)}
        rows.append(table)
        data_shard.size += table.nbytes
        for camera, frames in ((episode.camera, episode.images), *episode.cameras.items()):
            key, shard = image_key(camera), video_shards[camera]
            video = videos.get(camera)
            if video is not None and video.written_bytes() > VIDEO_FILE_MB * 1e6:
                video.close()
                shard.advance()
                video = None
            if video is None:
                path = out / VIDEO_PATH.format(video_key=key, chunk_index=shard.chunk, file_index=shard.file)
                video = videos[camera] = _VideoFile(path, frames.shape[2], frames.shape[1], fps, crf)
            row.update({f"videos/{key}/chunk_index": shard.chunk, f"videos/{key}/file_index": shard.file,
                        f"videos/{key}/from_timestamp": video.frames / fps})
            video.add(frames)
            row[f"videos/{key}/to_timestamp"] = video.frames / fps
            frames_for_stats[camera].append(frames[:: max(1, len(frames) // 8)])
        row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
        for key in all_columns:
            all_columns[key].append(columns[key])
            for stat, value in feature_stats(columns[key]).items():
                row[f"stats/{key}/{stat}"] = value
        row.update({"success": bool(episode.success), "family": episode.family, "seed": int(episode.seed),
                    "source": episode.source or episode.name})
        episode_rows.append(row)
        index += len(episode.actions)
    flush_rows()
    for video in videos.values():
        video.close()
    episodes_path = out / EPISODES_PATH.format(chunk_index=0, file_index=0)
    episodes_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(episode_rows), episodes_path)
    pq.write_table(_tasks_table(tasks), out / "meta" / "tasks.parquet")
    stats = {key: feature_stats(np.concatenate(values)) for key, values in all_columns.items()}
    for camera in cameras:
        stats[image_key(camera)] = image_stats(np.concatenate(frames_for_stats[camera]))
    (out / "meta" / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    info = {"codebase_version": CODEBASE_VERSION, "robot_type": ROBOT_TYPE, "total_episodes": len(episodes),
            "total_frames": index, "total_tasks": len(tasks), "chunks_size": CHUNKS_SIZE,
            "data_files_size_in_mb": DATA_FILE_MB, "video_files_size_in_mb": VIDEO_FILE_MB, "fps": fps,
            "splits": {"train": f"0:{len(episodes)}"}, "data_path": DATA_PATH, "video_path": VIDEO_PATH,
            "features": features}
    (out / "meta" / "info.json").write_text(json.dumps(info, indent=4) + "\n")
    return info


def export_dataset(dataset: Path, out: Path, *, force: bool = False, crf: int = VIDEO_CRF,
                   say: Callable[[str], None] = print) -> dict:
    """Our HDF5 data set → LeRobotDataset v3.0 at `out` (written to OUT.partial, then moved); returns a summary."""
    import shutil  # noqa: PLC0415

    import h5py  # noqa: PLC0415

    from vla_ros.data.episodes import dataset_path, load_episodes  # noqa: PLC0415
    from vla_ros.data.importing import prepare_output, publish_output  # noqa: PLC0415

    source = dataset_path(dataset)
    with h5py.File(source, "r") as f:
        env = json.loads(f["data"].attrs.get("env_args", "{}"))
    fps_value = float(env.get("env_kwargs", {}).get("control_hz", 5.0))
    if abs(fps_value - round(fps_value)) > 1e-6:
        raise LeRobotError(f"{dataset}: control rate {fps_value} Hz is not a whole number of frames per second, "
                           "which LeRobotDataset needs")
    episodes = load_episodes(source, successful_only=False, with_images=True)
    if any(e.images is None for e in episodes):
        raise LeRobotError(f"{dataset}: episodes without camera frames cannot become a LeRobot data set")
    camera = env.get("env_kwargs", {}).get("camera")
    for episode in episodes:  # data sets from `data generate` name their camera in env_args only
        if episode.camera == "agentview" and camera:
            episode.camera = camera
    partial = prepare_output(out, force)
    say(f"writing {len(episodes)} episodes ({sum(len(e.actions) for e in episodes)} frames) as LeRobotDataset "
        f"{CODEBASE_VERSION} to {out}")
    try:
        info = write_lerobot(episodes, partial, int(round(fps_value)), crf=crf)
        publish_output(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    size = sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file())
    return {"out": str(out), "episodes": info["total_episodes"], "frames": info["total_frames"],
            "tasks": info["total_tasks"], "bytes": size, "source_bytes": source.stat().st_size}


# ---------------------------------------------------------------------------------------------- reading
def _decode_video(path: Path) -> tuple[np.ndarray, float]:
    """Every frame of an MP4 (RGB) and its frame rate."""
    import imageio_ffmpeg  # noqa: PLC0415

    if not path.is_file():
        raise LeRobotError(f"video {path} is missing")
    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    meta = next(reader)
    width, height = meta["size"]
    frames = [np.frombuffer(raw, np.uint8).reshape(height, width, 3) for raw in reader]
    return (np.stack(frames) if frames else np.zeros((0, height, width, 3), np.uint8)), float(meta.get("fps") or 0)


def _decode_png(cell) -> np.ndarray:
    import cv2  # noqa: PLC0415

    data = cell["bytes"] if isinstance(cell, dict) else cell
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise LeRobotError("an image cell of the parquet file cannot be decoded")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@dataclass
class LeRobotSource:
    """A LeRobot data set opened for reading: its info, tasks and per-episode records."""

    root: Path
    info: dict
    tasks: dict[int, str]
    episodes: list[dict]

    @property
    def version(self) -> str:
        return str(self.info.get("codebase_version", ""))

    @property
    def v3(self) -> bool:
        return self.version.startswith("v3")


def open_lerobot(root: str | Path) -> LeRobotSource:
    """Read meta/ of a v3.0 or v2.1 data set; raises LeRobotError naming what is missing or unsupported."""
    import pyarrow.parquet as pq  # noqa: PLC0415

    root = Path(root)
    if not is_lerobot(root):
        raise LeRobotError(f"{root} is not a LeRobot data set (no meta/info.json)")
    info = json.loads((root / "meta" / "info.json").read_text())
    version = str(info.get("codebase_version", ""))
    if version not in READABLE_VERSIONS:
        raise LeRobotError(f"{root}: codebase_version {version!r} is not supported; vla_ros reads "
                           f"{', '.join(READABLE_VERSIONS)}")
    action = info.get("features", {}).get("action")
    if action is None or list(action.get("shape", [])) != [7]:
        shape = None if action is None else action.get("shape")
        raise LeRobotError(f"{root}: the action feature has shape {shape}; vla_ros trains on 7-D end-effector deltas "
                           f"({', '.join(ACTION_NAMES)})")
    if version.startswith("v3"):
        table = pq.read_table(root / "meta" / "tasks.parquet").to_pylist()
        text_key = "task" if table and "task" in table[0] else "__index_level_0__"
        tasks = {int(r["task_index"]): str(r[text_key]) for r in table}
        files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        if not files:
            raise LeRobotError(f"{root}: meta/episodes/ holds no parquet file")
        episodes = [row for f in files for row in pq.read_table(f).to_pylist()]
    else:
        lines = lambda name: [json.loads(x) for x in (root / "meta" / name).read_text().splitlines() if x.strip()]  # noqa: E731
        tasks = {int(r["task_index"]): str(r["task"]) for r in lines("tasks.jsonl")}
        episodes = lines("episodes.jsonl")
    episodes.sort(key=lambda r: int(r["episode_index"]))
    return LeRobotSource(root, info, tasks, episodes)


def read_lerobot(root: str | Path, *, camera: str | None = None, image_size: int | None = None,
                 with_images: bool = True) -> Iterator[Episode]:
    """The episodes of a LeRobot v3.0 or v2.1 data set as Episodes, one at a time."""
    import pyarrow.parquet as pq  # noqa: PLC0415

    from vla_ros.core.preprocess import center_crop_resize  # noqa: PLC0415

    source = open_lerobot(root)
    info, root = source.info, source.root
    features = info["features"]
    fps = float(info["fps"])
    cameras = [k for k, f in features.items() if f.get("dtype") in ("video", "image")]
    if not cameras:
        raise LeRobotError(f"{root}: no camera feature (dtype video or image)")
    if camera is not None:
        wanted = image_key(camera) if not camera.startswith("observation.") else camera
        if wanted not in cameras:
            raise LeRobotError(f"{root}: no camera {camera}; it has {', '.join(cameras)}")
        cameras = [wanted] + [c for c in cameras if c != wanted]
    state = features.get("observation.state")
    if state is None or state.get("shape", [0])[0] < 6:
        raise LeRobotError(f"{root}: observation.state must hold at least the six arm joints, got "
                           f"{None if state is None else state.get('shape')}")
    kinematics = None
    tables: dict[Path, object] = {}
    videos: dict[Path, tuple[np.ndarray, float]] = {}
    chunks = int(info.get("chunks_size", CHUNKS_SIZE))
    for record in source.episodes:
        e = int(record["episode_index"])
        if source.v3:
            path = root / info["data_path"].format(chunk_index=int(record["data/chunk_index"]),
                                                   file_index=int(record["data/file_index"]))
        else:
            path = root / info["data_path"].format(episode_chunk=e // chunks, episode_index=e)
        if path not in tables:
            if not path.is_file():
                raise LeRobotError(f"{root}: data file {path.relative_to(root)} of episode {e} is missing")
            tables.clear()  # one data file in memory at a time
            tables[path] = pq.read_table(path)
        table = tables[path]
        rows = table.filter(_equals(table, "episode_index", e)) if source.v3 or "episode_index" in table.column_names \
            else table
        order = np.argsort(np.asarray(rows.column("frame_index").to_numpy(zero_copy_only=False)))
        column = lambda name: np.asarray(rows.column(name).to_pylist(), dtype=object)[order]  # noqa: E731
        actions = np.stack(column("action")).astype(np.float32)
        states = np.stack(column("observation.state")).astype(np.float32)
        timestamps = np.asarray(rows.column("timestamp").to_numpy(zero_copy_only=False), np.float64)[order]
        frames_by_camera = {}
        if with_images:
            for key in cameras:
                if features[key]["dtype"] == "image":
                    frames = np.stack([_decode_png(cell) for cell in column(key)])
                else:
                    if source.v3:
                        video_path = root / info["video_path"].format(
                            video_key=key, chunk_index=int(record[f"videos/{key}/chunk_index"]),
                            file_index=int(record[f"videos/{key}/file_index"]))
                        offset = float(record[f"videos/{key}/from_timestamp"])
                    else:
                        video_path = root / info["video_path"].format(episode_chunk=e // chunks, video_key=key,
                                                                      episode_index=e)
                        offset = 0.0
                    if video_path not in videos:
                        videos.clear()
                        videos[video_path] = _decode_video(video_path)
                    decoded, video_fps = videos[video_path]
                    video_fps = video_fps or fps
                    picks = np.round((offset + timestamps) * video_fps).astype(int)
                    if len(picks) and (picks.max() >= len(decoded) or picks.min() < 0):
                        raise LeRobotError(f"{root}: video {video_path.relative_to(root)} has {len(decoded)} frames; "
                                           f"episode {e} needs frame {int(picks.max())}")
                    frames = decoded[picks]
                if image_size:
                    frames = np.stack([center_crop_resize(f, image_size) for f in frames])
                frames_by_camera[key.removeprefix("observation.images.")] = frames
        if "observation.ee_pos" in rows.column_names and "observation.ee_quat" in rows.column_names:
            ee_pos = np.stack(column("observation.ee_pos")).astype(np.float32)
            ee_quat = np.stack(column("observation.ee_quat")).astype(np.float32)
        else:
            from vla_ros.robot.kinematics import ArmKinematics, rotmat_to_quat  # noqa: PLC0415

            kinematics = kinematics or ArmKinematics()
            poses = [kinematics.fk(q[:6].astype(np.float64)) for q in states]
            ee_pos = np.array([p[0] for p in poses], np.float32)
            ee_quat = np.array([rotmat_to_quat(p[1]) for p in poses], np.float32)
        gripper = states[:, 6:7] if states.shape[1] >= 7 else actions[:, 6:7]
        phases = np.asarray(column("phase"), np.int64) if "phase" in rows.column_names \
            else np.full(len(actions), -1, np.int64)
        tasks = record.get("tasks") or []
        instruction = str(tasks[0]) if len(tasks) else source.tasks.get(int(column("task_index")[0]), "")
        names = [k.removeprefix("observation.images.") for k in cameras]
        yield Episode(
            name=f"episode_{e:06d}", actions=actions, images=frames_by_camera.get(names[0]),
            joint_pos=states[:, :6].copy(), ee_pos=ee_pos, ee_quat=ee_quat, gripper=gripper.copy(),
            phases=phases, instruction=instruction, family=str(record.get("family") or ""),
            seed=int(record["seed"]) if record.get("seed") is not None else -1,
            success=bool(record.get("success", True)), camera=names[0],
            cameras={n: frames_by_camera[n] for n in names[1:] if n in frames_by_camera},
            source=f"{root}#{e}")


def _equals(table, name: str, value: int):
    import pyarrow.compute as pc  # noqa: PLC0415

    return pc.equal(table.column(name), value)


def load_lerobot_episodes(root: str | Path, *, successful_only: bool = True, with_images: bool = True,
                          image_size: int | None = None) -> list[Episode]:
    """Every episode of a LeRobot data set (successful ones only by default), e.g. for `vla-ros train`."""
    episodes = [e for e in read_lerobot(root, image_size=image_size, with_images=with_images)
                if e.success or not successful_only]
    if not episodes:
        raise LeRobotError(f"{root}: no {'successful ' if successful_only else ''}episodes")
    return episodes


def import_lerobot(root: str | Path, out: Path, *, force: bool = False, camera: str | None = None,
                   image_size: int | None = None, say: Callable[[str], None] = print) -> dict:
    """A LeRobot v3.0 / v2.1 data set → our HDF5 data set at `out` (atomically)."""
    from vla_ros.data.importing import write_dataset  # noqa: PLC0415

    source = open_lerobot(root)
    env_args = {"env_name": "imported", "type": "lerobot",
                "env_kwargs": {"source": str(root), "codebase_version": source.version,
                               "control_hz": float(source.info["fps"]), "image_size": image_size,
                               "robot_type": source.info.get("robot_type")}}
    first_camera: list[str] = []

    def episodes():
        for episode in read_lerobot(root, camera=camera, image_size=image_size):
            first_camera.append(episode.camera)
            say(f"  {episode.name}: {len(episode.actions)} steps, '{episode.instruction}'")
            yield episode

    env_args["env_kwargs"]["camera"] = camera
    summary = write_dataset(out, episodes(), env_args, force=force)
    return {**summary, "source": str(root), "codebase_version": source.version,
            "camera": first_camera[0] if first_camera else camera}
