"""Remote inference without a server process: openpi's wire format, request and reply checks, API keys, the policy
stage with a continuous source, absolute joint targets in the control loop and gate, and the robot's client
against an in-process websocket server (reconnects, timeouts, refusals)."""

from __future__ import annotations

import asyncio
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vla_ros.core.action_chunks import ACTION_NAMES, JOINT_POSITION, JOINT_TARGET_NAMES, ActionChunk
from vla_ros.serving import protocol
from vla_ros.serving.protocol import ProtocolError, Refused
from vla_ros.serving.security import ApiKeyError, key_digest, key_matches, presented_key, read_api_key

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------- the wire format
def test_our_encoding_is_byte_identical_to_openpi_clients_and_decodes_its_messages():
    openpi = pytest.importorskip("openpi_client.msgpack_numpy")
    message = {"observation/image": np.arange(12, dtype=np.uint8).reshape(2, 2, 3),
               "observation/state": np.linspace(-1, 1, 7, dtype=np.float32), "prompt": "pick up the red block",
               "scalar": np.float64(2.5), "nested": {"ids": np.array([1, 2], np.int64)}}
    assert protocol.pack(message) == openpi.packb(message)
    decoded = protocol.unpack(openpi.packb(message))
    np.testing.assert_array_equal(decoded["observation/image"], message["observation/image"])
    assert decoded["observation/state"].dtype == np.float32 and decoded["scalar"] == 2.5
    # and the other way round: openpi's client reads our replies
    reply = protocol.reply_message(np.ones((8, 7)), stamp_ns=5, tokens=np.arange(8), tokenizer="ab")
    back = openpi.unpackb(protocol.pack(reply))
    assert back["actions"].dtype == np.float32 and back["actions"].shape == (8, 7) and back["vla_ros/stamp_ns"] == 5


def _array(dtype: str, shape, data: bytes) -> bytes:
    import msgpack

    return msgpack.packb({"a": {b"__ndarray__": True, b"data": data, b"dtype": dtype, b"shape": shape}},
                         use_bin_type=True)


@pytest.mark.parametrize("raw, expected", [
    (_array("|O", [1], b"\0" * 8), "not accepted; only booleans, integers and floats"),
    (_array("V8", [1], b"\0" * 8), "not accepted"),
    (_array("[('a', '<f4')]", [1], b"\0" * 4), "not a numpy type string"),
    (_array("<f4", [3], b"\0" * 8), "needs 12 bytes of data, got 8"),
    (_array("<f4", [-1], b""), "non-negative integers"),
    (b"\xc1not msgpack", "not valid msgpack"),
    (b"\x92\x01", "not valid msgpack"),
])
def test_a_message_that_could_carry_objects_or_lies_about_its_size_is_refused_with_one_sentence(raw, expected):
    with pytest.raises(ProtocolError, match=re.escape(expected)):
        protocol.unpack(raw)


def test_encoding_refuses_object_arrays_and_the_size_limit_holds():
    with pytest.raises(ProtocolError, match="cannot be sent"):
        protocol.pack({"x": np.array([object()])})
    with pytest.raises(ProtocolError, match="exceeds the limit of 100 bytes"):
        protocol.unpack(protocol.pack({"x": np.zeros(100)}), max_bytes=100)


def test_nothing_in_the_serving_code_can_unpickle():
    for path in (REPO / "vla_ros" / "serving").glob("*.py"):
        text = path.read_text()
        assert not re.search(r"\b(pickle|cloudpickle|dill|marshal)\b|torch\.load|allow_pickle", text), path


@given(st.lists(st.integers(0, 5), min_size=0, max_size=3), st.sampled_from(["<f4", "<f8", "|u1", "<i8", "|b1"]))
@settings(max_examples=40, deadline=None)
def test_numeric_arrays_of_any_shape_round_trip(shape, dtype):
    array = np.zeros(shape, dtype=np.dtype(dtype))
    back = protocol.unpack(protocol.pack({"a": array}))["a"]
    assert back.dtype == array.dtype and back.shape == array.shape


# ------------------------------------------------------------------------------------------- requests
def _request(**overrides):
    base = {"observation/image": np.zeros((64, 48, 3), np.uint8), "observation/state": np.zeros(7, np.float32),
            "prompt": "Pick up the RED block."}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def test_a_request_in_openpis_keys_is_read_and_its_prompt_normalized_like_a_task():
    observation = protocol.parse_observation(_request(**{"vla_ros/stamp_ns": 7, "vla_ros/temperature": 0.0}))
    assert observation.prompt == "pick up the red block" and observation.state.shape == (6,)
    assert observation.stamp_ns == 7 and observation.temperature == 0.0 and observation.image.shape == (64, 48, 3)


