"""The ROS side of `vla-ros record-demos`: one bag per demonstration episode, started and stopped on request.

The recorder subscribes once (raw, QoS matching the publishers) to the cameras, /joint_states, the executed
action stream (/vla/executed_action, one message per control tick), /vla/task, /vla/control_mode and the
gate's vetoes. An episode starts on /vla/demos/start (or a key, or the joystick's start button through the
teleop node): a new bag DIR/episode_NNNN gets the latched task and control mode, a `start` mark on
/vla/demos/mark and then every message as received. /vla/demos/stop (SetBool: succeeded?) writes a `success` or
`failure` mark, stores the outcome in the bag's custom_data and closes the bag; /vla/demos/discard drops the
running episode, or else deletes the last kept one. Every episode is a row of DIR/episodes.csv.
"""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from vla_ros.bags.errors import BagError
from vla_ros.bags.writing import BagWriter
from vla_ros.core import topics
from vla_ros.core.settings import CONTROL_RATE_HZ
from vla_ros.demos.table import EpisodeRow, EpisodeTable

STRING = "std_msgs/msg/String"
TRAJECTORY = "trajectory_msgs/msg/JointTrajectory"
FIXED_TYPES = {topics.JOINT_STATES: "sensor_msgs/msg/JointState", topics.EXECUTED_ACTION: TRAJECTORY,
               topics.TASK: STRING, topics.CONTROL_MODE: STRING, topics.SAFETY_VETO: STRING,
               topics.INSTRUCTION: STRING}
LATCHED_TOPICS = (topics.TASK, topics.CONTROL_MODE)


@dataclass
class RecorderOptions:
    out: Path
    cameras: list[str] = field(default_factory=lambda: [topics.CAMERA_IMAGE])
    instruction: str = ""
    storage: str = "mcap"
    wait_s: float = 20.0  # for the graph's topics to appear
    episodes: int = 0  # stop once this run has kept this many episodes (0: until Ctrl-C)


