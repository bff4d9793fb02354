"""The `widowx` graph with a remote policy (`policy_backend:=remote`), every node a process, against a policy server in
another process (test/remote_fault_server.py) that is absent, killed, slow, wrong or refuses the key.

In each case vla_policy reports it (diagnostics: refusals by reason), the executor runs dry, the safety monitor's
policy lease holds the arm, nothing else reaches the arm controller, and after recovery only commands computed
from observations taken after the server came back are forwarded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from ros_harness import REPO, LaunchedGraph, RosProbe
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from vla_ros.core import topics
from vla_ros.core.messages import NS, stamp_ns
from vla_ros.core.ports import free_port
from vla_ros.nodes.qos import COMMANDS, DEFAULT, LATCHED

pytestmark = pytest.mark.ros

TASK = "pick up the red block"
KEY = "fault-test-key"
LEASE_S = 1.0  # the safety monitor's policy_lease in the widowx graph


class FaultServer:
    """test/remote_fault_server.py in its own process; the fault it plays is switched through a file."""

    def __init__(self, port: int, folder: Path):
        self.port, self.folder, self.process = port, folder, None
        self.mode_file = folder / "mode"

    def start(self, mode: str = "good", key: str = KEY) -> None:
        self.set(mode)
        (self.folder / "server_key").write_text(key)
        self.process = subprocess.Popen(
            [sys.executable, str(REPO / "test" / "remote_fault_server.py"), "--port", str(self.port),
             "--mode-file", str(self.mode_file), "--api-key-file", str(self.folder / "server_key")],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.process.stdout.readline().strip() == "listening"
        threading.Thread(target=self.process.stdout.read, daemon=True).start()

    def set(self, mode: str) -> None:
        self.mode_file.write_text(mode)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None


class Watch:
    """What reaches the arm controller, what the executor sends, the vetoes and vla_policy's diagnostics."""

    def __init__(self, probe: RosProbe):
        self.probe = probe
        self.outputs: list[float] = []  # monotonic receive times of /wx250s/arm_controller commands
        self.commands: list[tuple[float, int]] = []  # (receive time, observation stamp ns) of /vla/arm_command
        self.vetoes: list[tuple[float, str]] = []
        self.policy: dict[str, str] = {}
        node = probe.node
        node.create_subscription(JointTrajectory, topics.ARM_CONTROLLER,
                                 lambda m: self.outputs.append(time.monotonic()), COMMANDS)
        node.create_subscription(JointTrajectory, topics.ARM_COMMAND,
                                 lambda m: self.commands.append((time.monotonic(), stamp_ns(m.header.stamp))), COMMANDS)
        node.create_subscription(String, topics.SAFETY_VETO,
                                 lambda m: self.vetoes.append((time.monotonic(), m.data)), COMMANDS)
        node.create_subscription(DiagnosticArray, "/diagnostics", self.on_diagnostics, DEFAULT)
        self.tasks = probe.collect(String, topics.TASK, LATCHED)
        self.instruction = node.create_publisher(String, topics.INSTRUCTION, COMMANDS)

    def on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name.endswith("vla_policy"):
                self.policy = {kv.key: kv.value for kv in status.values} | {"_level": str(int.from_bytes(
                    status.level, "little") if isinstance(status.level, bytes) else status.level)}

    def ros_now(self) -> int:
        return self.probe.node.get_clock().now().nanoseconds

    def forwarded_since(self, since: float) -> list[float]:
        """Commands the monitor forwarded after `since`, leaving out its own hold commands (sent with a veto)."""
        holds = [t for t, _ in self.vetoes]
        return [t for t in self.outputs if t > since and not any(abs(t - h) < 0.1 for h in holds)]

    def refused(self, reason: str) -> int:
        return int(self.policy.get(f"remote_refused_{reason}", "0"))

    def wait_for_motion(self, timeout_s: float = 25.0) -> float:
        start = time.monotonic()
        self.probe.spin_until(lambda: len(self.forwarded_since(start)) >= 3, timeout_s, "commands reaching the arm")
        return start

    def wait_for_hold(self, since: float, timeout_s: float = 8.0) -> float:
        """When the monitor held the arm for the policy's silence (after `since`)."""
        self.probe.spin_until(lambda: any(t > since and "vla_policy" in r for t, r in self.vetoes), timeout_s,
                              "the safety monitor to hold the arm for the silent policy")
        return next(t for t, r in self.vetoes if t > since and "vla_policy" in r)

    def assert_holding(self, since: float, seconds: float = 1.0) -> None:
        """The executor ran dry and nothing but the monitor's hold reached the arm after the hold (`since`)."""
        self.probe.spin_for(seconds)
        assert not self.forwarded_since(since + 0.05), "a command reached the arm while the policy was failing"
        assert not [t for t, _ in self.commands if t > since + 0.05], "the executor kept commanding"