@pytest.mark.parametrize("overrides, expected", [
    ({"prompt": None}, "'prompt' must be the instruction text"),
    ({"observation/image": None}, "has no 'observation/image'"),
    ({"observation/image": np.zeros((4, 4), np.uint8)}, "must be a uint8 array [H, W, 3], got uint8 [4, 4]"),
    ({"observation/image": np.zeros((4, 4, 3), np.float32)}, "got float32 [4, 4, 3]"),
    ({"observation/state": np.array([np.nan] * 6)}, "must be 6 or 7 finite numbers"),
    ({"observation/state": np.zeros(3)}, "must be 6 or 7 finite numbers"),
    ({"vla_ros/stamp_ns": "now"}, "must be an integer"),
    ({"vla_ros/temperature": -1.0}, "must be a number in [0, 10]"),
    ({"prompt": "x" * 600}, "at most 512 are accepted"),
    ({"vla_ros/image_jpeg": b"not a jpeg"}, "is not a readable JPEG image"),
])
def test_a_malformed_request_is_named_in_one_sentence(overrides, expected):
    with pytest.raises(ProtocolError, match=re.escape(expected)):
        protocol.parse_observation(_request(**overrides))
    with pytest.raises(ProtocolError, match="is a map"):
        protocol.parse_observation([1, 2])


# ------------------------------------------------------------------------------------------- replies
def _reply(actions=None, **extra):
    actions = np.zeros((8, 7), np.float32) if actions is None else actions
    return {**protocol.reply_message(actions, stamp_ns=extra.pop("stamp", 11)), **extra}


@pytest.mark.parametrize("reply, space, reason", [
    (_reply(np.zeros((8, 6))), "ee_delta", "wrong_shape"),
    (_reply(np.zeros((8, 7, 1))), "ee_delta", "wrong_shape"),
    (_reply(np.full((8, 7), np.nan)), "ee_delta", "non_finite"),
    (_reply(**{"vla_ros/action_space": "joint_position"}), "ee_delta", "wrong_action_space"),
    (_reply(np.tile([0.0, -0.3, 0.3, 0.0, 1.5, 0.0, 1.0], (8, 1))), "ee_delta", "wrong_action_space"),
    (_reply(np.tile([4.0, 0, 0, 0, 0, 0, 1.0], (8, 1)), **{"vla_ros/action_space": "joint_position"}),
     "joint_position", "wrong_action_space"),
    (_reply(stamp=12), "ee_delta", "stale_stamp"),
    ({"actions": "none"}, "ee_delta", "malformed"),
    ({"type": "error", "message": "Internal inference error"}, "ee_delta", "server_error"),  # vLLM-Omni's form
    ([1, 2], "ee_delta", "malformed"),
])
def test_a_reply_that_must_not_move_the_arm_is_refused_by_reason(reply, space, reason):
    with pytest.raises(Refused) as refused:
        protocol.check_reply(reply, action_space=space, sent_stamp_ns=11)
    assert refused.value.reason == reason and str(refused.value)


def test_a_good_reply_in_either_space_is_kept_and_foreign_servers_need_no_extras():
    kept = protocol.check_reply({"actions": np.full((10, 7), 0.01, np.float32)}, action_space="ee_delta",
                                sent_stamp_ns=3)  # what openpi's server sends: no echo, no space
    assert kept.actions.shape == (10, 7)
    bare = protocol.check_reply(np.full((5, 7), 0.01), action_space="ee_delta", sent_stamp_ns=3)  # vLLM-Omni's form
    assert bare.actions.shape == (5, 7)
    joints = np.tile([0.0, -0.3, 0.3, 0.0, 1.5, 0.0, 1.0], (4, 1))
    assert protocol.check_reply(_reply(joints, **{"vla_ros/action_space": "joint_position"}),
                                action_space="joint_position", sent_stamp_ns=11).actions.shape == (4, 7)


# ------------------------------------------------------------------------------------------- API keys
def test_api_keys_in_openpi_clients_header_form(tmp_path):
    digest = key_digest("s3cret")
    assert key_matches("Api-Key s3cret", digest) and key_matches("api-key  s3cret ", digest)
    assert not key_matches("Api-Key wrong", digest) and not key_matches(None, digest)
    assert not key_matches("Bearer s3cret", digest) and presented_key("Api-Key ") is None
    (tmp_path / "key").write_text("  abc123\n")
    assert read_api_key(tmp_path / "key") == "abc123"
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ApiKeyError, match="holds no API key"):
        read_api_key(tmp_path / "empty")
    with pytest.raises(ApiKeyError, match="cannot be read"):
        read_api_key(tmp_path / "missing")