class DemoRecorder:
    """The recording node and its state; `run()` spins until Ctrl-C, `q`, or `options.episodes` are kept."""

    def __init__(self, options: RecorderOptions, say: Callable[[str], None] = print):
        self.options, self.say = options, say
        self.out = Path(options.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.table = EpisodeTable(self.out)
        self.kept_before = self.table.counts()[0]  # a continued folder: `episodes` counts this run's only
        self.lock = threading.Lock()
        self.writer: BagWriter | None = None
        self.episode_start = 0.0
        self.latched: dict[str, tuple[int, bytes]] = {}  # the last task / control mode as received
        self.task, self.mode = "", "policy"
        self.types: dict[str, str] = {}
        self.qos: dict[str, list] = {}
        self.done = False
        self.node = self.context = self.executor = None

    # --- set-up -------------------------------------------------------------------------------------------
    def _start_node(self) -> None:
        import rclpy  # noqa: PLC0415
        from rclpy.executors import SingleThreadedExecutor  # noqa: PLC0415
        from std_msgs.msg import String  # noqa: PLC0415
        from std_srvs.srv import SetBool, Trigger  # noqa: PLC0415

        from vla_ros.core.dds_profile import use_discovery_profile  # noqa: PLC0415
        from vla_ros.nodes.diagnostics import DiagnosticsReporter  # noqa: PLC0415
        from vla_ros.nodes.qos import COMMANDS, LATCHED  # noqa: PLC0415

        use_discovery_profile()
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("demo_recorder", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.String = String
        self.status_pub = self.node.create_publisher(String, topics.DEMOS_STATUS, LATCHED)
        self.instruction_pub = self.node.create_publisher(String, topics.INSTRUCTION, COMMANDS)
        self.node.create_service(Trigger, topics.DEMOS_START_SERVICE, self._on_start)
        self.node.create_service(SetBool, topics.DEMOS_STOP_SERVICE, self._on_stop)
        self.node.create_service(Trigger, topics.DEMOS_DISCARD_SERVICE, self._on_discard)
        DiagnosticsReporter(self.node, self.report)

    def _discover(self) -> None:
        """Wait for a publisher on every wanted topic; the cameras' types come from the graph."""
        from vla_ros.bags.ros_qos import to_bag_qos  # noqa: PLC0415

        wanted = [*self.options.cameras, topics.JOINT_STATES, topics.EXECUTED_ACTION, topics.TASK]
        optional = [topics.CONTROL_MODE, topics.SAFETY_VETO, topics.INSTRUCTION]
        deadline = time.monotonic() + self.options.wait_s
        while True:
            visible = {name: types for name, types in self.node.get_topic_names_and_types()
                       if self.node.count_publishers(name) > 0}
            missing = [t for t in wanted if t not in visible]
            if not missing:
                break
            if time.monotonic() > deadline:
                raise BagError(f"topic {', '.join(missing)} never appeared (no publisher within "
                               f"{self.options.wait_s:g} s): start the graph first (vla-ros launch widowx "
                               "teleop:=joy), or name your camera with --camera")
            self.executor.spin_once(timeout_sec=0.05)
        for topic in [*wanted, *(t for t in optional if t in visible)]:
            msgtype = FIXED_TYPES.get(topic) or visible[topic][0]
            self.types[topic] = msgtype
            offered = [info.qos_profile for info in self.node.get_publishers_info_by_topic(topic)]
            self.qos[topic] = [to_bag_qos(p) for p in offered]
            self._subscribe(topic, msgtype, offered)

    def _subscribe(self, topic: str, msgtype: str, offered) -> None:
        from vla_ros.bags.message_types import message_class  # noqa: PLC0415
        from vla_ros.bags.ros_qos import profile_for_offers  # noqa: PLC0415
        from vla_ros.nodes.qos import LATCHED  # noqa: PLC0415

        qos = LATCHED if topic in LATCHED_TOPICS else profile_for_offers(offered)
        self.node.create_subscription(message_class(msgtype), topic,
                                      lambda data, info, topic=topic: self._on_message(topic, data, info), qos,
                                      raw=True)
        if topic in (topics.TASK, topics.CONTROL_MODE):  # also read them, to label the episode
            self.node.create_subscription(self.String, topic,
                                          lambda msg, topic=topic: self._on_state(topic, msg.data), LATCHED)

    # --- messages -----------------------------------------------------------------------------------------
    def _on_state(self, topic: str, value: str) -> None:
        if topic == topics.TASK:
            self.task = value
        else:
            self.mode = value

    def _on_message(self, topic: str, data: bytes, info) -> None:
        stamp = info.get("received_timestamp") or time.time_ns()
        with self.lock:
            if topic in LATCHED_TOPICS:
                self.latched[topic] = (stamp, data)
            if self.writer is not None:
                self.writer.write(topic, stamp, data)

    # --- episodes -----------------------------------------------------------------------------------------
    def start_episode(self) -> tuple[bool, str]:
        from vla_ros.bags.episodes import EpisodeMessages  # noqa: PLC0415

        with self.lock:
            if self.writer is not None:
                return False, f"already recording {self.writer.path.name}"
            if not self.task:
                return False, ("no task: give --instruction, say one (vla-ros say \"pick up the red block\") or "
                               "publish /vla/task")
            name = f"episode_{self.table.next_index:04d}"
            custom = {"instruction": self.task, "control_hz": f"{CONTROL_RATE_HZ:g}", "control_mode": self.mode,
                      "recorded_by": "vla-ros record-demos"}
            try:
                writer = BagWriter(self.out / name, self.options.storage, custom_data=custom)
                for topic, msgtype in self.types.items():
                    writer.add_topic(topic, msgtype, self.qos.get(topic, []))
                writer.add_topic(topics.DEMOS_MARK, STRING)
            except BagError as exc:
                return False, str(exc)
            now = time.time_ns()
            for topic, (_, data) in self.latched.items():  # the task and mode in force as the episode begins
                writer.write(topic, now, data)
            writer.write(topics.DEMOS_MARK, now, EpisodeMessages().string("start"))
            self.writer, self.episode_start = writer, time.monotonic()
        self._status(f"recording {name}: '{self.task}' ({self.mode} in control)")
        return True, f"recording {name}"

    def stop_episode(self, success: bool) -> tuple[bool, str]:
        from vla_ros.bags.episodes import EpisodeMessages  # noqa: PLC0415

        with self.lock:
            writer, self.writer = self.writer, None
            if writer is None:
                return False, "not recording: start an episode first"
            outcome = "success" if success else "failure"
            writer.write(topics.DEMOS_MARK, time.time_ns(), EpisodeMessages().string(outcome))
            writer.set_custom_data("success", "true" if success else "false")
            counts = dict(writer.counts)
            path = writer.close()
        row = EpisodeRow(index=self.table.next_index, bag=path.name, instruction=self.task, control_mode=self.mode,
                         seconds=time.monotonic() - self.episode_start, steps=counts.get(topics.EXECUTED_ACTION, 0),
                         frames=counts.get(self.options.cameras[0], 0), success=success)
        self.table.add(row)
        self.say(f"kept {path.name}: {outcome}, {row.steps} steps, {row.seconds:.1f} s\n{self.table.render()}")
        kept, _ = self.table.counts()
        if self.options.episodes and kept - self.kept_before >= self.options.episodes:
            self.done = True
        self._status(f"idle: {kept} episodes kept")
        return True, f"{path.name}: {outcome}"

    def discard(self) -> tuple[bool, str]:
        with self.lock:
            writer, self.writer = self.writer, None
        if writer is not None:
            writer.abort()
            message = f"discarded the running episode {writer.path.name}"
        else:
            row = self.table.last_kept()
            if row is None:
                return False, "no episode to discard"
            shutil.rmtree(self.out / row.bag, ignore_errors=True)
            self.table.discard(row)
            message = f"discarded {row.bag}: record it again"
        self.say(message)
        self._status(f"idle: {self.table.counts()[0]} episodes kept")
        return True, message

    def _status(self, text: str) -> None:
        if self.node is not None:
            self.status_pub.publish(self.String(data=text))

    # --- services and keys --------------------------------------------------------------------------------
    def _on_start(self, _request, response):
        response.success, response.message = self.start_episode()
        return response

    def _on_stop(self, request, response):
        response.success, response.message = self.stop_episode(bool(request.data))
        return response

    def _on_discard(self, _request, response):
        response.success, response.message = self.discard()
        return response

    def on_key(self, key: str) -> None:
        action = {"b": self.start_episode, "y": lambda: self.stop_episode(True),
                  "n": lambda: self.stop_episode(False), "x": self.discard}.get(key.lower())
        if key.lower() in ("q", "esc"):
            self.done = True
        elif action is not None:
            ok, message = action()
            if not ok:
                self.say(message)

    def report(self):
        from vla_ros.nodes.diagnostics import OK  # noqa: PLC0415

        kept, successful = self.table.counts()
        recording = self.writer.path.name if self.writer is not None else ""
        return OK, f"recording {recording}" if recording else "idle", {
            "out": str(self.out), "recording": recording, "kept": str(kept), "successful": str(successful),
            "task": self.task, "control_mode": self.mode}

    def _send_instruction(self) -> None:
        """Publish --instruction once instruction_listener hears us, and wait until it is the task."""
        from vla_ros.core.instruction import normalize_instruction  # noqa: PLC0415

        deadline = time.monotonic() + self.options.wait_s
        while self.instruction_pub.get_subscription_count() == 0:
            if time.monotonic() > deadline:
                raise BagError("nobody subscribes /vla/instruction: is instruction_listener running?")
            self.executor.spin_once(timeout_sec=0.05)
        wanted = normalize_instruction(self.options.instruction)
        self.instruction_pub.publish(self.String(data=self.options.instruction))
        while self.task != wanted:
            if time.monotonic() > deadline:
                raise BagError(f"the instruction '{self.options.instruction}' did not become the task (it is "
                               f"'{self.task}'): see /vla/instruction/rejected")
            self.executor.spin_once(timeout_sec=0.05)

    # --- main loop ----------------------------------------------------------------------------------------
    def run(self, keys=None) -> EpisodeTable:
        """Record until Ctrl-C, `q` or enough episodes; a running episode is discarded at the end."""
        self._start_node()
        try:
            self._discover()
            if self.options.instruction:
                self._send_instruction()
            self._status(f"idle: {self.table.counts()[0]} episodes kept")
            self.say(f"recording demonstrations into {self.out}: b begin, y stop (success), n stop (failure), "
                     "x discard the last, q quit; or the joystick's buttons, or /vla/demos/* services")
            while not self.done:
                self.executor.spin_once(timeout_sec=0.02)
                for key in (keys.keys(0.0) if keys is not None else []):
                    self.on_key(key)
        except KeyboardInterrupt:
            pass
        finally:
            if self.writer is not None:
                self.writer.abort()
                self.say(f"stopped: the unfinished episode {self.writer.path.name} was discarded")
                self.writer = None
            self.executor.shutdown()
            self.node.destroy_node()
            import rclpy  # noqa: PLC0415

            rclpy.try_shutdown(context=self.context)
        return self.table
