"""Test images and encoders shared by the suites (plain functions, no fixtures)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import importlib.util
import io
import json
import os
import socket
import struct
import subprocess
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import SecretStr
from sam2_contract.images import image_id_for_file
from sam2_contract.models import Pipeline
from sam2_contract.wire import FRAME_CONTENT_TYPE, pack_frame
from sam2_inference import EmbeddingCache, Sam2Engine
from sam2_inference.config import AutoSlice, DecoderPreference

PEPPER = "test-pepper-0123456789abcdef"
"""The gateway tests' API-key pepper."""


def service_url(variable: str) -> str:
    """The URL of a test server (PostgreSQL, Redis) that scripts/test-services starts: CI must
    have it; elsewhere the test is skipped with the command that starts it."""
    url = os.environ.get(variable)
    if url:
        return url
    if os.environ.get("CI"):
        pytest.fail(f"{variable} is not set: .ci/run must start the server (scripts/test-services)")
    pytest.skip(f'{variable} not set; run: eval "$(scripts/test-services)"')


def scene(height: int, width: int, *, seed: int = 0) -> np.ndarray:
    """A deterministic RGB picture of flat shapes on a background: few colours, so lossless
    and palette formats (GIF) all keep it pixel-exact."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, size=(8, 3), dtype=np.uint8)
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    pixels[:] = palette[0]
    yy, xx = np.mgrid[0:height, 0:width]
    for index in range(1, 8):
        cy, cx = rng.integers(0, height), rng.integers(0, width)
        ry, rx = (
            rng.integers(height // 8 + 1, height // 3 + 2),
            rng.integers(width // 8 + 1, width // 3 + 2),
        )
        pixels[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = palette[index]
    return pixels


def encode(pixels: np.ndarray | Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but holds almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


# Both orientations, neither square: the usual place for x/y and h/w mix-ups.
IMAGES = {"landscape": scene(120, 200, seed=1), "portrait": scene(200, 120, seed=2)}


def fresh_engine(
    loaded: Sam2Engine,
    *,
    cache_bytes: int = 1 << 30,
    max_request_bytes: int = 0,
    auto_slice: AutoSlice | None = None,
    pipeline: Pipeline | None = None,
    image_decoder: DecoderPreference = "auto",
) -> Sam2Engine:
    """A new engine on the loaded model: its own cache, lock and measured costs."""
    return Sam2Engine(
        loaded.model,
        loaded.info,
        EmbeddingCache(cache_bytes),
        max_pixels=loaded.max_pixels,
        max_request_bytes=max_request_bytes,
        auto_slice=loaded.auto_slice if auto_slice is None else auto_slice,
        pipeline=pipeline or loaded.info.pipeline,
        image_decoder=image_decoder,
    )


class EncoderCounter:
    """Counts runs of the image encoder through a forward hook on the real module."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.calls = 0
        self._handle = model.image_encoder.register_forward_hook(self._count)

    def _count(self, *_: object) -> None:
        self.calls += 1

    def close(self) -> None:
        self._handle.remove()


@dataclass(frozen=True)
class RunningServer:
    url: str
    engine: Sam2Engine