# ------------------------------------------------------------------------------------------- the policy stage
class ContinuousSource:
    identity, image_size = "00000000000000c1", 32

    def __init__(self, space="ee_delta"):
        self.space, self.calls = space, []

    def generate(self, rgb, task, joints, *, frame_time_s, temperature, plan, rng, stamp_ns=0):
        from vla_ros.core.stages.policy import SourceOutput

        self.calls.append((rgb.shape, stamp_ns))
        actions = np.zeros((8, 7))
        actions[:, 6] = 1.0
        if self.space == JOINT_POSITION:
            actions[:, :6] = [0.0, -0.3, 0.3, 0.0, 1.5, 0.0]
        return SourceOutput(actions=actions, action_space=self.space, plan="reach")


@pytest.mark.parametrize("space, names", [("ee_delta", ACTION_NAMES), (JOINT_POSITION, JOINT_TARGET_NAMES)])
def test_the_policy_stage_publishes_a_continuous_chunk_with_the_observation_stamp(space, names):
    from vla_ros.core.action_tokens import task_hash
    from vla_ros.core.messages import read_chunk
    from vla_ros.core.stages.policy import Job, PolicySettings, PolicyStage
    from vla_ros.nodes.messages import RCLPY

    source = ContinuousSource(space)
    stage = PolicyStage(PolicySettings(backend="remote"), source, RCLPY)
    stage.on_task("pick up the red block", 100.0)
    header = RCLPY.Header(stamp=RCLPY.stamp(100_500_000_000), frame_id="camera")
    stage.on_image(RCLPY.model_image(header, np.zeros((64, 64, 3), np.uint8)))
    job = stage.next_job(100.6, 1.0)
    assert isinstance(job, Job)
    generated = stage.run(job)
    assert generated.tokens is None and generated.plan == "reach" and source.calls == [((32, 32, 3), 100_500_000_000)]
    chunk = read_chunk(generated.chunk)
    assert tuple(generated.chunk.joint_names) == names and chunk.action_space == space
    assert chunk.stamp_ns == 100_500_000_000 and chunk.task_hash == task_hash("pick up the red block")
    assert chunk.tokenizer == source.identity


def test_the_graph_runs_no_decoder_for_a_remote_policys_continuous_chunks():
    from vla_ros.graphs.pipeline import pipeline_settings
    from vla_ros.graphs.spec import load_graph, resolve_graph

    spec = load_graph("widowx")
    names = lambda *args: {n.name for n in resolve_graph(spec, dict(a.split(":=") for a in args))}  # noqa: E731
    assert "action_decoder" in names()
    assert "action_decoder" not in names("policy_backend:=remote") and "vla_policy" in names("policy_backend:=remote")
    assert "action_decoder" in names("policy_backend:=remote", "remote_reply:=tokens")
    settings_ = pipeline_settings("widowx", ["policy_backend:=remote", "policy_url:=ws://h:1",
                                             "action_space:=joint_position"])
    assert settings_.policy.policy_url == "ws://h:1" and settings_.policy.action_space == JOINT_POSITION


# ------------------------------------------------------------------------------------------- joint targets
@pytest.fixture(scope="module")
def kinematics():
    from vla_ros.robot.kinematics import ArmKinematics

    return ArmKinematics()


@pytest.fixture(scope="module")
def home(kinematics):
    """The workcell's home joints (gripper down over the table, inside the Bridge workspace box)."""
    from vla_ros.sim.workcell import HOME_POS, HOME_ROT

    return kinematics.ik(np.array([0.0, -0.3, 0.3, 0.0, 1.5, 0.0]), HOME_POS, HOME_ROT).q


HOME = np.array([0.0, -0.3, 0.3, 0.0, 1.5, 0.0])


