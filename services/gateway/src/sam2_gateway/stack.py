"""The local stack: the inference service as a child process and the gateway in this one.

State (the SQLite key store and the secrets that must survive restarts: the key pepper and the
JWT signing key) lives in one folder, `.sam2-dev/` by default, which git ignores. On the first
start a development key is created and printed once, with a curl line that works as pasted.
Ctrl-C stops both, quietly: the child runs in its own process group, so the terminal's SIGINT
reaches the stack alone, which stops the child with SIGTERM and waits for it.

Supervision: ports already taken (a stale service from an earlier stack, say) are refused at
start; a dead inference child is restarted with backoff (1 s doubling to 30 s, logged) while
the gateway answers 503 meanwhile; and the child dies with the stack on every exit path, a
SIGKILL of the stack included (Linux's parent-death signal).
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from pydantic import SecretStr

from sam2_gateway.core.config import GatewaySettings
from sam2_gateway.core.store import KeyStore
from sam2_gateway.core.tokens import generate_private_key_pem

log = logging.getLogger(__name__)

DEV_KEY_NAME = "development"
READY_TIMEOUT_S = 600
RESTART_BACKOFF_S = (1.0, 30.0)  # first wait, longest wait
PR_SET_PDEATHSIG = 1
# Looked up here, not in the forked child, where taking the loader's lock could deadlock.
_PRCTL = ctypes.CDLL(None).prctl if sys.platform.startswith("linux") else None


def local_settings(
    state_dir: str, *, port: int = 8080, inference_port: int = 8081
) -> GatewaySettings:
    """The gateway settings of the local stack whose state is in `state_dir`."""
    state = Path(state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    secrets_ = _persistent_secrets(state / "secrets.json")
    return GatewaySettings(
        environment="development",
        database_url=f"sqlite:///{state / 'gateway.db'}",
        usage_journal=state / "usage.journal",
        inference_url=f"http://127.0.0.1:{inference_port}",
        port=port,
        key_pepper=SecretStr(secrets_["key_pepper"]),
        jwt_private_key=SecretStr(secrets_["jwt_private_key"]),
    )


def run_stack(state_dir: str, *, port: int, inference_port: int) -> None:
    settings = local_settings(state_dir, port=port, inference_port=inference_port)
    for wanted in (inference_port, port):
        _refuse_taken(wanted)
    inference = Supervised(lambda: _start_inference(inference_port))
    try:
        _wait_until_ready(settings.inference_url, inference.process)
        inference.watch()
        store = KeyStore(settings.database_url, settings.key_pepper.get_secret_value())
        store.migrate()
        dev_key_id = _announce(store, port, state_dir)
        # The playground (http://127.0.0.1:<port>/playground/) gets tokens of the dev key.
        settings = settings.model_copy(update={"dev_token_key_id": dev_key_id})
        from sam2_gateway.main import create_app
        from sam2_gateway.server import serve

        serve(create_app(settings), host=settings.host, port=port)
    finally:
        inference.stop()


class Supervised:
    """A child process that is started again, with backoff, whenever it dies unasked."""

    def __init__(self, start: Callable[[], subprocess.Popen[bytes]]) -> None:
        self._start = start
        self.process = start()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)

    def watch(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        _stop(self.process)

    def _watch(self) -> None:
        backoff = RESTART_BACKOFF_S[0]
        while not self._stopping.wait(0.5):
            code = self.process.poll()
            if code is None:
                continue
            log.warning("the inference service exited with %s; restarting in %g s", code, backoff)
            if self._stopping.wait(backoff):
                return
            self.process = self._start()
            backoff = min(backoff * 2, RESTART_BACKOFF_S[1])


def _refuse_taken(port: int) -> None:
    with socket.socket() as probe:
        # As the servers bind: a port in TIME_WAIT from a stack just stopped is free to use.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise SystemExit(
                f"port {port} is already in use (a service left from an earlier stack?); "
                f"stop it (e.g. `fuser -k {port}/tcp`) or choose another port"
            ) from None


def _persistent_secrets(path: Path) -> dict[str, str]:
    """The dev secrets, made once: a new pepper would invalidate every stored key."""
    if not path.exists():
        fresh = {
            "key_pepper": secrets.token_urlsafe(32),
            "jwt_private_key": generate_private_key_pem(),
        }
        path.touch(mode=0o600)
        path.write_text(json.dumps(fresh))
    values: dict[str, str] = json.loads(path.read_text())
    return values


def _start_inference(port: int) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "SAM2_PORT": str(port),
        "SAM2_WEIGHTS": os.environ.get("SAM2_WEIGHTS", "auto"),
    }
    log.info("starting the inference service on port %d (weights: %s)", port, env["SAM2_WEIGHTS"])
    return subprocess.Popen(
        [sys.executable, "-m", "sam2_inference", "serve"],
        env=env,
        preexec_fn=_die_with_parent,
        process_group=0,  # out of the terminal's group: Ctrl-C is the stack's to handle
    )


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM it when the stack dies, however it dies (Linux)."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


def _wait_until_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the inference service exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:  # noqa: S310
                state = json.load(response).get("state")
        except OSError:
            state = None
        if state == "ready":
            return
        if state == "failed":
            raise SystemExit("the inference service could not load its model (see its log)")
        time.sleep(0.5)
    raise SystemExit("the inference service did not become ready in time")


def _announce(store: KeyStore, port: int, state_dir: str) -> str:
    """Print how to call the stack; returns the development key's id (made on first start)."""
    existing = [r for r in store.all_keys() if r.name == DEV_KEY_NAME and r.revoked_at is None]
    if existing:
        print(
            f"\nGateway on http://127.0.0.1:{port} (playground: /playground/). The development key"
            " was shown on first start;"
            f"\nmake another: sam2-gateway keys --state-dir {state_dir} create --name me\n",
            flush=True,
        )
        return existing[0].key_id
    key, _ = store.create(
        DEV_KEY_NAME, frozenset({"segment", "auto", "video", "jobs", "admin"}), rate_tier="dev"
    )
    print(
        f"\nGateway on http://127.0.0.1:{port} (playground: /playground/). Development API key"
        " (shown once, stored hashed):\n"
        f"\n    {key.full}\n\nTry it:\n\n"
        '    printf \'{"image":"%s","point_coords":[[100,100]],"mask_format":"rle"}\' '
        '"$(base64 -w0 photo.jpg)" \\\n'
        f"      | curl -s http://127.0.0.1:{port}/v1/segment -H 'authorization: Bearer {key.full}' "
        "-H 'content-type: application/json' -d @-\n",
        flush=True,
    )
    return key.key_id


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
