"""`vla-ros serve` as a user runs it: Ray Serve on a local cluster, TLS, an API key, the shipped policy; driven by the
real openpi client, by raw websockets (refusals, malformed requests), by many connections at once (batching), and by
the robot's own client. One server for the module: Ray's start and stop cost 8–14 s."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from ros_harness import run_cli
from sessions import kill_session

from vla_ros.core.ports import free_port
from vla_ros.serving import protocol

REPO = Path(__file__).resolve().parents[1]
POLICY = REPO / "models" / "policy" / "vla"
TASK = "pick up the red block"


@dataclass
class Served:
    url: str
    key: str
    cert: Path
    output: list[str]


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


class ServeProcess:
    """`vla-ros serve …` in its own session, with a HOME and Ray folder of its own; ready when it says so."""

    def __init__(self, work: Path, *arguments: str):
        self.ray_dir = tempfile.mkdtemp(prefix="vr", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
        # Ray writes ~/.ray/auth_token on first start: a HOME of the test's own.
        env = {**os.environ, "HOME": str(work), "RAY_USAGE_STATS_ENABLED": "0"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vla_ros.cli", "serve", "--policy", str(POLICY), "--temp-dir", self.ray_dir,
             *arguments], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        self.output: list[str] = []
        threading.Thread(target=lambda: self.output.extend(iter(self.process.stdout.readline, "")),
                         daemon=True).start()
        deadline = time.monotonic() + 150
        while not any(line.startswith("ready") for line in self.output):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail("vla-ros serve did not get ready:\n" + "".join(self.output))
            time.sleep(0.2)

    def stop(self) -> list[int]:
        """Stop the server; returns the processes of its session still running 15 s after it exited (killed)."""
        if self.process.poll() is None:
            # SIGTERM, as a service manager stops it: `vla-ros serve` handles it itself (Serve and Ray shut down in
            # ~8 s), where a SIGINT is ignored when the suite runs without a terminal (nohup, background jobs).
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            pass
        left = kill_session(self.process.pid, grace_s=15)  # whatever is left of the server and its Ray cluster
        self.process.wait(timeout=10)
        shutil.rmtree(self.ray_dir, ignore_errors=True)
        return left


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The default front (each replica listens itself), with TLS, an API key and batching."""
    work = tmp_path_factory.mktemp("serve")
    key = "robot-key-0123456789"
    (work / "api_key").write_text(key + "\n")
    cert, tls_key = self_signed_certificate(work)
    port = free_port()
    running = ServeProcess(work, "--port", str(port), "--api-key-file", str(work / "api_key"), "--tls-cert", str(cert),
                           "--tls-key", str(tls_key), "--max-batch", "8", "--batch-wait-ms", "30",
                           "--max-request-mb", "1")
    try:
        yield Served(f"wss://127.0.0.1:{port}", key, cert, running.output)
    finally:
        running.stop()


def observation(size=128, **extra) -> dict:
    rng = np.random.default_rng(0)
    return {"observation/image": rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
            "observation/state": np.zeros(7, np.float32), "prompt": TASK, **extra}


def port_sockets(port: int) -> str:
    """What `ss` shows on a port: its listeners (with their processes) and the connections to it."""
    shown = subprocess.run(["ss", "-tanpe", f"( sport = :{port} or dport = :{port} )"], capture_output=True,
                           text=True)
    return shown.stdout.strip() or shown.stderr.strip()