@pytest.mark.parametrize("rate", [5.0, 20.0])
def test_joint_targets_are_reached_at_each_steps_end_at_any_control_rate(kinematics, rate):
    from vla_ros.core.executor import ExecutorSettings
    from vla_ros.core.stages.control import ControlLoop

    loop = ControlLoop(ExecutorSettings(control_rate=rate), kinematics)
    loop.executor.set_task(7)
    loop.update_joint_positions(HOME, 10.0)
    targets = np.tile(np.append(HOME, 1.0), (8, 1))
    targets[:, 0] = 0.05 * np.arange(1, 9)  # waist steps 0.05 rad per 0.2 s step
    loop.executor.add_chunk(ActionChunk(targets, 10_000_000_000, 0.2, 7, "aa", JOINT_POSITION), 10.0)
    commanded = []
    for k in range(int(0.6 * rate)):  # the executed window: 3 steps
        now = 10.0 + k / rate
        loop.update_joint_positions(HOME, now)
        out = loop.tick(now, now)
        assert out.targets is not None and out.targets.ik.reached
        commanded.append(out.targets.arm[0])
    per_step = int(rate / 5)
    np.testing.assert_allclose([commanded[per_step * (i + 1) - 1] for i in range(3)], [0.05, 0.10, 0.15], atol=1e-9)
    assert np.all(np.diff(commanded) > 0)  # evenly on the way, never overshooting
    assert loop.tick(10.6, 10.6).targets is None  # the window ran out: hold, no extrapolation


@given(st.lists(st.floats(-10, 10, allow_nan=False), min_size=6, max_size=6), st.floats(0, 1))
@settings(max_examples=60, deadline=None)
def test_no_joint_target_ever_commands_a_joint_outside_its_limits(kinematics, goal, share):
    from vla_ros.core.ee_integration import EndEffectorIntegrator
    from vla_ros.robot.wx250s import JOINT_LIMITS

    integrator = EndEffectorIntegrator(kinematics)
    integrator.anchor(HOME)
    arm = integrator.move_towards(np.append(goal, 0.5), share).arm
    assert np.all(arm >= JOINT_LIMITS[:, 0] - 1e-9) and np.all(arm <= JOINT_LIMITS[:, 1] + 1e-9)


def test_the_gate_still_judges_every_joint_target_command(kinematics, home):
    """A joint-target chunk that leaps is halted by the gate, exactly as a delta chunk would be."""
    from vla_ros.core.safety.gate import FORWARD, HOLD, JointSnapshot
    from vla_ros.core.safety.rules import ArmCommand
    from vla_ros.core.stages.gate import SafetySettings, build_gate

    gate = build_gate(SafetySettings(), kinematics)
    gate.active = True
    gate.update_joints(JointSnapshot(home.copy(), np.zeros(6), 1.0, 0.0, 10.0))
    small = gate.evaluate_arm(ArmCommand(home + [0.02, 0, 0, 0, 0, 0], 0.2, 10.0), 10.0, 10.0)
    assert small.kind == FORWARD, small.reason
    leap = gate.evaluate_arm(ArmCommand(home + [1.5, 0, 0, 0, 0, 0], 0.2, 10.2), 10.2, 10.2)
    assert leap.kind == HOLD and leap.rule


# ------------------------------------------------------------------------------------------- the client
class ScriptedServer:
    """An in-process openpi-protocol server whose replies the test scripts (`behaviour(request) -> bytes|str|None`)."""

    def __init__(self, behaviour, metadata=None, api_key=None):
        from websockets.asyncio.server import serve

        self.behaviour, self.metadata, self.api_key = behaviour, metadata or {}, api_key
        self.connections = 0
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def session(websocket):
            self.connections += 1
            await websocket.send(protocol.pack(self.metadata))
            async for message in websocket:
                answer = await self.behaviour(protocol.parse_observation(protocol.unpack(message)))
                if answer is not None:
                    await websocket.send(answer)

        def check(connection, request):
            if self.api_key and not key_matches(request.headers.get("Authorization"), key_digest(self.api_key)):
                return connection.respond(401, "API key missing or wrong\n")

        async def start():
            self.server = await serve(session, "127.0.0.1", 0, process_request=check)
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()

        self.thread = threading.Thread(target=lambda: (self.loop.run_until_complete(start()), self.loop.run_forever()),
                                       daemon=True)
        self.thread.start()
        ready.wait(5)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def close(self):
        async def stop():
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def _ask(client, stamp=5):
    return client.generate(np.zeros((96, 96, 3), np.uint8), "pick up the red block", np.zeros(6, np.float32),
                           frame_time_s=0.0, temperature=0.1, plan=False, rng=None, stamp_ns=stamp)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_the_client_renews_a_timed_out_connection_with_backoff_and_never_takes_a_late_reply():
    from vla_ros.serving.client import RemotePolicySource

    delays = [0.0, 0.6, 0.0]

    async def behaviour(request):
        await asyncio.sleep(delays.pop(0) if delays else 0.0)
        return protocol.pack(protocol.reply_message(np.full((8, 7), 0.01), stamp_ns=request.stamp_ns))

    server = ScriptedServer(behaviour, {"vla_ros/image_size": 32, "vla_ros/identity": "00000000000000ab"})
    clock = FakeClock()
    client = RemotePolicySource(server.url, request_timeout=0.3, clock=clock)
    try:
        out = _ask(client, stamp=1)
        assert out.actions.shape == (8, 7) and client.image_size == 32 and client.identity == "00000000000000ab"
        with pytest.raises(Refused) as timed_out:
            _ask(client, stamp=2)
        assert timed_out.value.reason == "timeout" and not client.connected
        with pytest.raises(Refused, match="next attempt in 0.25 s"):  # backoff: no reconnect storm
            _ask(client, stamp=3)
        clock.now = 1.0
        assert _ask(client, stamp=4).actions is not None  # a fresh connection: the late reply for 2 never arrives
        values = client.diagnostics()
        assert values["remote_reconnects"] == "1" and values["remote_refused_timeout"] == "1"
        assert float(values["remote_rtt_ms_p50"]) > 0 and server.connections == 2
    finally:
        client.close()
        server.close()


