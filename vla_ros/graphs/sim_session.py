"""Tasks on the simulated `widowx` graph, through ROS only: what `vla-ros demo`, the closed-loop benchmarks and
the multi-process tests do with a running graph.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from vla_ros.core import topics

GRAPH_NODES = ("widowx_sim", "camera_ingest", "instruction_listener", "vla_policy", "action_decoder",
               "chunk_executor", "safety_monitor")


class SimGraphSession:
    """Tasks on a running simulated graph: reset the workcell, send the instruction, wait for success, say stop.

    Every camera frame is kept with the instruction and the outcome so far, for a video.
    """

    def __init__(self, probe, out: Path):
        from diagnostic_msgs.msg import DiagnosticArray  # noqa: PLC0415
        from rclpy.parameter_client import AsyncParameterClient  # noqa: PLC0415
        from sensor_msgs.msg import Image  # noqa: PLC0415
        from std_msgs.msg import String  # noqa: PLC0415
        from std_srvs.srv import Trigger  # noqa: PLC0415
        from trajectory_msgs.msg import JointTrajectory  # noqa: PLC0415

        from vla_ros.nodes.qos import COMMANDS, DEFAULT, LATCHED, SENSOR  # noqa: PLC0415

        self.probe, self.out = probe, out
        node = probe.node
        self.String = String
        self.frames: list[tuple[np.ndarray, str, str]] = []
        self.caption, self.status = "", ""
        self.chunk_flash = 0.0
        self.sim_status: dict[str, str] = {}
        self.reporting: set[str] = set()
        self.tasks = probe.collect(String, topics.TASK, LATCHED)
        self.vetoes = probe.collect(String, topics.SAFETY_VETO, COMMANDS)
        node.create_subscription(Image, topics.CAMERA_IMAGE, self.on_image, SENSOR)
        node.create_subscription(JointTrajectory, topics.ACTION_CHUNK,
                                 lambda _m: setattr(self, "chunk_flash", time.monotonic()), COMMANDS)
        node.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, self.on_diagnostics, DEFAULT)
        self.instruction_pub = node.create_publisher(String, topics.INSTRUCTION, COMMANDS)
        self.reset = node.create_client(Trigger, topics.SIM_RESET_SERVICE)
        self.sim_parameters = AsyncParameterClient(node, "widowx_sim")

    def on_image(self, msg) -> None:
        from vla_ros.core.image_msgs import image_to_rgb8  # noqa: PLC0415

        marker = "| new chunk" if time.monotonic() - self.chunk_flash < 0.25 else ""
        self.frames.append((image_to_rgb8(msg), self.caption, f"{self.status} {marker}".strip()))

    def on_diagnostics(self, msg) -> None:
        for status in msg.status:
            self.reporting.add(status.name.rsplit("/", 1)[-1])
            if status.name.endswith("widowx_sim"):
                self.sim_status = {kv.key: kv.value for kv in status.values}

    def ready(self, nodes=GRAPH_NODES) -> bool:
        """Every node of the graph has reported on /diagnostics, and the simulator's services answer."""
        return (set(nodes) <= self.reporting and self.reset.service_is_ready()
                and self.sim_parameters.services_are_ready() and bool(self.tasks)
                and self.instruction_pub.get_subscription_count() > 0)

    def run_task(self, family: str, seed: int, timeout_s: float) -> dict:
        from rclpy.parameter import Parameter  # noqa: PLC0415
        from std_srvs.srv import Trigger  # noqa: PLC0415

        future = self.sim_parameters.set_parameters([Parameter("family", value=family), Parameter("seed", value=seed)])
        self.probe.spin_until(future.done, 10, "the simulator's parameters")
        future = self.reset.call_async(Trigger.Request())
        self.probe.spin_until(future.done, 10, "the simulator's reset")
        self.sim_status = {}  # judge only reports about this episode (the same instruction may come again)
        instruction = future.result().message.split("suggested task '", 1)[1].rstrip("'")
        self.caption, self.status = instruction, "running"
        print(f"[demo] {family}: seed {seed}, instruction '{instruction}'", flush=True)
        self.instruction_pub.publish(self.String(data=instruction))
        self.probe.spin_until(lambda: self.tasks and self.tasks[-1].data == instruction, 15, "the task")
        started, vetoes = time.monotonic(), len(self.vetoes)
        succeeded = False
        while time.monotonic() - started < timeout_s:
            self.probe.spin_for(0.2)
            if (self.sim_status.get("seed") == str(seed) and self.sim_status.get("task") == instruction
                    and self.sim_status.get("success") == "true"):
                succeeded = True
                break
        elapsed = time.monotonic() - started
        self.status = f"SUCCESS after {elapsed:.1f} s" if succeeded else f"timed out after {timeout_s:.0f} s"
        self.probe.spin_for(1.0)  # a second of the outcome on video
        self.instruction_pub.publish(self.String(data="stop"))
        self.probe.spin_until(lambda: self.tasks[-1].data == "", 10, "the stop")
        print(f"[demo] {family}: {self.status}", flush=True)
        return {"family": family, "seed": seed, "instruction": instruction, "success": succeeded,
                "seconds": round(elapsed, 2), "vetoes": [v.data for v in self.vetoes[vetoes:]]}