@dataclass(frozen=True)
class GatewayServer:
    url: str
    key: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def decoder_feed(
    tensors: dict[str, np.ndarray],
    prompt: dict[str, Any],
    orig_hw: tuple[int, int],
    mask: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The exported decoder's inputs as the Python SDK's local decoder sends them."""
    from sam2_sdk._local import decoder_inputs

    return {**tensors, **decoder_inputs(prompt, orig_hw, mask)}


SQL_TABLES = ("webhook_secrets", "job_items", "jobs", "usage", "api_keys", "alembic_version")
"""The gateway's tables, in an order they can be dropped in (a test that starts a shared
PostgreSQL database from nothing drops them all: a table left behind fails the migration)."""


def random_prompts(seed: int, width: int, height: int, count: int = 32) -> list[dict[str, Any]]:
    """`count` prompts on a width x height image, as `segment()` takes them, in turn: a click,
    clicks with a background one, a box, points with a box, and a refinement (the previous
    prompt's points and one more, `refine: True` meaning the previous answer's mask_id); one in
    three single-mask."""
    rng = np.random.default_rng(seed)

    def point() -> list[float]:
        return [float(rng.uniform(0, width - 1)), float(rng.uniform(0, height - 1))]

    def box() -> list[float]:
        (x0, x1), (y0, y1) = (
            sorted(rng.uniform(0, width - 5, 2)),
            sorted(rng.uniform(0, height - 5, 2)),
        )
        return [float(x0), float(y0), float(x1 + 4), float(y1 + 4)]  # inside, 4 px at least

    prompts: list[dict[str, Any]] = []
    for i in range(count):
        kind = i % 5
        if kind == 0:
            prompt: dict[str, Any] = {"points": [point()], "labels": [1]}
        elif kind == 1:
            prompt = {"points": [point(), point(), point()], "labels": [1, 0, 1]}
        elif kind == 2:
            prompt = {"box": box()}
        elif kind == 3:
            prompt = {"box": box(), "points": [point()], "labels": [int(rng.integers(0, 2))]}
        else:
            before = prompts[-1]
            points = [*before.get("points", []), point()]
            prompt = {"points": points, "labels": [*before.get("labels", []), 0], "refine": True}
            if "box" in before:
                prompt["box"] = before["box"]
        prompt["multimask"] = i % 3 != 2
        prompts.append(prompt)
    return prompts


def answer_prompts(segment: Callable[..., Any], prompts: list[dict[str, Any]]) -> list[Any]:
    """Each prompt's answer from `segment(**prompt)` (a server's or a local session's), with
    `refine: True` given as the previous answer's mask_id."""
    answers: list[Any] = []
    for prompt in prompts:
        fields = dict(prompt)
        if fields.pop("refine", False):
            fields["refine"] = answers[-1].mask_id
        answers.append(segment(**fields))
    return answers


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def load_script(name: str) -> Any:
    """A script of scripts/ as a module (they are files, not an installed package)."""
    path = Path(__file__).parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def post_segment(
    client: Any,
    body: Any,
    *,
    base_url: str = "",
    headers: dict[str, str] | None = None,
    **options: Any,
) -> Any:
    """A call of inference's one model route, as the gateway makes it: the request JSON on one
    line, then the image file (a valid base64 `image` travels as the file it encodes, the JSON
    naming its `image_id`; any other stays in the JSON, where the engine refuses it as it
    would). `body` is the request as a dict, or its raw JSON bytes; `client` a test client, an
    httpx client, or httpx itself with `base_url`."""
    image_file = None
    if isinstance(body, dict) and isinstance(body.get("image"), str) and "image_id" not in body:
        with contextlib.suppress(binascii.Error, ValueError):
            image_file = base64.b64decode(body["image"], validate=True) or None
            rest = {key: value for key, value in body.items() if key != "image"}
            body = rest | {"image_id": image_id_for_file(image_file)} if image_file else body
    line = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    return client.post(
        f"{base_url}/internal/segment",
        content=pack_frame(line, image_file),
        headers={"content-type": FRAME_CONTENT_TYPE} | (headers or {}),
        **options,
    )


def large_photo_b64(height: int = 3468, width: int = 4624) -> str:
    """A 16 MP JPEG by default (the largest image accepted), base64: a smooth picture, so the
    file stays a few MB while its masks are what is large."""
    yy, xx = np.mgrid[0:height:8, 0:width:8]
    small = np.stack([(xx * 255 // width), (yy * 255 // height), (xx + yy) % 256], axis=-1)
    image = Image.fromarray(small.astype(np.uint8)).resize((width, height))
    return b64(encode(image, "JPEG", quality=80))


def image_b64(name: str, fmt: str = "PNG") -> str:
    return b64(encode(IMAGES[name], fmt))


def masks_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b))


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


@contextmanager
def running_gateway(
    database_url: str, inference_url: str, *, scopes: str = "segment auto jobs", **changes: Any
) -> Iterator[GatewayServer]:
    """A real gateway on a real socket in front of `inference_url`, with one dev-tier key."""
    from sam2_gateway import GatewaySettings, KeyStore, create_app
    from sam2_gateway.core.tokens import generate_private_key_pem
    from sam2_gateway.server import BoundedHeadProtocol
    from sam2_inference.api.serving import BackgroundServer

    files = Path(database_url.removeprefix("sqlite:///")).parent / "job-files"
    settings = GatewaySettings(
        database_url=database_url,
        key_pepper=SecretStr(PEPPER),
        jwt_private_key=SecretStr(generate_private_key_pem()),
        inference_url=inference_url,
        **({"job_files_dir": files} | changes),
    )
    port = free_port()
    server = BackgroundServer(create_app(settings), "127.0.0.1", port, http=BoundedHeadProtocol)
    server.start()
    store = KeyStore(database_url, PEPPER)
    key, _ = store.create("test", frozenset(scopes.split()), rate_tier="dev")
    try:
        yield GatewayServer(url=f"http://127.0.0.1:{port}", key=key.full)
    finally:
        server.stop()
        store.dispose()


def run_hook(container: object, name: str) -> None:
    """Run a Modal lifecycle hook (`@modal.enter`, `@modal.exit`) of a class instance the way
    a container does: the undecorated method, on the instance."""
    hook = type(container).__dict__[name]
    hook._get_raw_f()(container)


class TcpForwarder:
    """Forwards a local port to `target` (host, port) until `stop()`, which closes the port
    and every connection through it: a dependency's network going away, for outage drills.
    `freeze()` stalls it instead: connections are still accepted and kept, but no byte moves
    either way until `thaw()`, as with a process stopped by SIGSTOP or a black-holed network."""

    def __init__(self, target: tuple[str, int]) -> None:
        self._target = target
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.port = 0

    def freeze(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def thaw(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.set)

    def start(self, port: int = 0) -> int:
        """Listen (on `port`, e.g. a stopped forwarder's, or any free one) and forward."""
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._connect, "127.0.0.1", port), self._loop
        ).result(timeout=10)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    def stop(self) -> None:
        async def close() -> None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            # Connections still being set up or piped end here, on this loop, not at garbage
            # collection after the loop is closed.
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for writer in list(self._writers):
                writer.close()
            self._writers.clear()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        await self._flowing.wait()
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers.add(up_writer)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    await self._flowing.wait()
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