def connect(served: Served, key: str | None = None):
    """A websocket to the server, as a robot opens one: a handshake that stalls is tried once more, as the robot's
    client reconnects, and reported as a warning with what the port showed (a second stall fails the test)."""
    import ssl

    from websockets.sync.client import connect as ws_connect

    context = ssl.create_default_context(cafile=str(served.cert))
    headers = {"Authorization": f"Api-Key {key}"} if key else None
    for attempt in (1, 2):
        try:
            return ws_connect(served.url, ssl=context, additional_headers=headers, compression=None,
                              max_size=None, proxy=None, open_timeout=10)
        except TimeoutError as exc:
            seen = (f"{exc}; on the port:\n{port_sockets(int(served.url.rsplit(':', 1)[1]))}\nthe server's last "
                    f"output: {''.join(served.output[-5:])}")
            if attempt == 2:
                raise TimeoutError(seen) from exc
            warnings.warn(f"a handshake with the policy server stalled for 10 s; reconnecting. {seen}", stacklevel=2)


def test_the_real_openpi_client_gets_metadata_and_action_chunks(server, monkeypatch):
    websocket_client_policy = pytest.importorskip("openpi_client.websocket_client_policy")
    monkeypatch.setenv("SSL_CERT_FILE", str(server.cert))  # how openpi-client trusts a self-signed certificate
    client = websocket_client_policy.WebsocketClientPolicy(host=server.url, api_key=server.key)
    metadata = client.get_server_metadata()
    assert metadata["vla_ros/image_size"] == 128 and metadata["vla_ros/action_space"] == "ee_delta"
    reply = client.infer(observation())
    assert reply["actions"].dtype == np.float32 and reply["actions"].shape == (8, 7)
    assert np.all(np.isfinite(reply["actions"])) and reply["server_timing"]["infer_ms"] > 0
    assert reply["vla_ros/tokens"].shape == (8,) and reply["vla_ros/tokenizer"] == metadata["vla_ros/identity"]
    reply = client.infer(observation(size=224))  # any size: the server resizes as camera_ingest does
    assert reply["actions"].shape == (8, 7)


@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_a_connection_without_the_right_key_is_refused_with_one_sentence(server, key):
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as refused:
        connect(server, key)
    assert refused.value.response.status_code == 401
    refusal = refused.value.response.body.decode()
    assert refusal.startswith("API key missing or wrong") and "Traceback" not in refusal and refusal.count("\n") == 1
    with connect(server, server.key) as websocket:  # and the server serves others as before
        assert isinstance(websocket.recv(timeout=10), bytes)


def test_malformed_requests_each_get_one_sentence_and_the_connection_keeps_serving(server):
    import msgpack

    object_array = msgpack.packb({"observation/image": {b"__ndarray__": True, b"data": b"\0" * 8, b"dtype": "|O",
                                                        b"shape": [1]}, "prompt": TASK}, use_bin_type=True)
    bad = [(b"\xc1\xc1 not msgpack", "not valid msgpack"),
           ("a text frame", "expected a binary msgpack observation"),
           (protocol.pack({"prompt": TASK}), "has no 'observation/image'"),
           (protocol.pack(observation(**{"observation/state": np.zeros(3)})), "must be 6 or 7 finite numbers"),
           (object_array, "only booleans, integers and floats"),
           (protocol.pack(observation(size=700)), "exceeds the limit of 1048576 bytes")]
    with connect(server, server.key) as websocket:
        websocket.recv(timeout=10)
        for message, expected in bad:
            websocket.send(message)
            reply = websocket.recv(timeout=30)
            assert isinstance(reply, str) and reply.startswith("error: ") and expected in reply, reply
            assert "Traceback" not in reply and reply.count("\n") == 0
        websocket.send(protocol.pack(observation()))
        reply = protocol.unpack(websocket.recv(timeout=30))
        assert reply["actions"].shape == (8, 7)


def test_requests_from_many_connections_are_answered_in_batches(server):
    def robot(index: int) -> list[int]:
        sizes = []
        with connect(server, server.key) as websocket:
            websocket.recv(timeout=10)
            for k in range(4):
                websocket.send(protocol.pack(observation(**{"vla_ros/stamp_ns": 1000 * index + k})))
                reply = protocol.unpack(websocket.recv(timeout=60))
                assert reply["vla_ros/stamp_ns"] == 1000 * index + k  # each reply to its own observation
                sizes.append(reply["server_timing"]["batch_size"])
        return sizes

    with ThreadPoolExecutor(8) as pool:
        sizes = [s for robot_sizes in pool.map(robot, range(8)) for s in robot_sizes]
    assert len(sizes) == 32 and max(sizes) > 1, sizes