@pytest.fixture(scope="module")
def remote_graph(tmp_path_factory):
    folder = tmp_path_factory.mktemp("remote")
    (folder / "robot_key").write_text(KEY)
    port = free_port()
    server = FaultServer(port, folder)
    # The widowx graph as shipped, but a dying vla_policy does not stop the graph (the last test kills it).
    graph = yaml.safe_load((REPO / "config" / "widowx.yaml").read_text())
    for node in graph["nodes"]:
        node["required"] = node["required"] and node["name"] != "vla_policy"
    (folder / "widowx_remote.yaml").write_text(yaml.safe_dump(graph))
    launched = LaunchedGraph(str(folder / "widowx_remote.yaml"), "policy_backend:=remote", f"policy_url:=ws://127.0.0.1:{port}",
                             f"api_key_file:={folder / 'robot_key'}", "request_timeout:=0.4")
    probe = RosProbe("remote_fault_probe")
    watch = Watch(probe)
    try:
        probe.spin_until(lambda: watch.instruction.get_subscription_count() > 0
                         and probe.node.count_publishers(topics.ARM_CONTROLLER) > 0, 90, "the graph")
        probe.wait_for_reports(["widowx_sim", "camera_ingest", "instruction_listener", "vla_policy",
                                "chunk_executor", "safety_monitor"], timeout_s=90)
        yield launched, server, watch
    finally:
        probe.close()
        server.kill()
        launched.stop()


def test_with_the_server_absent_the_arm_holds_and_moves_once_it_is_up(remote_graph):
    launched, server, watch = remote_graph
    assert "started action_decoder" not in launched.output  # continuous chunks: no decoder in the graph
    assert "backend remote at ws://127.0.0.1" in launched.output  # vla_policy loads no model
    watch.instruction.publish(String(data=TASK))
    watch.probe.spin_until(lambda: watch.tasks and watch.tasks[-1].data == TASK, 10, "the task")
    task_set = time.monotonic()
    watch.probe.spin_until(lambda: watch.refused("unreachable") > 0 and watch.policy.get("_level") == "2", 15,
                           "vla_policy to report the absent server")
    held = watch.wait_for_hold(task_set - 0.1)
    watch.assert_holding(held)
    assert not watch.forwarded_since(task_set), "the arm moved without a policy"
    back_ros = watch.ros_now()
    server.start("good")
    watch.wait_for_motion()
    recovered = time.monotonic()
    watch.probe.spin_for(1.0)
    assert_only_new_observations(watch, held, back_ros)
    assert watch.policy.get("remote_connected") == "true" and float(watch.policy["remote_rtt_ms_p50"]) > 0
    assert recovered - held < 20