def raw_exchange(port: int, requests: bytes) -> bytes:
    """Send bytes on one connection (as far as the server lets us) and read what comes back."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with contextlib.suppress(ConnectionError):
            sock.sendall(requests)
        answer = b""
        with contextlib.suppress(ConnectionError, TimeoutError):
            while chunk := sock.recv(65536):
                answer += chunk
    return answer


def run_node_against(gateway: GatewayServer, script: Path, *args: str) -> str:
    """Run a Node script with the gateway's URL and key in its environment; its stdout."""
    env = os.environ | {"SAM2_API_KEY": gateway.key, "SAM2_BASE_URL": gateway.url}
    done = subprocess.run(
        ["node", str(script), *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@contextmanager
def rss_peaks(pids: dict[str, int], every_s: float = 0.02) -> Iterator[dict[str, int]]:
    """Each process's highest resident memory while the block runs, over what it was when the
    block began (bytes), sampled every `every_s`; filled in when the block ends."""
    before = {name: rss(pid) for name, pid in pids.items()}
    peaks = dict(before)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for name, pid in pids.items():
                peaks[name] = max(peaks[name], rss(pid))
            done.wait(every_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    over: dict[str, int] = {}
    try:
        yield over
    finally:
        done.set()
        sampler.join()
        over.update({name: peaks[name] - before[name] for name in pids})


def rss(pid: int) -> int:
    """A process's resident memory in bytes (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def encoded(
    container_format: str,
    width: int,
    height: int,
    frames: int,
    *,
    gop: int | None = 12,
    fps: int = 10,
    picture: Callable[[int], np.ndarray] | None = None,
) -> bytes:
    """A clip of `frames` frames (`picture(index)`, height x width x 3 uint8; flat grey ones by
    default) at `fps`: MPEG-4 with a keyframe every `gop` frames (at most 600, the encoder's cap)
    and no other, or (`gop=None`) H.264 with its first frame its only keyframe."""
    out = io.BytesIO()
    with av.open(out, mode="w", format=container_format) as container:
        stream = container.add_stream("mpeg4" if gop else "libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if gop:
            stream.codec_context.gop_size = gop
            stream.codec_context.options = {"sc_threshold": "1000000000"}
        else:
            stream.codec_context.options = {
                "x264-params": "keyint=infinite:scenecut=0",
                "preset": "ultrafast",
            }
        for index in range(frames):
            pixels = (
                picture(index)
                if picture is not None
                else np.full((height, width, 3), (index * 7) % 256, np.uint8)
            )
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


def bypass_ts(side: int = 640) -> bytes:
    """The campaign's clip: a 64x64 TS, then a side x side one, one file (`cat a.ts b.ts`)."""
    return encoded("mpegts", 64, 64, 3) + encoded("mpegts", side, side, 3)


def remuxed(data: bytes, container_format: str) -> bytes:
    """The same packets in another container, timestamps renumbered (the header keeps the
    first part's size: 64x64)."""
    out = io.BytesIO()
    with av.open(io.BytesIO(data)) as source, av.open(out, "w", format=container_format) as sink:
        given = source.streams.video[0]
        stream = sink.add_stream_from_template(given)
        step = round(1 / (10 * given.time_base))
        for index, packet in enumerate(p for p in source.demux(given) if p.size):
            packet.stream = stream
            packet.time_base = given.time_base
            packet.pts = packet.dts = index * step
            sink.mux(packet)
    return out.getvalue()
