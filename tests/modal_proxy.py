"""A stand-in for Modal's proxy in front of a Server's containers (test and bench only).

What Modal's proxy does, as far as the gateway can tell:
- it answers 401 without the proxy token when one is set;
- a request carrying `Modal-Session-ID` goes to the live replica that wins rendezvous hashing
  on it (so it keeps going there while that replica lives), any other request to a random one;
  `sticky=False` routes everything at random, for comparison;
- a replica that refuses connections is skipped, as Modal routes around a stopped container;
- with no live replica it answers 503 at once, with no problem body, and (given `start`)
  starts one, which is live `start_s` seconds later: a cold start;
- `scale_down(replica)` takes a replica out of routing at once and stops it gracefully (what it
  is answering still completes), as Modal drains a container it scales down.
It records what it forwarded, and each cold start it began.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web

NOT_PASSED_ON = ("host", "content-length", "modal-key", "modal-secret", "transfer-encoding")
KEPT_IN_ANSWERS = ("content-type", "retry-after")


@dataclass(frozen=True)
class Forwarded:
    session_id: str | None
    replica: str
    request_bytes: int
    uploaded: bool  # the frame carried an image file after its request line
    status: int


class ModalProxyStandIn:
    def __init__(
        self,
        replicas: list[str],
        *,
        sticky: bool = True,
        token: tuple[str, str] | None = None,
        seed: int = 0,
        start: Callable[[], str] | None = None,
        start_s: float = 0.0,
    ) -> None:
        self.replicas, self.sticky, self.token = list(replicas), sticky, token
        self._start, self._start_s = start, start_s
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._starting: threading.Thread | None = None
        self.log: list[Forwarded] = []
        self.cold_starts: list[float] = []  # when each began (time.monotonic())
        self.no_replica_answers = 0
        self._loop = asyncio.new_event_loop()
        self.url = ""

    def start(self) -> str:
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=10)
        return self.url

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        if self._starting is not None:
            self._starting.join(timeout=self._start_s + 30)

    def scale_down(self, replica: str, stop: Callable[[], None]) -> threading.Thread:
        """No new request goes to `replica`; `stop` (graceful) runs beside what it answers."""
        with self._lock:
            self.replicas.remove(replica)
        stopping = threading.Thread(target=stop, daemon=True)
        stopping.start()
        return stopping

    async def _shutdown(self) -> None:
        await self._client.close()
        await self._runner.cleanup()

    async def _serve(self) -> None:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        self._client = aiohttp.ClientSession()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        given = (request.headers.get("Modal-Key"), request.headers.get("Modal-Secret"))
        if self.token is not None and given != self.token:
            return web.Response(status=401, text="modal-http: invalid credentials")
        body = await request.read()
        session_id = request.headers.get("Modal-Session-ID")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in NOT_PASSED_ON}
        for replica in self._order(session_id):
            try:
                async with self._client.request(
                    request.method, replica + request.path_qs, data=body, headers=headers
                ) as answer:
                    data = await answer.read()
            except aiohttp.ClientConnectionError:  # stopped: route around it
                continue
            uploaded = bool(body.partition(b"\n")[2])
            self.log.append(Forwarded(session_id, replica, len(body), uploaded, answer.status))
            kept = {
                k: v
                for k, v in answer.headers.items()
                if k.lower().startswith("x-sam2") or k.lower() in KEPT_IN_ANSWERS
            }
            return web.Response(status=answer.status, body=data, headers=kept)
        self.no_replica_answers += 1
        self._cold_start()
        return web.Response(status=503, text="no live replicas")

    def _cold_start(self) -> None:
        start = self._start
        if start is None:
            return
        with self._lock:
            if self._starting is not None and self._starting.is_alive():
                return
            self.cold_starts.append(time.monotonic())

            def run() -> None:
                time.sleep(self._start_s)
                url = start()
                with self._lock:
                    self.replicas.append(url)

            self._starting = threading.Thread(target=run, daemon=True)
            self._starting.start()

    def _order(self, session_id: str | None) -> list[str]:
        with self._lock:
            live = list(self.replicas)
        if self.sticky and session_id:
            return sorted(
                live,
                key=lambda r: hashlib.sha256(f"{session_id}|{r}".encode()).digest(),
                reverse=True,
            )
        return self._random.sample(live, len(live))
