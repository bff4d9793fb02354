"""What a policy server answers, whatever carries the websocket: the API key check, the metadata, one reply per
message. Used by both fronts of `vla-ros serve` (Serve's proxy route and the replica's own listener)."""

from __future__ import annotations

import logging
import time
from typing import Awaitable, Callable

from vla_ros.serving import protocol
from vla_ros.serving.security import key_matches

log = logging.getLogger("vla_ros.serving")
MISSING_KEY = "API key missing or wrong: send the header 'Authorization: Api-Key <key>'"
WRONG_KEY = "API key missing or wrong: the key in 'Authorization' is not this server's"


class PolicySession:
    """The server side of the protocol over a `PolicyHost`; `infer(observation) -> reply` may batch."""

    def __init__(self, host, *, api_key_sha256: str | None, max_request_bytes: int):
        self.api_key_sha256, self.max_request_bytes = api_key_sha256, max_request_bytes
        self.metadata = protocol.pack(host.metadata(max_request_bytes))
        self.needs_image = host.image_size is not None

    def refusal(self, authorization: str | None) -> str | None:
        """Why a connection with this `Authorization` header is refused, or None."""
        if self.api_key_sha256 is None or key_matches(authorization, self.api_key_sha256):
            return None
        return MISSING_KEY if authorization is None else WRONG_KEY

    async def answer(self, data: bytes | None, infer: Callable[[protocol.Observation], Awaitable[dict]]) -> bytes | str:
        """The reply to one message (`data` None: a text message): a binary reply, or one error sentence."""
        started = time.perf_counter()
        if data is None:
            return protocol.error_text("expected a binary msgpack observation, got a text message")
        try:
            observation = protocol.parse_observation(protocol.unpack(data, self.max_request_bytes),
                                                     needs_image=self.needs_image)
        except protocol.ProtocolError as exc:
            return protocol.error_text(str(exc))
        try:
            reply = await infer(observation)
        except Exception as exc:  # noqa: BLE001 - the reply is one sentence; the log keeps the details
            log.exception("inference failed")
            return protocol.error_text(f"inference failed on the server ({type(exc).__name__})")
        reply[protocol.SERVER_TIMING] = {**reply[protocol.SERVER_TIMING],
                                         "total_ms": (time.perf_counter() - started) * 1e3}
        return protocol.pack(reply)