def test_the_robots_client_gets_continuous_chunks_and_tokens_that_decode_to_them(server, tmp_path):
    from vla_ros.serving.client import RemotePolicySource
    from vla_ros.tokenizers.loading import load_tokenizer

    (tmp_path / "key").write_text(server.key)
    tokenizer = load_tokenizer(POLICY / "tokenizer")
    image = observation()["observation/image"]
    asked = {}
    for reply, jpeg in (("actions", 0), ("tokens", 0), ("jpeg", 90)):
        client = RemotePolicySource(server.url, api_key=server.key, ca_file=str(server.cert),
                                    reply="tokens" if reply == "tokens" else "actions", request_timeout=20.0,
                                    jpeg_quality=jpeg)
        try:
            asked[reply] = client.generate(image, TASK, np.zeros(6, np.float32), frame_time_s=0.0, temperature=0.0,
                                           plan=False, rng=None, stamp_ns=42)
            assert client.identity == tokenizer.identity
        finally:
            client.close()
    assert asked["tokens"].identity == tokenizer.identity and asked["jpeg"].actions.shape == (8, 7)
    decoded = tokenizer.decode(asked["tokens"].tokens[None])[0]  # greedy: the same tokens behind both replies
    np.testing.assert_allclose(decoded, asked["actions"].actions, atol=1e-6)


def test_serve_names_a_bad_argument_in_one_sentence():
    for arguments, expected in ((["--policy", "nowhere"], "--policy nowhere holds no config.json"),
                                (["--policy", str(POLICY), "--tls-cert", "c.pem"], "TLS needs both"),
                                (["--policy", str(POLICY), "--no-auth", "--api-key-file", "k"], "contradict")):
        done = run_cli("serve", *arguments)
        assert done.returncode != 0 and expected in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert run_cli("serve", "--help").returncode == 0
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):  # before Ray starts: a replica would share it silently
        done = run_cli("serve", "--policy", str(POLICY), "--no-auth", "--port", str(port))
    assert done.returncode != 0 and "Traceback" not in done.stderr and "Ray" not in done.stdout + done.stderr
    assert done.stderr.strip() == (f"vla-ros serve: port {port} on 0.0.0.0 is in use by another program; stop it or "
                                   "choose another --port")


def test_the_serve_front_answers_the_openpi_client_and_refuses_a_missing_key(tmp_path):
    """`--front serve`: robots reach the replicas through Ray Serve's HTTP proxy and its FastAPI route."""
    websocket_client_policy = pytest.importorskip("openpi_client.websocket_client_policy")
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect as ws_connect

    (tmp_path / "api_key").write_text("serve-front-key")
    port = free_port()
    running = ServeProcess(tmp_path, "--front", "serve", "--port", str(port), "--api-key-file",
                           str(tmp_path / "api_key"))
    try:
        client = websocket_client_policy.WebsocketClientPolicy(host=f"ws://127.0.0.1:{port}", api_key="serve-front-key")
        assert client.infer(observation())["actions"].shape == (8, 7)
        client._ws.send("a text frame")
        assert client._ws.recv(timeout=30).startswith("error: expected a binary msgpack observation")
        with pytest.raises(InvalidStatus) as refused:  # Serve's proxy passes the denial on: HTTP 401 and the reason
            ws_connect(f"ws://127.0.0.1:{port}", proxy=None, open_timeout=10)
        assert refused.value.response.status_code == 401
        assert b"API key missing or wrong" in refused.value.response.body
    finally:
        left = running.stop()
    assert not left, f"SIGTERM left {len(left)} processes of Serve's cluster running"  # the port is free again

