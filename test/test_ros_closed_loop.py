"""The user's main job in CI: the full `widowx` graph (every node a process, the shipped policy, the MuJoCo
arm) picks up the named block on layouts never used for training.

Seeds are the first five pick layouts of the evaluation's unseen split (1 000 000 + 4k, family pick),
fixed here rather than chosen by outcome. Each episode gets 20 s (80 control steps at 5 Hz = 16 s).
"""

from __future__ import annotations

import time

import pytest
from ros_harness import LaunchedGraph, RosProbe

from vla_ros.commands.demo import DemoRun

pytestmark = [pytest.mark.ros, pytest.mark.slow]

SEEDS = [1_000_000 + 4 * k for k in range(5)]  # family FAMILIES[seed % 4] = pick
EPISODE_TIMEOUT_S = 20.0


def test_the_full_graph_picks_up_the_named_block_on_unseen_layouts(tmp_path):
    started = time.monotonic()
    graph = LaunchedGraph("widowx")
    probe = RosProbe("closed_loop_ci")
    outcomes = []
    try:
        run = DemoRun(probe, tmp_path)
        probe.spin_until(lambda: graph.process.poll() is None and run.ready(), 120, "every node of the graph")
        for seed in SEEDS:
            outcomes.append(run.run_task("pick", seed, EPISODE_TIMEOUT_S))
    finally:
        probe.close()
        code = graph.stop()
    elapsed = time.monotonic() - started
    summary = ", ".join(f"seed {o['seed']} '{o['instruction']}': "
                        f"{'success in ' + str(o['seconds']) + ' s' if o['success'] else 'no success'}"
                        for o in outcomes)
    print(f"closed loop through ROS in {elapsed:.0f} s: {summary}")
    assert code == 0, f"the graph exited with code {code}\n{graph.output[-3000:]}"
    assert sum(o["success"] for o in outcomes) >= 4, summary
