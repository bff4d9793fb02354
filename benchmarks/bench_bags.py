"""Playback timing fidelity of `vla-ros bag play`: play a bag while `vla-ros bag record` records it.

A synthetic bag of 300 messages (String and 64×64 Image, irregular gaps of 2–50 ms) is played at rates 1 and 2
and recorded again; the recorded receive times are compared with the original timestamps (scaled by the rate)
after removing the constant offset. Writes runs/bench_bags/results.json. Usage:
    python benchmarks/bench_bags.py [--messages 300]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from vla_ros.bags.message_types import typestore
from vla_ros.bags.reading import BagReader
from vla_ros.bags.writing import BagWriter

STRING, IMAGE = "std_msgs/msg/String", "sensor_msgs/msg/Image"


def synthetic_bag(path: Path, count: int) -> None:
    store = typestore()
    types = store.types
    rng = random.Random(0)
    stamp = 10**18
    with BagWriter(path) as writer:
        writer.add_topic("/chatter", STRING)
        writer.add_topic("/camera/image_raw", IMAGE)
        for index in range(count):
            stamp += rng.choice([2, 5, 10, 20, 33, 50]) * 1_000_000
            if index % 2:
                sec, nanosec = divmod(stamp, 1_000_000_000)
                header = types["std_msgs/msg/Header"](stamp=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                                                      frame_id="camera")
                image = types[IMAGE](header=header, height=64, width=64, encoding="rgb8", is_bigendian=0, step=192,
                                     data=np.full(64 * 64 * 3, index % 255, np.uint8))
                writer.write("/camera/image_raw", stamp, bytes(store.serialize_cdr(image, IMAGE)))
            else:
                writer.write("/chatter", stamp, bytes(store.serialize_cdr(types[STRING](data=f"m{index}"), STRING)))


def stamps(path: Path) -> np.ndarray:
    with BagReader(path) as reader:
        return np.array([message.timestamp_ns for message in reader.messages()], dtype=np.int64)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--out", default="runs/bench_bags")
    args = parser.parse_args()
    os.environ.setdefault("ROS_DOMAIN_ID", str(180 + os.getpid() % 20))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"messages": args.messages, "load_average": os.getloadavg()[0]}
    cli = [sys.executable, "-m", "vla_ros.cli", "bag"]
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "source"
        synthetic_bag(source, args.messages)
        for rate in (1.0, 2.0):
            recorded = Path(tmp) / f"recorded_{rate:g}"
            recorder = subprocess.Popen(cli + ["record", "--topics", "/chatter", "/camera/image_raw", "-o",
                                               str(recorded), "--max-messages", str(args.messages), "--wait", "30"],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            subprocess.run(cli + ["play", str(source), "--rate", str(rate), "--wait-for-subscribers", "30"],
                           capture_output=True, text=True, check=True)
            recorder.communicate(timeout=120)
            original, got = stamps(source), stamps(recorded)
            if len(got) != len(original):
                raise SystemExit(f"recorded {len(got)} of {len(original)} messages at rate {rate}")
            drift = (got - got[0]) - (original - original[0]) / rate
            error_ms = np.abs(drift - np.median(drift)) / 1e6
            results[f"rate_{rate:g}"] = {"median_ms": float(np.median(error_ms)),
                                         "p95_ms": float(np.percentile(error_ms, 95)),
                                         "max_ms": float(error_ms.max())}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
