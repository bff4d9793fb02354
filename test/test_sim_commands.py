"""`vla-ros sim run` writes a watchable rollout and reports success; bad input gets one clear sentence."""

import json
import subprocess
import sys

import imageio.v2 as imageio


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "vla_ros.cli", *args], capture_output=True, text=True, timeout=120)


def test_sim_run_expert_writes_video(tmp_path):
    video = tmp_path / "out.mp4"
    result = run_cli("sim", "run", "--task", "Put the green block on the towel", "--seed", "4",
                     "--video", str(video), "--video-size", "160")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["success"] is True and report["family"] == "place"
    reader = imageio.get_reader(str(video), "ffmpeg")
    first = reader.get_data(0)
    assert reader.count_frames() == report["steps"] + 5
    assert first.shape[1] == 160 and first.std() > 10
    reader.close()


def test_sim_run_rejects_bad_input(tmp_path):
    bad_task = run_cli("sim", "run", "--task", "make coffee")
    assert bad_task.returncode != 0 and "Traceback" not in bad_task.stderr
    assert "make coffee" in bad_task.stderr
    bad_video = run_cli("sim", "run", "--video", str(tmp_path / "x.avi"))
    assert bad_video.returncode != 0 and ".mp4 or .gif" in bad_video.stderr


def test_help_is_quick_and_complete():
    result = run_cli("data", "generate", "--help")
    assert result.returncode == 0 and "--workers" in result.stdout and "seed" in result.stdout
