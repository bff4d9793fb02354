"""Bag files without DDS: the writer's no-half-written-output rule, metadata ros2 bag info reads, bad bags
answered in one sentence, and simulated episodes written as bags that match the HDF5 data set."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from ros_harness import REPO

from vla_ros.bags.errors import BagError
from vla_ros.bags.message_types import typestore
from vla_ros.bags.reading import BagReader
from vla_ros.bags.writing import BagWriter

STRING = "std_msgs/msg/String"
IMAGE = "sensor_msgs/msg/Image"


def run_cli(*args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vla_ros.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout_s)


def string_cdr(text: str) -> bytes:
    store = typestore()
    return bytes(store.serialize_cdr(store.types[STRING](data=text), STRING))


def image_cdr(stamp_ns: int, value: int = 7) -> bytes:
    store = typestore()
    t = store.types
    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
    header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                                      frame_id="camera")
    image = t[IMAGE](header=header, height=2, width=2, encoding="rgb8", is_bigendian=0, step=6,
                     data=np.full(12, value, np.uint8))
    return bytes(store.serialize_cdr(image, IMAGE))


def small_bag(path: Path, storage: str = "mcap", count: int = 20, image_stamps=None) -> Path:
    """A bag with /chatter (String) and /camera/image_raw (Image) every 10 ms."""
    with BagWriter(path, storage=storage) as writer:
        writer.add_topic("/chatter", STRING)
        writer.add_topic("/camera/image_raw", IMAGE)
        for i in range(count):
            t = 1_000_000_000 + i * 10_000_000
            writer.write("/chatter", t, string_cdr(f"message {i}"))
            stamp = image_stamps[i] if image_stamps is not None else t
            writer.write("/camera/image_raw", t + 1, image_cdr(stamp))
    return path


def storage_file(bag: Path) -> Path:
    return next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_written_bag_reads_back_and_its_metadata_is_what_ros2_bag_info_parses(tmp_path, storage):
    bag = small_bag(tmp_path / "bag", storage)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag"]  # no .partial left behind
    with BagReader(bag) as reader:
        messages = list(reader.messages())
        assert reader.info.storage == storage
        assert reader.info.duration_ns == 19 * 10_000_000 + 1
    assert [m.data for m in messages if m.topic == "/chatter"] == [string_cdr(f"message {i}") for i in range(20)]
    # The fields and types rosbag2's metadata reader (rosbag2_storage yaml.hpp, version 9) requires.
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 9 and meta["storage_identifier"] == storage
    assert meta["message_count"] == 40 and isinstance(meta["duration"]["nanoseconds"], int)
    assert isinstance(meta["starting_time"]["nanoseconds_since_epoch"], int)
    assert [(bag / name).is_file() for name in meta["relative_file_paths"]] == [True]
    assert meta["compression_format"] == "" and meta["compression_mode"] == ""
    assert isinstance(meta["custom_data"], dict) and isinstance(meta["ros_distro"], str)
    assert [f["path"] for f in meta["files"]] == meta["relative_file_paths"]
    for entry in meta["topics_with_message_count"]:
        topic = entry["topic_metadata"]
        assert set(topic) >= {"name", "type", "serialization_format", "offered_qos_profiles", "type_description_hash"}
        assert topic["type_description_hash"].startswith("RIHS01_") and entry["message_count"] == 20


def test_a_failed_write_leaves_no_bag_and_no_partial(tmp_path):
    with pytest.raises(RuntimeError):
        with BagWriter(tmp_path / "bag") as writer:
            writer.add_topic("/chatter", STRING)
            writer.write("/chatter", 1, string_cdr("half"))
            assert (tmp_path / "bag.partial").is_dir() and not (tmp_path / "bag").exists()
            raise RuntimeError("recording failed")
    assert list(tmp_path.iterdir()) == []


def test_writer_refuses_existing_outputs_and_unknown_types(tmp_path):
    small_bag(tmp_path / "bag")
    with pytest.raises(BagError, match="already exists"):
        BagWriter(tmp_path / "bag")
    (tmp_path / "other.partial").mkdir()
    with pytest.raises(BagError, match="unfinished earlier recording"):
        BagWriter(tmp_path / "other")
    with BagWriter(tmp_path / "third") as writer, pytest.raises(BagError, match="topic /x: message type foo_msgs"):
        writer.add_topic("/x", "foo_msgs/msg/Bar")


def unknown_type_bag(path: Path) -> Path:
    """A bag with /chatter (String) and /odd of a type nobody installed (definition given by hand)."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        chatter = writer.add_connection("/chatter", STRING, typestore=typestore())
        odd = writer.add_connection("/odd", "foo_msgs/msg/Bar", msgdef="string data\n", rihs01="RIHS01_" + "0" * 64)
        for i in range(5):
            writer.write(chatter, 1_000 + i * 1_000_000, string_cdr(f"m{i}"))
            writer.write(odd, 2_000 + i * 1_000_000, string_cdr("odd"))
    return path


def truncated(bag: Path, keep: float) -> Path:
    data = storage_file(bag).read_bytes()
    storage_file(bag).write_bytes(data[: int(len(data) * keep)])
    return bag


def garbled(bag: Path) -> Path:
    data = bytearray(storage_file(bag).read_bytes())
    middle = len(data) // 3
    data[middle : middle + 400] = b"\xab" * 400
    storage_file(bag).write_bytes(bytes(data))
    return bag


def unfinished(tmp_path: Path) -> Path:
    small_bag(tmp_path / "done")
    partial = tmp_path / "rec.partial"
    partial.mkdir()
    inner = partial / "rec"
    inner.mkdir()
    shutil.copy(storage_file(tmp_path / "done"), inner / "rec.mcap")
    return partial


