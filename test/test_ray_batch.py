"""Batch work on Ray: `vla-ros data generate --ray` and `vla-ros eval --ray` on a local cluster give what a local run
gives for the same seeds (the evaluation samples at temperature 0.1: each episode has its own sampling stream, so it
comes out the same whichever worker runs it, in whatever order)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
POLICY = REPO / "models" / "policy" / "vla"


BOTH_ON_ONE_CLUSTER = """
import json, sys
from pathlib import Path
import numpy as np
import ray
from vla_ros.data.episodes import load_episodes
from vla_ros.data.generate import generate_dataset
from vla_ros.policy.evaluation import evaluate

out = Path(sys.argv[1])
ray.init(address="local", include_dashboard=False, num_cpus=2)  # one cluster for both (Ray starts in 5-8 s)
report = {}
from vla_ros.policy.runners import PolicyRunner
runner = PolicyRunner(sys.argv[2], "builtin-torch")  # sampling at temperature 0.1: each episode its own stream
for where in ("local", "ray"):
    generate_dataset(out / where, 3, seed=70, image_size=32, max_steps=30, show_progress=False,
                     ray_address="local" if where == "ray" else None)
    evaluate(runner, "unseen", 3, out_dir=out / f"eval_{where}", progress=False, max_steps=9,
             ray_address="local" if where == "ray" else None)
local, on_ray = (load_episodes(out / w, successful_only=False) for w in ("local", "ray"))
report["episodes"] = [e.name for e in on_ray]
report["data_identical"] = len(local) == 3 and all(
    (a.name, a.instruction, a.seed, a.success) == (b.name, b.instruction, b.seed, b.success)
    and np.array_equal(a.actions, b.actions) and np.array_equal(a.images, b.images) for a, b in zip(local, on_ray))
details = [json.loads((out / f"eval_{w}" / "results.json").read_text())["episodes_detail"] for w in ("local", "ray")]
report["eval_identical"] = details[0] == details[1] and len(details[0]) == 3
report["inferences"] = [e["inferences"] for e in details[1]]
report["workers"] = json.loads((out / "ray" / "generation.json").read_text())["workers"]
print(json.dumps(report))
"""


def test_data_generation_and_evaluation_on_ray_give_what_a_local_run_gives(tmp_path):
    # Ray writes ~/.ray/auth_token on first start, and its session folder needs a short path.
    ray_dir = tempfile.mkdtemp(prefix="vr", dir="/tmp")
    env = {**os.environ, "HOME": str(tmp_path), "RAY_USAGE_STATS_ENABLED": "0", "RAY_TMPDIR": ray_dir}
    try:
        done = subprocess.run([sys.executable, "-c", BOTH_ON_ONE_CLUSTER, str(tmp_path), str(POLICY)], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=300)
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["data_identical"] and report["eval_identical"], report
    assert report["workers"] == "ray local" and report["inferences"] == [3, 3, 3]


def test_both_commands_offer_the_ray_option():
    from ros_harness import run_cli

    for command in (["eval"], ["data", "generate"]):
        assert "--ray ADDRESS" in run_cli(*command, "--help").stdout
