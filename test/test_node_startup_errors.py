"""A node refused at start-up (bad parameter, missing model) shuts ROS down without a second error.

rclpy's shutdown destroys every node the context still holds, the half-built one included while the
ParameterError's traceback keeps it alive; its destroy_node() must work on whatever __init__ got to.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.ros

SCRIPT = """
import sys
import rclpy
from vla_ros.nodes.parameters import ParameterError
from vla_ros.nodes.{module} import {cls}
rclpy.init(args=["--ros-args", "-p", "{parameter}"])
try:
    {cls}()
except ParameterError as exc:
    rclpy.try_shutdown()  # inside the handler: the half-built node is alive and gets destroyed
    print("refused:", exc)
    sys.exit(0)
sys.exit("the node accepted {parameter}")
"""


@pytest.mark.parametrize(("module", "cls", "parameter"), [
    ("vla_policy", "VlaPolicy", "model_path:=/nonexistent/policy"),
    ("widowx_sim", "WidowXSim", "camera:=no_such_camera"),
    ("chunk_executor", "ChunkExecutorNode", "control_rate:=-5.0"),
    ("safety_monitor", "SafetyMonitor", "max_obs_age:=-1.0"),
    ("teleop", "TeleopNode", "mapping:=/nonexistent/pad.yaml"),
])
def test_a_node_refused_at_start_up_shuts_down_cleanly(module, cls, parameter):
    done = subprocess.run([sys.executable, "-c", SCRIPT.format(module=module, cls=cls, parameter=parameter)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "refused:" in done.stdout, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