BAD_BAGS = {
    "missing": (lambda tmp: tmp / "nope", "does not exist"),
    "not a bag": (lambda tmp: (tmp / "x.txt").write_text("hi") and tmp / "x.txt", "is not a rosbag2 bag"),
    "truncated mcap": (lambda tmp: truncated(small_bag(tmp / "b"), 0.6), "truncated or corrupt"),
    "truncated sqlite3": (lambda tmp: truncated(small_bag(tmp / "b", "sqlite3"), 0.5), "truncated or corrupt"),
    "empty storage file": (lambda tmp: truncated(small_bag(tmp / "b"), 0.0), "truncated or corrupt"),
    "garbled mcap": (lambda tmp: garbled(small_bag(tmp / "b", count=200)), "corrupt"),
    "garbled sqlite3": (lambda tmp: garbled(small_bag(tmp / "b", "sqlite3", count=200)), "corrupt"),
    "unfinished recording": (unfinished, "unfinished recording"),
    "storage file without metadata": (
        lambda tmp: (small_bag(tmp / "b"), (tmp / "b" / "metadata.yaml").unlink())[0], "ros2 bag reindex"),
}


@pytest.mark.parametrize("case", sorted(BAD_BAGS))
def test_bad_bags_get_one_sentence_and_a_nonzero_exit(tmp_path, case):
    make, expected = BAD_BAGS[case]
    bag = make(tmp_path)
    result = run_cli("bag", "play", str(bag))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vla-ros bag play: ") and expected in lines[0], lines
    assert str(bag) in lines[0]


@pytest.mark.parametrize(
    "arguments, expected",
    [
        (["--topics", "/nope"], "topic /nope is not in bag"),
        (["--topics", "/odd"], "topic /odd cannot be played: message type foo_msgs/msg/Bar is not installed"),
        (["--rate", "0"], "expected a number > 0"),
        (["--start-offset", "60"], "start offset 60.0 s is past the end of the bag"),
        (["--remap", "/chatter=/other"], "remap '/chatter=/other' is not of the form"),
    ],
)
def test_bad_play_options_name_the_input(tmp_path, arguments, expected):
    result = run_cli("bag", "play", str(unknown_type_bag(tmp_path / "bag")), *arguments)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert expected in result.stderr, result.stderr


def test_a_corrupt_chunk_found_while_reading_names_the_last_good_topic(tmp_path):
    bag = garbled(small_bag(tmp_path / "b", count=300))
    with pytest.raises(BagError, match=r"corrupt") as error:
        with BagReader(bag) as reader:
            for _ in reader.messages():
                pass
    assert str(bag) in str(error.value)


def test_out_of_order_header_stamps_are_a_warning_naming_the_topic(tmp_path):
    stamps = [1_000_000_000 + i * 10_000_000 for i in range(20)]
    stamps[7] -= 50_000_000  # this frame claims to be 50 ms older than its predecessor
    bag = small_bag(tmp_path / "bag", image_stamps=stamps)
    result = run_cli("bag", "info", str(bag), "--json")
    assert result.returncode == 0, result.stderr
    assert "topic /camera/image_raw: header.stamp goes back by 40.0 ms" in result.stderr
    assert '"backwards": 1' in result.stdout


def test_data_generate_bags_match_the_hdf5_episodes(tmp_path):
    result = run_cli("data", "generate", "--episodes", "2", "--out", str(tmp_path), "--bags", "--image-size", "48",
                     "--max-steps", "25", timeout_s=120)
    assert result.returncode == 0, result.stderr
    bags = sorted((tmp_path / "bags").iterdir())
    assert [b.name for b in bags] == ["episode_000000", "episode_000001"]
    store = typestore()
    with h5py.File(tmp_path / "dataset.hdf5") as f:
        for index, bag in enumerate(bags):
            demo = f["data"][f"demo_{index}"]
            with BagReader(bag) as reader:
                by_topic: dict[str, list] = {}
                for m in reader.messages():
                    by_topic.setdefault(m.topic, []).append((m.timestamp_ns, store.deserialize_cdr(m.data, m.msgtype)))
            steps = len(demo["actions"])
            assert by_topic["/vla/instruction"][0][1].data == demo.attrs["instruction"]
            assert by_topic["/vla/task"][0][1].data == demo.attrs["instruction"].lower().rstrip(".")
            images = by_topic["/camera/image_raw"]
            assert len(images) == steps + 1  # the observation before each action, and the final one
            for k in range(steps):
                pixels = images[k][1].data.reshape(48, 48, 3)
                np.testing.assert_array_equal(pixels, demo["obs"]["agentview_image"][k])
                np.testing.assert_allclose(by_topic["/vla/expert_action"][k][1].data, demo["actions"][k])
                joints = by_topic["/joint_states"][k][1]
                np.testing.assert_allclose(joints.position[:6], demo["obs"]["joint_pos"][k], atol=1e-6)
                assert list(joints.name)[-1] == "gripper"
            gaps = np.diff([t for t, _ in images])
            assert set(gaps.tolist()) == {200_000_000}  # 5 Hz
            assert images[0][1].header.stamp.sec * 10**9 + images[0][1].header.stamp.nanosec == images[0][0]
            meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
            assert meta["custom_data"]["steps"] == str(steps)
    again = run_cli("data", "generate", "--episodes", "1", "--out", str(tmp_path), "--bags")
    assert again.returncode != 0 and "already exists" in again.stderr and "Traceback" not in again.stderr

