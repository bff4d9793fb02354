"""The `remote` policy source: observations to an openpi-compatible policy server, checked chunks back.

One persistent websocket connection (openpi's protocol, `vla_ros.serving.protocol`), opened on first use and
renewed with exponential backoff (0.25 s doubling to 5 s) after a failure; each request waits at most
`request_timeout`, and a request that times out drops the connection, so a late reply can never be taken for a
newer observation's. The image is resized on the robot before sending (optionally JPEG, to a vla_ros server).

Every reply is checked before it leaves here (`protocol.check_reply`): shape, finite values, the action space,
the echoed observation stamp. A refused reply, a refused connection or a timeout raises `Refused`; the caller
(the policy stage's driver) publishes nothing, so the executor runs dry and the safety monitor's policy lease
holds the arm. `diagnostics()` reports round trips, server time, reconnects and refusals by reason.
"""

from __future__ import annotations

import hashlib
import json
import ssl
import threading
import time
from collections import Counter

import numpy as np

from vla_ros.core.preprocess import center_crop_resize
from vla_ros.core.stages.policy import SourceOutput
from vla_ros.core.timing import Samples
from vla_ros.serving import protocol
from vla_ros.serving.protocol import REFUSAL_REASONS, Refused
from vla_ros.serving.security import ApiKeyError, authorization_header, client_api_key

DEFAULT_IMAGE_SIZE = 224  # openpi's policies take 224×224
MAX_REPLY_BYTES = 16 << 20
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.25, 5.0
CONNECT_TIMEOUT_S = 2.0
IDLE_RECONNECT_S = 10.0  # a connection unused this long is renewed before the next request


