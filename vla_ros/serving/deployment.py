"""`vla-ros serve`: a policy on Ray Serve behind a websocket ingress that speaks openpi's protocol.

One Serve deployment, `PolicyServer`, holds the policy (`vla_ros.serving.host.PolicyHost`) and a FastAPI ingress
with the websocket route `/` (and `GET /healthz`). Each connection is authenticated, gets the metadata map, then
sends observations; every observation goes through `infer`, a `@serve.batch` method, so requests from all the
connections a replica holds are answered in batches (up to `max_batch`, waiting at most `batch_wait_ms` for a
batch to fill). The batched method lives in the ingress deployment itself: calling a second deployment through a
handle cost about 3× the throughput on this kind of machine (docs/remote.md). Replicas (fixed, or autoscaled on
connections per replica) each hold their own copy of the policy; Serve's proxy spreads new connections over them.

Security (docs/remote.md): an API key is required unless explicitly switched off, compared in constant time; TLS
through Serve's proxy (`ssl_certfile`/`ssl_keyfile`); a request size limit; msgpack with numeric arrays only.
A malformed request gets one text reply (one sentence, never a traceback) and the connection keeps serving; an
unauthenticated one is refused before any data is exchanged.
"""

# No `from __future__ import annotations` here: FastAPI must see the real WebSocket class on the route methods that
# Serve's ingress re-wraps (as strings they did not resolve, and every connection was refused with 1008).
import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from fastapi import FastAPI, WebSocket
from fastapi.responses import PlainTextResponse
from ray import serve
from starlette.websockets import WebSocketDisconnect

from vla_ros.serving import protocol
from vla_ros.serving.security import key_matches

APP_NAME = "vla_ros_policy"
log = logging.getLogger("vla_ros.serving")


@dataclass(frozen=True)
class ServerConfig:
    """What each replica needs to build its policy and check requests (travels to the replicas as a dict)."""

    policy: str
    backend: str = "builtin-torch"
    tokenizer_path: str = ""
    episode_data: str = ""
    episode_index: int = 0
    temperature: float = 0.1
    threads: int = 1
    device: str = "auto"
    seed: int = 0
    api_key_sha256: str | None = None  # the key's digest; None: no authentication (only when switched off)
    max_request_bytes: int = protocol.DEFAULT_MAX_REQUEST_BYTES
    max_batch: int = 8
    batch_wait_ms: float = 2.0


app = FastAPI(title="vla_ros policy server", docs_url=None, redoc_url=None, openapi_url=None)


@serve.deployment(name="PolicyServer")
@serve.ingress(app)
class PolicyServer:
    def __init__(self, config: dict):
        from dataclasses import replace  # noqa: PLC0415

        from vla_ros.core.stages.policy import PolicySettings  # noqa: PLC0415
        from vla_ros.serving.host import PolicyHost  # noqa: PLC0415

        self.config = ServerConfig(**config)
        c = self.config
        settings = replace(PolicySettings(), backend=c.backend, model_path=c.policy, tokenizer_path=c.tokenizer_path,
                           episode_data=c.episode_data, episode_index=c.episode_index, temperature=c.temperature)
        self.host = PolicyHost(settings, threads=c.threads, device=c.device, seed=c.seed)
        self.metadata = protocol.pack(self.host.metadata(c.max_request_bytes))
        self.needs_image = self.host.image_size is not None
        self.infer.set_max_batch_size(c.max_batch)
        self.infer.set_batch_wait_timeout_s(c.batch_wait_ms / 1e3)
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="policy")  # inference off the event loop

    @app.get("/healthz")
    def healthz(self) -> PlainTextResponse:
        return PlainTextResponse("OK\n")

    async def _deny(self, websocket: WebSocket, reason: str) -> None:
        """Refuse before the handshake completes: HTTP 401 with the reason where the front supports it."""
        if "websocket.http.response" in websocket.scope.get("extensions", {}):
            await websocket.send_denial_response(PlainTextResponse(reason + "\n", status_code=401))
            return
        # Else the same sentence as openpi's error frame, then close (1008: policy violation).
        await websocket.accept()
        await websocket.send_text(protocol.error_text(reason))
        await websocket.close(code=1008, reason=reason[:120])

    @app.websocket("/")
    async def session(self, websocket: WebSocket) -> None:
        if self.config.api_key_sha256 is not None and not key_matches(websocket.headers.get("authorization"),
                                                                      self.config.api_key_sha256):
            given = websocket.headers.get("authorization")
            await self._deny(websocket, "API key missing or wrong: send the header 'Authorization: Api-Key <key>'"
                             if given is None else "API key missing or wrong: the key in 'Authorization' is not "
                             "this server's")
            return
        await websocket.accept()
        await websocket.send_bytes(self.metadata)
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                await self._answer(websocket, message)
        except WebSocketDisconnect:
            return

    async def _answer(self, websocket: WebSocket, message: dict) -> None:
        started = time.perf_counter()
        data = message.get("bytes")
        if data is None:
            await websocket.send_text(protocol.error_text("expected a binary msgpack observation, got a text message"))
            return
        try:
            observation = protocol.parse_observation(protocol.unpack(data, self.config.max_request_bytes),
                                                     needs_image=self.needs_image)
        except protocol.ProtocolError as exc:
            await websocket.send_text(protocol.error_text(str(exc)))
            return
        try:
            reply = await self.infer(observation)
        except Exception as exc:  # noqa: BLE001 - the reply is one sentence; the log keeps the details
            log.exception("inference failed")
            await websocket.send_text(protocol.error_text(f"inference failed on the server ({type(exc).__name__})"))
            return
        reply[protocol.SERVER_TIMING] = {**reply[protocol.SERVER_TIMING],
                                         "total_ms": (time.perf_counter() - started) * 1e3}
        await websocket.send_bytes(protocol.pack(reply))

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.002)
    async def infer(self, observations: list) -> list[dict]:
        return await asyncio.get_running_loop().run_in_executor(self.pool, self.host.infer_batch, observations)


@dataclass(frozen=True)
class ScalingOptions:
    replicas: int = 1
    max_replicas: int = 0  # > replicas: autoscale between the two on connections per replica
    target_connections: int = 4  # autoscaling target: open connections per replica
    max_connections: int = 64  # per replica; each open websocket holds one of Serve's ongoing-request slots
    cpus_per_replica: float = 1.0
    gpus_per_replica: float = 0.0


def policy_application(config: ServerConfig, scaling: ScalingOptions):
    """The bound Serve application."""
    options: dict = {"max_ongoing_requests": scaling.max_connections,
                     "ray_actor_options": {"num_cpus": scaling.cpus_per_replica,
                                           "num_gpus": scaling.gpus_per_replica}}
    if scaling.max_replicas > scaling.replicas:
        options["autoscaling_config"] = {"min_replicas": scaling.replicas, "max_replicas": scaling.max_replicas,
                                         "target_ongoing_requests": scaling.target_connections}
    else:
        options["num_replicas"] = scaling.replicas
    return PolicyServer.options(**options).bind(asdict(config))
