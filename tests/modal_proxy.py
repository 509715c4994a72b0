"""A stand-in for Modal's proxy in front of a Server's containers (test and bench only).

Like Modal's: it answers 401 without the proxy token when one is set; a request carrying
`Modal-Session-ID` goes to the live replica that wins rendezvous hashing on it (so it keeps
going there while that replica lives), any other request to a random one; a replica that
refuses connections is skipped, as Modal routes around a stopped container. `sticky=False`
routes everything at random, for comparison. It records what it forwarded.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
from dataclasses import dataclass

import aiohttp
from aiohttp import web

PASSED_ON = ("content-type", "x-sam2-namespace", "x-request-id")


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
    ) -> None:
        self.replicas, self.sticky, self.token = replicas, sticky, token
        self._random = random.Random(seed)
        self.log: list[Forwarded] = []
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

    async def _handle(self, request: web.Request) -> web.Response:
        given = (request.headers.get("Modal-Key"), request.headers.get("Modal-Secret"))
        if self.token is not None and given != self.token:
            return web.Response(status=401, text="modal-http: invalid credentials")
        body = await request.read()
        session_id = request.headers.get("Modal-Session-ID")
        headers = {k: v for k, v in request.headers.items() if k.lower() in PASSED_ON}
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
            kept = {k: v for k, v in answer.headers.items() if k.lower().startswith("x-sam2")}
            return web.Response(
                status=answer.status,
                body=data,
                headers=kept | {"content-type": answer.headers.get("content-type", "")},
            )
        return web.Response(status=503, text="no live replica")

    def _order(self, session_id: str | None) -> list[str]:
        if self.sticky and session_id:
            return sorted(
                self.replicas,
                key=lambda r: hashlib.sha256(f"{session_id}|{r}".encode()).digest(),
                reverse=True,
            )
        return self._random.sample(self.replicas, len(self.replicas))