def assert_only_new_observations(watch: Watch, held: float, since_ros_ns: int) -> None:
    """Every command forwarded after the hold answered an executor command computed from an observation taken
    after the server came back (`since_ros_ns`); older ones, if the executor sent any, the monitor dropped."""
    after = watch.forwarded_since(held + 0.05)
    assert after, "nothing reached the arm after the server came back"
    for forwarded in after:
        answered = [stamp for received, stamp in watch.commands if received <= forwarded + 0.02]
        assert answered and answered[-1] >= since_ros_ns, (
            f"a command from an observation {(since_ros_ns - answered[-1]) / NS:.2f} s older than the recovery "
            "reached the arm")


def test_a_server_killed_mid_task_makes_the_arm_hold(remote_graph):
    _, server, watch = remote_graph
    watch.wait_for_motion()
    closed_before = watch.refused("closed") + watch.refused("unreachable")
    server.kill()
    killed = time.monotonic()
    held = watch.wait_for_hold(killed)
    last = max(watch.forwarded_since(0))
    assert last - killed < 0.9, f"commands reached the arm {last - killed:.2f} s after the server died"
    assert held - killed < LEASE_S + 0.9, f"the monitor held {held - killed:.2f} s after the server died"
    watch.assert_holding(held)
    watch.probe.spin_until(lambda: watch.refused("closed") + watch.refused("unreachable") > closed_before, 5,
                           "vla_policy to report the broken connection")
    back = watch.ros_now()
    server.start("good")
    watch.wait_for_motion()
    watch.probe.spin_for(0.5)
    assert_only_new_observations(watch, held, back)


@pytest.mark.parametrize("mode, reason", [("wrong_shape", "wrong_shape"), ("nan", "non_finite"),
                                          ("joint_space", "wrong_action_space"), ("stale", "stale_stamp"),
                                          ("slow", "timeout")])
def test_a_bad_or_slow_reply_is_refused_and_the_arm_holds_until_good_replies_return(remote_graph, mode, reason):
    _, server, watch = remote_graph
    if server.process is None:
        server.start("good")
    server.set("good")
    watch.wait_for_motion()
    before = watch.refused(reason)
    server.set(mode)
    faulted = time.monotonic()
    held = watch.wait_for_hold(faulted)
    watch.assert_holding(held)
    watch.probe.spin_until(lambda: watch.refused(reason) > before, 5, f"vla_policy to count a {reason} refusal")
    assert reason in watch.policy.get("remote_last_refusal", "") or mode == "slow"
    back = watch.ros_now()
    server.set("good")
    watch.wait_for_motion()
    watch.probe.spin_for(0.5)
    assert_only_new_observations(watch, held, back)


def test_a_refused_api_key_holds_the_arm(remote_graph):
    _, server, watch = remote_graph
    server.kill()
    server.start("good", key="another-key")
    restarted = time.monotonic()
    held = watch.wait_for_hold(restarted - 0.5)
    watch.probe.spin_until(lambda: watch.refused("auth") > 0, 15, "vla_policy to report the refused key")
    assert "HTTP 401" in watch.policy.get("remote_last_refusal", "")
    watch.assert_holding(max(held, restarted))
    server.kill()
    back = watch.ros_now()
    server.start("good")
    watch.wait_for_motion()
    watch.probe.spin_for(0.5)
    assert_only_new_observations(watch, max(held, restarted), back)


def test_the_policy_node_killed_mid_task_makes_the_arm_hold_at_once(remote_graph):
    """Remote or not, vla_policy's token writer is leased: its death holds the arm within the liveliness lease."""
    launched, server, watch = remote_graph
    if server.process is None:
        server.start("good")
    server.set("good")
    watch.wait_for_motion()
    os.kill(launched.pid("vla_policy"), signal.SIGKILL)
    killed = time.monotonic()
    watch.probe.spin_until(lambda: any(t > killed and "vla_policy is gone" in r for t, r in watch.vetoes), 5,
                           "the hold after vla_policy's death")
    hold_after = next(t for t, r in watch.vetoes if t > killed and "vla_policy is gone" in r) - killed
    assert hold_after < 0.5, f"hold {hold_after:.3f} s after vla_policy died"