def _identity(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


class RemotePolicySource:
    """A policy source (`vla_ros.core.stages.policy.PolicySource`) backed by a policy server."""

    def __init__(self, url: str, *, api_key: str | None = None, action_space: str = "ee_delta",
                 action_dt: float = 0.2, request_timeout: float = 0.5, image_size: int = 0, jpeg_quality: int = 0,
                 reply: str = "actions", ca_file: str = "", connect_timeout: float = CONNECT_TIMEOUT_S,
                 clock=time.monotonic):
        if not url.startswith(("ws://", "wss://")):
            raise ValueError(f"policy_url={url!r} is not a ws:// or wss:// URL of a policy server")
        self.url, self.api_key, self.action_space, self.action_dt = url, api_key, action_space, action_dt
        self.request_timeout, self.requested_size, self.jpeg_quality = request_timeout, image_size, jpeg_quality
        self.want_tokens = reply == "tokens"
        self.connect_timeout, self.clock = connect_timeout, clock
        self.ssl_context = None
        if url.startswith("wss://"):
            self.ssl_context = ssl.create_default_context()
            if ca_file:
                self.ssl_context.load_verify_locations(ca_file)
        self.ws = None
        self.metadata: dict = {}
        self.backoff_s = 0.0
        self.next_attempt = 0.0
        self.last_used = 0.0  # when the connection last carried a request (clock)
        self.connections = 0
        self.refused: Counter = Counter()
        self.last_refusal = ""
        self.rtt, self.server = Samples(maxlen=500), Samples(maxlen=500)
        self.lock = threading.Lock()  # diagnostics are read from another thread than the requests'

    @classmethod
    def from_settings(cls, settings) -> RemotePolicySource:
        """From `PolicySettings` (backend remote); PolicyLoadError names the setting that is wrong."""
        from vla_ros.policy.errors import PolicyLoadError  # noqa: PLC0415

        if not settings.policy_url:
            raise PolicyLoadError("backend 'remote' needs the setting policy_url (ws://host:port or wss://host:port)")
        try:
            key = client_api_key(settings.api_key_file)
            return cls(settings.policy_url, api_key=key, action_space=settings.action_space,
                       action_dt=settings.action_dt, request_timeout=settings.request_timeout,
                       image_size=settings.remote_image_size, jpeg_quality=settings.jpeg_quality,
                       reply=settings.remote_reply, ca_file=settings.tls_ca_file)
        except ApiKeyError as exc:
            raise PolicyLoadError(f"api_key_file: {exc}") from None
        except (ValueError, OSError) as exc:
            raise PolicyLoadError(str(exc) if isinstance(exc, ValueError) else
                                  f"tls_ca_file={settings.tls_ca_file!r} cannot be read ({exc})") from None

    # ------------------------------------------------------------------------------------ what the stage reads
    @property
    def image_size(self) -> int:
        """The square size sent: the setting, else what the server announces (ours, or vLLM-Omni's square
        `image_resolution`), else openpi's 224."""
        if self.requested_size:
            return self.requested_size
        announced = self.metadata.get("vla_ros/image_size")
        resolution = self.metadata.get("image_resolution")
        if announced is None and isinstance(resolution, (list, tuple)) and len(set(resolution)) == 1:
            announced = resolution[0]
        return int(announced) if isinstance(announced, int) and announced > 0 else DEFAULT_IMAGE_SIZE

    @property
    def identity(self) -> str:
        """The server's policy identity when it announces one (16 hex digits), else a hash of URL and metadata."""
        announced = self.metadata.get("vla_ros/identity")
        if isinstance(announced, str) and 0 < len(announced) <= 16 and all(c in "0123456789abcdef" for c in announced):
            return announced
        return _identity(self.url + json.dumps(self.metadata, sort_keys=True, default=str))

    @property
    def connected(self) -> bool:
        return self.ws is not None

    # ------------------------------------------------------------------------------------ connection
    def _refuse(self, reason: str, message: str) -> Refused:
        with self.lock:
            self.refused[reason] += 1
            self.last_refusal = f"{reason}: {message}"
        return Refused(reason, message)

    def _drop(self) -> None:
        """Close the connection and wait before the next attempt (doubling up to 5 s)."""
        if self.ws is not None:
            try:
                self.ws.close()
            except Exception:  # noqa: BLE001 - already broken
                pass
        self.ws = None
        self.backoff_s = min(BACKOFF_MAX_S, max(BACKOFF_FIRST_S, self.backoff_s * 2))
        self.next_attempt = self.clock() + self.backoff_s

    def _connection(self):
        if self.ws is not None:
            return self.ws
        wait = self.next_attempt - self.clock()
        if wait > 0:
            raise Refused("unreachable", f"not connected to {self.url} ({self.last_refusal or 'not tried'}); next "
                                         f"attempt in {wait:.2f} s")
        from websockets.exceptions import InvalidHandshake, InvalidStatus, WebSocketException  # noqa: PLC0415
        from websockets.sync.client import connect  # noqa: PLC0415

        headers = authorization_header(self.api_key) if self.api_key else None
        try:
            ws = connect(self.url, additional_headers=headers, compression=None, max_size=MAX_REPLY_BYTES,
                         open_timeout=self.connect_timeout, close_timeout=0.5, ssl=self.ssl_context, proxy=None,
                         legacy=True)
        except InvalidStatus as exc:
            self._drop()
            status = exc.response.status_code
            body = (exc.response.body or b"").decode("utf-8", "replace").strip()[:200]
            reason = "auth" if status in (401, 403) else "unreachable"
            raise self._refuse(reason, f"{self.url} refused the connection: HTTP {status}"
                                       f"{': ' + body if body else ''}") from None
        except (OSError, TimeoutError, InvalidHandshake, WebSocketException) as exc:
            self._drop()
            raise self._refuse("unreachable", f"cannot connect to {self.url}: {exc or type(exc).__name__}") from None
        self.ws = ws
        try:
            first = ws.recv(timeout=self.connect_timeout)
        except (TimeoutError, OSError, WebSocketException) as exc:
            self._drop()
            raise self._refuse("unreachable", f"{self.url} sent no metadata after connecting "
                                              f"({exc or type(exc).__name__})") from None
        if isinstance(first, str):
            self._drop()
            text = first.removeprefix(protocol.ERROR_PREFIX)
            raise self._refuse("auth" if "API key" in text else "server_error", f"{self.url}: {text}")
        try:
            metadata = protocol.unpack(first, MAX_REPLY_BYTES)
        except protocol.ProtocolError as exc:
            self._drop()
            raise self._refuse("malformed", f"{self.url} sent unreadable metadata: {exc}") from None
        metadata = metadata if isinstance(metadata, dict) else {}
        declared = metadata.get("vla_ros/action_space", metadata.get("action_space"))  # ours, or vLLM-Omni's
        if declared is not None and declared != self.action_space:
            self._drop()
            raise self._refuse("wrong_action_space", f"{self.url} serves {declared!r} actions; this robot expects "
                                                     f"{self.action_space!r} (setting action_space)")
        if self.want_tokens and not metadata.get("vla_ros/tokens"):
            self._drop()
            raise self._refuse("malformed", f"{self.url} sends no action tokens (remote_reply tokens needs a "
                                            "vla_ros server)")
        self.metadata = metadata
        self.connections += 1
        return ws

    def close(self) -> None:
        if self.ws is not None:
            try:
                self.ws.close()
            except Exception:  # noqa: BLE001
                pass
            self.ws = None

    # ------------------------------------------------------------------------------------ inference
    def _request(self, rgb, task, joints, frame_time_s, temperature, plan, stamp_ns) -> bytes:
        jpeg = None
        if rgb is not None and self.jpeg_quality and self.metadata.get("vla_ros/accepts_jpeg"):
            import cv2  # noqa: PLC0415

            ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]),
                                       [cv2.IMWRITE_JPEG_QUALITY, int(self.jpeg_quality)])
            jpeg = encoded.tobytes() if ok else None
        request = protocol.observation_request(rgb, task, joints, stamp_ns=stamp_ns, temperature=temperature,
                                               plan=plan, frame_time_s=frame_time_s, jpeg=jpeg)
        return protocol.pack(request)

    def generate(self, rgb, task, joints, *, frame_time_s, temperature, plan, rng, stamp_ns=0) -> SourceOutput:
        if self.ws is not None and self.clock() - self.last_used > IDLE_RECONNECT_S:
            # Servers close idle connections (vLLM-Omni after 30 s); between tasks, start afresh rather than lose
            # the task's first request to a connection the server has already dropped.
            self.close()
        self.last_used = self.clock()
        return self._generate(rgb, task, joints, frame_time_s, temperature, plan, stamp_ns)

    def _generate(self, rgb, task, joints, frame_time_s, temperature, plan, stamp_ns) -> SourceOutput:
        from websockets.exceptions import ConnectionClosed, WebSocketException  # noqa: PLC0415

        ws = self._connection()
        size = self.image_size  # the server's, known once connected (the stage resized to the default before)
        if rgb is not None and rgb.shape[:2] != (size, size):
            rgb = center_crop_resize(rgb, size)
        payload = self._request(rgb, task, joints, frame_time_s, temperature, plan, stamp_ns)
        started = time.perf_counter()
        try:
            ws.send(payload)
            raw = ws.recv(timeout=self.request_timeout)
        except TimeoutError:
            self._drop()
            raise self._refuse("timeout", f"no reply from {self.url} within {self.request_timeout:g} s "
                                          "(setting request_timeout); reconnecting") from None
        except (ConnectionClosed, OSError, WebSocketException) as exc:
            self._drop()
            raise self._refuse("closed", f"the connection to {self.url} broke ({exc or type(exc).__name__}); "
                                         "reconnecting") from None
        rtt = time.perf_counter() - started
        if isinstance(raw, str):  # the server refused this request and keeps the connection
            raise self._refuse("server_error", f"{self.url}: {raw.removeprefix(protocol.ERROR_PREFIX)}")
        try:
            reply = protocol.check_reply(protocol.unpack(raw, MAX_REPLY_BYTES), action_space=self.action_space,
                                         sent_stamp_ns=stamp_ns, want_tokens=self.want_tokens)
        except protocol.ProtocolError as exc:
            raise self._refuse("malformed", f"unreadable reply from {self.url}: {exc}") from None
        except Refused as exc:
            raise self._refuse(exc.reason, str(exc)) from None
        self.backoff_s = 0.0
        with self.lock:
            self.rtt.add(rtt)
            if reply.server_ms is not None:
                self.server.add(reply.server_ms / 1e3)
        if reply.tokens is not None:
            return SourceOutput(tokens=reply.tokens, plan=reply.plan, identity=reply.tokenizer)
        return SourceOutput(actions=reply.actions, plan=reply.plan, action_space=self.action_space,
                            step_dt=self.action_dt)

    # ------------------------------------------------------------------------------------ health
    def diagnostics(self) -> dict[str, str]:
        """Key → value for /diagnostics (the vla_policy node adds them to its status)."""
        with self.lock:
            values = {"remote_url": self.url, "remote_connected": str(self.connected).lower(),
                      "remote_server_identity": self.identity if self.metadata else "",
                      "remote_reconnects": str(max(0, self.connections - 1)),
                      "remote_last_refusal": self.last_refusal}
            values.update({f"remote_refused_{reason}": str(self.refused[reason]) for reason in REFUSAL_REASONS})
            for name, samples in (("rtt", self.rtt), ("server", self.server)):
                if samples.values:
                    values[f"remote_{name}_ms_p50"] = f"{samples.percentile_ms(50):.2f}"
                    values[f"remote_{name}_ms_p95"] = f"{samples.percentile_ms(95):.2f}"
        return values
