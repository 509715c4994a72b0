"""Scale-out, simulated: three inference replicas behind the stand-in for Modal's proxy, the real
gateway in front, driven by the Python SDK (used by tests/e2e/test_scale_out.py and
bench/routing.py)."""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from modal_proxy import ModalProxyStandIn
from pydantic import SecretStr
from sam2_inference import InferenceSettings, Sam2Engine
from sam2_inference import create_app as create_inference_app
from sam2_inference.api.serving import BackgroundServer
from sam2_inference.video.service import VideoService
from sam2_sdk import Sam2Client
from support import encode, free_port, fresh_engine, running_gateway, scene

PROXY_TOKEN = ("wk-stand-in", "ws-stand-in")


@dataclass
class Cluster:
    gateway_url: str
    key: str
    replicas: list[BackgroundServer]
    proxy: ModalProxyStandIn


@dataclass(frozen=True)
class Report:
    repeat_clicks: int
    repeat_hits: int
    repeat_clicks_before_stop: int
    repeat_hits_before_stop: int
    failures: int
    most_uploads_of_one_image: int
    images_uploaded_again: int

    @property
    def hit_rate(self) -> float:
        return self.repeat_hits / self.repeat_clicks

    @property
    def hit_rate_before_stop(self) -> float:
        return self.repeat_hits_before_stop / max(1, self.repeat_clicks_before_stop)


def images(count: int) -> list[bytes]:
    """Distinct small PNGs (the encoder's cost does not depend on the size)."""
    return [encode(scene(96, 128, seed=1000 + index)) for index in range(count)]


@contextmanager
def cluster(
    engine: Sam2Engine,
    settings: InferenceSettings,
    *,
    sticky: bool,
    replicas: int = 3,
    proxy_token: bool = True,
    videos: Callable[[], VideoService] | None = None,
    scopes: str = "segment",
    start_s: float | None = None,
) -> Iterator[Cluster]:
    """Replicas with caches (and, from `videos`, video sessions) of their own, sharing one
    loaded model, the proxy stand-in that requires a proxy token, and a gateway that has it
    (unless `proxy_token` is False). With `start_s`, the proxy starts a new replica (a cold
    start taking that long) whenever a request finds none live."""
    servers: list[BackgroundServer] = []

    def new_replica() -> str:
        app = create_inference_app(
            settings, engine=fresh_engine(engine), videos=videos() if videos else None
        )
        server = BackgroundServer(app, "127.0.0.1", free_port())
        server.start()
        servers.append(server)
        return f"http://127.0.0.1:{server.port}"

    urls = [new_replica() for _ in range(replicas)]
    proxy = ModalProxyStandIn(
        urls,
        sticky=sticky,
        token=PROXY_TOKEN,
        start=new_replica if start_s is not None else None,
        start_s=start_s or 0.0,
    )
    proxy.start()
    token = PROXY_TOKEN if proxy_token else ("", "")
    with tempfile.TemporaryDirectory() as tmp:
        database = f"sqlite:///{Path(tmp) / 'gateway.db'}"
        gateway = running_gateway(
            database,
            proxy.url,
            scopes=scopes,
            inference_proxy_key=SecretStr(token[0]),
            inference_proxy_secret=SecretStr(token[1]),
        )
        try:
            with gateway as running:
                yield Cluster(running.url, running.key, servers, proxy)
        finally:
            proxy.stop()
            for server in servers:
                server.stop()


def drive(
    running: Cluster, pictures: list[bytes], clicks: int, *, stop_at: int | None = None
) -> Report:
    """`clicks` rounds over every picture (the first uploads it), one SDK call at a time; the
    first replica stops before the `stop_at`-th call, if given."""
    failures = hits = repeats = hits_before = repeats_before = 0
    calls = 0
    with Sam2Client(base_url=running.gateway_url, api_key=running.key) as client:
        for round_ in range(clicks):
            for picture in pictures:
                if calls == stop_at:
                    running.replicas[0].stop()
                calls += 1
                try:
                    answer = client.segment(picture, points=[[20.0 + round_, 30.0]])
                except Exception:
                    failures += 1
                    continue
                if round_ > 0:
                    repeats += 1
                    hits += answer.cached
                    if stop_at is None or calls <= stop_at:
                        repeats_before += 1
                        hits_before += answer.cached
    uploads = Counter(f.session_id for f in running.proxy.log if f.uploaded and f.status == 200)
    return Report(
        repeat_clicks=repeats,
        repeat_hits=hits,
        repeat_clicks_before_stop=repeats_before,
        repeat_hits_before_stop=hits_before,
        failures=failures,
        most_uploads_of_one_image=max(uploads.values()),
        images_uploaded_again=sum(1 for n in uploads.values() if n > 1),
    )
