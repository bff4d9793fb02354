"""`vla-ros serve`: a policy on Ray Serve behind a websocket ingress that speaks openpi's protocol.

One Serve deployment, `PolicyServer`, holds the policy (`vla_ros.serving.host.PolicyHost`) and a FastAPI ingress
with the websocket route `/` (and `GET /healthz`). Each connection is authenticated, gets the metadata map, then
sends observations; every observation goes through `infer`, a `@serve.batch` method, so requests from all the
connections a replica holds are answered in batches (up to `max_batch`, waiting at most `batch_wait_ms` for a
batch to fill). The batched method lives in the ingress deployment itself: calling a second deployment through a
handle cost about 3× the throughput on this kind of machine (docs/remote.md). Replicas (fixed, or autoscaled on
connections per replica) each hold their own copy of the policy; Serve's proxy spreads new connections over them.

With `front="replica"` robots bypass Serve's proxy: every replica listens on the port itself
(`vla_ros.serving.replica_front`), which saves the proxy's two Ray hops per message; Serve still deploys, places,
health-checks and restarts the replicas. Both fronts answer through the same `PolicySession`.

Security (docs/remote.md): an API key is required unless explicitly switched off, compared in constant time; TLS
through Serve's proxy (`ssl_certfile`/`ssl_keyfile`); a request size limit; msgpack with numeric arrays only.
A malformed request gets one text reply (one sentence, never a traceback) and the connection keeps serving; an
unauthenticated one is refused before any data is exchanged.
"""

# No `from __future__ import annotations` here: FastAPI must see the real WebSocket class on the route methods that
# Serve's ingress re-wraps (as strings they did not resolve, and every connection was refused with 1008).
import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from fastapi import FastAPI, WebSocket
from fastapi.responses import PlainTextResponse
from ray import serve
from starlette.websockets import WebSocketDisconnect

from vla_ros.serving import protocol
from vla_ros.serving.session import PolicySession

APP_NAME = "vla_ros_policy"


FRONTS = ("serve", "replica")


@dataclass(frozen=True)
class ServerConfig:
    """What each replica needs to build its policy and check requests (travels to the replicas as a dict)."""

    policy: str
    backend: str = "builtin-torch"
    adapter_path: str = ""  # a LoRA adapter trained on `policy`, merged at load
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
    batch_wait_ms: float = 0.0
    # "replica": each replica listens on host:port itself; "serve": robots connect through Serve's proxy.
    front: str = "replica"
    host: str = "0.0.0.0"
    port: int = 8000
    tls_cert: str = ""
    tls_key: str = ""


app = FastAPI(title="vla_ros policy server", docs_url=None, redoc_url=None, openapi_url=None)


@serve.deployment(name="PolicyServer")
@serve.ingress(app)
class PolicyServer:
    def __init__(self, config: dict):
        from dataclasses import replace  # noqa: PLC0415

        from vla_ros.core.stages.policy import PolicySettings  # noqa: PLC0415
        from vla_ros.serving.host import PolicyHost  # noqa: PLC0415

        self.config = c = ServerConfig(**config)
        settings = replace(PolicySettings(), backend=c.backend, model_path=c.policy, adapter_path=c.adapter_path,
                           tokenizer_path=c.tokenizer_path,
                           episode_data=c.episode_data, episode_index=c.episode_index, temperature=c.temperature)
        self.host = PolicyHost(settings, threads=c.threads, device=c.device, seed=c.seed)
        self.session = PolicySession(self.host, api_key_sha256=c.api_key_sha256,
                                     max_request_bytes=c.max_request_bytes)
        self.infer.set_max_batch_size(c.max_batch)
        self.infer.set_batch_wait_timeout_s(c.batch_wait_ms / 1e3)
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="policy")  # inference off the event loop
        self.front = None
        if c.front == "replica":
            from vla_ros.serving.replica_front import ReplicaFront  # noqa: PLC0415

            self.front = ReplicaFront(self.session, self.host.infer_batch, host=c.host, port=c.port,
                                      max_batch=c.max_batch, batch_wait_s=c.batch_wait_ms / 1e3, tls_cert=c.tls_cert,
                                      tls_key=c.tls_key)

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
    async def connection(self, websocket: WebSocket) -> None:
        reason = self.session.refusal(websocket.headers.get("authorization"))
        if reason is not None:
            await self._deny(websocket, reason)
            return
        await websocket.accept()
        await websocket.send_bytes(self.session.metadata)
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                reply = await self.session.answer(message.get("bytes"), self.infer)
                await (websocket.send_bytes(reply) if isinstance(reply, bytes) else websocket.send_text(reply))
        except WebSocketDisconnect:
            return

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.0)
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