def test_the_client_counts_each_refusal_by_reason_and_keeps_the_connection_for_an_error_reply():
    from vla_ros.serving.client import RemotePolicySource

    answers = [protocol.error_text("the policy is not loaded"),
               protocol.pack(protocol.reply_message(np.zeros((8, 6)), stamp_ns=5)),
               protocol.pack(protocol.reply_message(np.zeros((8, 7)), stamp_ns=99)),
               protocol.pack(protocol.reply_message(np.zeros((8, 7)), stamp_ns=5))]

    async def behaviour(request):
        return answers.pop(0)

    server = ScriptedServer(behaviour)
    client = RemotePolicySource(server.url, request_timeout=2.0)
    try:
        for reason in ("server_error", "wrong_shape", "stale_stamp"):
            with pytest.raises(Refused) as refused:
                _ask(client)
            assert refused.value.reason == reason
        assert _ask(client).actions is not None and server.connections == 1
        assert client.diagnostics()["remote_refused_stale_stamp"] == "1"
    finally:
        client.close()
        server.close()


def test_the_client_reports_an_absent_server_a_refused_key_and_a_server_of_the_wrong_action_space():
    from vla_ros.serving.client import RemotePolicySource

    async def behaviour(request):
        return protocol.pack(protocol.reply_message(np.zeros((8, 7)), stamp_ns=request.stamp_ns))

    absent = RemotePolicySource("ws://127.0.0.1:9", request_timeout=0.5)
    with pytest.raises(Refused) as refused:
        _ask(absent)
    assert refused.value.reason == "unreachable"
    keyed = ScriptedServer(behaviour, api_key="right")
    joint = ScriptedServer(behaviour, {"vla_ros/action_space": "joint_position"})
    try:
        with pytest.raises(Refused) as refused:
            _ask(RemotePolicySource(keyed.url, api_key="wrong"))
        assert refused.value.reason == "auth" and "HTTP 401" in str(refused.value)
        assert _ask(RemotePolicySource(keyed.url, api_key="right")).actions is not None
        with pytest.raises(Refused) as refused:
            _ask(RemotePolicySource(joint.url, action_space="ee_delta"))
        assert refused.value.reason == "wrong_action_space"
    finally:
        keyed.close()
        joint.close()


def test_the_in_process_rollout_drives_a_joint_target_source_through_the_control_loop_and_gate():
    """Any policy-stage source drives the rollout; joint targets reach the arm (checked by the gate on the way)."""
    from vla_ros.core.stages.policy import SourceOutput
    from vla_ros.sim.rollout import StageSourceChunks, rollout
    from vla_ros.sim.workcell import Workcell

    class TurnWaist:
        identity, image_size, action_space = "00000000000000c2", 64, JOINT_POSITION

        def __init__(self):
            self.frames = []

        def generate(self, rgb, task, joints, *, frame_time_s, temperature, plan, rng, stamp_ns=0):
            self.frames.append((rgb.shape, frame_time_s))
            targets = np.tile(np.append(joints, 1.0), (8, 1))
            targets[:, 0] = joints[0] + 0.03 * np.arange(1, 9)  # waist: 0.03 rad per 0.2 s step
            return SourceOutput(actions=targets, action_space=JOINT_POSITION)

    source = TurnWaist()
    with Workcell(image_size=64) as workcell:
        start = workcell.reset(5, family="pick").joint_pos[0]
        run = rollout(workcell, StageSourceChunks(source), 5, family="pick", max_steps=6)
        turned = workcell.joint_positions()[0] - start
    assert run.inferences == 2 and not run.vetoes and source.frames[0] == ((64, 64, 3), 0.0)
    assert 0.1 < turned < 0.2, turned  # six steps of 0.03 rad, the last still under way
