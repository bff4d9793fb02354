"""Running a graph's nodes as processes, without a ROS 2 distribution's launch system.

`run_graph` mirrors what `ros2 launch` does with the same graph file: one process per node with its name,
parameters and remappings; output prefixed with the node name; Ctrl-C stops everything; a required
node's exit stops the graph; the exit code is non-zero when any node failed. `LaunchedGraph` runs
`vla-ros launch` itself in a subprocess, for the demo, the benchmarks and the multi-process tests.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from vla_ros.graphs.spec import PACKAGE, GraphError, ResolvedNode


def node_command_line(node: ResolvedNode, params_dir: Path) -> list[str]:
    """The command line that runs one node of the graph."""
    module = f"{PACKAGE}.nodes.{node.executable}"
    if node.package != PACKAGE or importlib.util.find_spec(module) is None:
        raise GraphError(
            f"node '{node.name}': executable '{node.executable}' of package '{node.package}' is not a vla_ros node; "
            "without a ROS 2 distribution only vla_ros nodes can be launched"
        )
    command = [sys.executable, "-m", module, "--ros-args", "-r", f"__node:={node.name}"]
    if node.parameters:
        params_file = params_dir / f"{node.name}.yaml"
        params_file.write_text(yaml.safe_dump({"/**": {"ros__parameters": node.parameters}}), encoding="utf-8")
        command += ["--params-file", str(params_file)]
    for source, target in node.remappings:
        command += ["-r", f"{source}:={target}"]
    return command


@dataclass
class RunningNode:
    node: ResolvedNode
    process: subprocess.Popen
    reader: threading.Thread
    returncode: int | None = None
    stopped_by_us: bool = False
    escalated: list[str] = field(default_factory=list)


class GraphLauncher:
    """Starts, watches and stops the processes of one resolved graph."""

    def __init__(self, nodes: list[ResolvedNode], grace_s: float = 5.0, out=None):
        self.nodes = nodes
        self.grace_s = grace_s
        self.out = out or sys.stdout
        self.running: list[RunningNode] = []
        self._stop = threading.Event()
        self._print_lock = threading.Lock()

    def report(self, text: str) -> None:
        with self._print_lock:
            print(f"[vla-ros launch] {text}", file=self.out, flush=True)

    def _pump(self, name: str, stream) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            with self._print_lock:
                print(f"[{name}] {line}", file=self.out, flush=True)
        stream.close()

    def start(self, params_dir: Path) -> None:
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.setdefault("RCUTILS_COLORIZED_OUTPUT", "0")
        commands = [(node, node_command_line(node, params_dir)) for node in self.nodes]  # all errors before any start
        for node, command in commands:
            process = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # our Ctrl-C handling decides when children stop
            )
            reader = threading.Thread(target=self._pump, args=(node.name, process.stdout), daemon=True)
            reader.start()
            self.running.append(RunningNode(node, process, reader))
            self.report(f"started {node.name} (pid {process.pid})")

    def request_stop(self, *_args) -> None:
        self._stop.set()

    def _signal_all(self, sig: int, members: list[RunningNode]) -> None:
        for member in members:
            if member.process.poll() is None:
                member.stopped_by_us = True
                try:
                    os.killpg(member.process.pid, sig)
                except ProcessLookupError:
                    pass

    def stop_all(self) -> None:
        """SIGINT, then SIGTERM, then SIGKILL, each after a grace period."""
        for sig, wait_s in ((signal.SIGINT, self.grace_s), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
            alive = [m for m in self.running if m.process.poll() is None]
            if not alive:
                break
            if sig != signal.SIGINT:
                for member in alive:
                    member.escalated.append(signal.Signals(sig).name)
                self.report(f"{', '.join(m.node.name for m in alive)} did not stop: sending {signal.Signals(sig).name}")
            self._signal_all(sig, alive)
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and any(m.process.poll() is None for m in alive):
                time.sleep(0.05)

    def watch(self) -> None:
        """Block until Ctrl-C / SIGTERM, a required node's exit, or every node's exit."""
        reported: set[int] = set()
        while not self._stop.is_set():
            for index, member in enumerate(self.running):
                code = member.process.poll()
                if code is None or index in reported:
                    continue
                reported.add(index)
                self.report(f"{member.node.name} exited with code {code}")
                if member.node.required:
                    self.report(f"{member.node.name} is required: stopping the graph")
                    return
            if len(reported) == len(self.running):
                return
            time.sleep(0.05)
        self.report("stopping the graph")

    def failures(self) -> list[str]:
        failed = []
        for member in self.running:
            member.reader.join(timeout=2.0)
            code = member.process.returncode
            # A node we asked to stop with SIGINT may end on the signal itself: that is a clean stop.
            clean = code == 0 or (member.stopped_by_us and not member.escalated and code == -signal.SIGINT)
            if not clean:
                failed.append(f"{member.node.name} (exit code {code})")
        return failed


def run_graph(nodes: list[ResolvedNode], grace_s: float = 5.0) -> int:
    """Run the graph until it ends; the exit code is 1 when any node failed."""
    if not nodes:
        print("vla-ros launch: the graph has no nodes to start with these arguments", file=sys.stderr)
        return 2
    launcher = GraphLauncher(nodes, grace_s=grace_s)
    previous = {sig: signal.signal(sig, launcher.request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with tempfile.TemporaryDirectory(prefix="vla_ros_launch_") as params_dir:
            try:
                launcher.start(Path(params_dir))
                launcher.watch()
            finally:
                launcher.stop_all()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    failed = launcher.failures()
    if failed:
        launcher.report(f"failed: {', '.join(failed)}")
        return 1
    launcher.report("all nodes stopped cleanly")
    return 0


class LaunchedGraph:
    """`vla-ros launch GRAPH args…` in a subprocess, its output captured line by line."""

    def __init__(self, graph: str, *arguments: str, echo: bool = False, grace_s: float = 5.0):
        self.echo = echo
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vla_ros.cli", "launch", graph, *arguments, "--grace", str(grace_s)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if self.echo:
                print(f"  {line}", end="", flush=True)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def pid(self, node: str, timeout_s: float = 30.0) -> int:
        """The process id `vla-ros launch` reported for a node."""
        deadline = time.monotonic() + timeout_s
        pattern = re.compile(rf"started {re.escape(node)} \(pid (\d+)\)")
        while time.monotonic() < deadline:
            for line in list(self.lines):
                match = pattern.search(line)
                if match:
                    return int(match.group(1))
            time.sleep(0.05)
        raise TimeoutError(f"{node} was never started:\n{self.output}")

    def stop(self, timeout_s: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._reader.join(timeout=5)
        return code
