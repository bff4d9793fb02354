"""The replica's own websocket listener (`vla-ros serve --front replica`): no proxy between robot and policy.

Serve's proxy relays every websocket message to the replica through Ray (two hops per request), which added about
4–9 ms per chunk on this kind of machine (docs/benchmarks.md). With this front each replica listens on the server's
port itself (SO_REUSEPORT: the kernel spreads new connections over the replicas of a host) and batches the requests
of all its connections with `Batcher`; Serve still deploys, places, health-checks and restarts the replicas.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from vla_ros.serving.session import PolicySession

# Messages up to this size get the protocol's one-sentence refusal when over the request limit; larger ones are cut
# off by the websocket layer (close code 1009), as Serve's proxy does above 16 MiB.
MAX_MESSAGE_BYTES = 16 << 20


class Batcher:
    """Requests from every connection, answered in batches of up to `max_batch`, waiting at most `wait_s` to fill."""

    def __init__(self, run_batch: Callable[[list], list], max_batch: int, wait_s: float):
        self.run_batch, self.max_batch, self.wait_s = run_batch, max_batch, wait_s
        self.queue: asyncio.Queue | None = None
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="policy")  # inference off the event loop

    async def submit(self, item):
        if self.queue is None:
            self.queue = asyncio.Queue()
            asyncio.get_running_loop().create_task(self._serve())
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((item, future))
        return await future

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = time.monotonic() + self.wait_s
            while len(batch) < self.max_batch:
                left = deadline - time.monotonic()
                if left <= 0 and self.queue.empty():
                    break
                try:
                    batch.append(self.queue.get_nowait() if left <= 0 else
                                 await asyncio.wait_for(self.queue.get(), left))
                except (asyncio.TimeoutError, asyncio.QueueEmpty):
                    break
            try:
                results = await loop.run_in_executor(self.pool, self.run_batch, [item for item, _ in batch])
            except Exception as exc:  # noqa: BLE001 - every waiting request learns of it
                for _, future in batch:
                    future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results):
                future.set_result(result)


class ReplicaFront:
    """A websockets server on its own thread and event loop inside the replica."""

    def __init__(self, session: PolicySession, run_batch: Callable[[list], list], *, host: str, port: int,
                 max_batch: int, batch_wait_s: float, tls_cert: str = "", tls_key: str = ""):
        self.session = session
        self.batcher = Batcher(run_batch, max_batch, batch_wait_s)
        context = None
        if tls_cert:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls_cert, tls_key)
        self.loop = asyncio.new_event_loop()
        started, failure = threading.Event(), []

        async def start():
            from websockets.asyncio.server import serve  # noqa: PLC0415

            self.server = await serve(self._connection, host, port, ssl=context, reuse_port=True, compression=None,
                                      max_size=max(MAX_MESSAGE_BYTES, session.max_request_bytes + 4096),
                                      process_request=self._authorize)

        def run():
            try:
                self.loop.run_until_complete(start())
            except Exception as exc:  # noqa: BLE001 - reported to the constructor
                failure.append(exc)
                started.set()
                return
            started.set()
            self.loop.run_forever()

        threading.Thread(target=run, name="replica_front", daemon=True).start()
        started.wait(30)
        if failure:
            raise failure[0]

    def _authorize(self, connection, request):
        reason = self.session.refusal(request.headers.get("Authorization"))
        return None if reason is None else connection.respond(401, reason + "\n")

    async def _connection(self, websocket) -> None:
        from websockets.exceptions import ConnectionClosed  # noqa: PLC0415

        try:
            await websocket.send(self.session.metadata)
            async for message in websocket:
                data = message if isinstance(message, bytes) else None
                await websocket.send(await self.session.answer(data, self.batcher.submit))
        except ConnectionClosed:
            return
