"""The gateway CLI: key management, and the local stack that the README's run command starts."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from support import PEPPER, bearer, free_port, image_b64, raw_exchange

ROOT = Path(__file__).parents[2]


def _cli(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "sam2_gateway", *args],
        env=os.environ | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def test_keys_create_list_revoke_usage(tmp_path: Path, signing_key: str) -> None:
    env = {
        "SAM2_GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'k.db'}",
        "SAM2_GATEWAY_KEY_PEPPER": PEPPER,
        "SAM2_GATEWAY_JWT_PRIVATE_KEY": signing_key,
    }
    created = _cli("keys", "create", "--name", "web app", "--scopes", "segment", env=env)
    key = created.splitlines()[0]
    key_id = key.split("_")[1]
    assert re.fullmatch(r"sam2_[a-z2-7]{12}_[0-9A-Za-z]{32}_[0-9A-Za-z]{6}", key)
    listing = _cli("keys", "list", env=env)
    assert key_id in listing
    assert "web app" in listing
    assert "active" in listing
    assert key not in listing
    assert _cli("keys", "revoke", key_id, env=env).strip() == f"revoked {key_id}"
    assert "revoked" in _cli("keys", "list", env=env)
    assert _cli("keys", "usage", env=env).splitlines()[0].split() == [
        "key_id",
        "day",
        "requests",
        "images",
        "masks",
        "gpu_ms",
    ]


def test_state_dir_works_before_or_after_the_action_and_expiry_is_at_least_a_day(
    tmp_path: Path,
) -> None:
    state = str(tmp_path / "state")
    before = _cli("keys", "--state-dir", state, "create", "--name", "a", env={}).split()[0]
    after = _cli("keys", "create", "--name", "b", "--state-dir", state, env={}).split()[0]
    listing = _cli("keys", "list", "--state-dir", state, env={})
    assert before.split("_")[1] in listing
    assert after.split("_")[1] in listing
    create = [sys.executable, "-m", "sam2_gateway", "keys", "create", "--name", "c"]
    for days in ("0", "-1", "soon"):
        done = subprocess.run(
            [*create, "--state-dir", state, "--expires-in-days", days],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2
        assert "1 or more days" in done.stderr
    assert len(_cli("keys", "list", "--state-dir", state, env={}).splitlines()) == 3


def test_keys_refuse_placeholder_secrets_in_production(tmp_path: Path) -> None:
    env = {"SAM2_GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'k.db'}"}
    done = subprocess.run(
        [sys.executable, "-m", "sam2_gateway", "keys", "list"],
        env={k: v for k, v in os.environ.items() if not k.startswith("SAM2_GATEWAY_")} | env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "SAM2_GATEWAY_KEY_PEPPER" in done.stderr


def _start_stack(
    state: Path, port: int, inference_port: int, checkpoint: Path
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sam2_gateway",
            "stack",
            "--state-dir",
            str(state),
            "--port",
            str(port),
            "--inference-port",
            str(inference_port),
        ],
        env=os.environ | {"SAM2_WEIGHTS": str(checkpoint), "SAM2_DEVICE": "cpu"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )


def _read_until(process: subprocess.Popen[str], pattern: str, timeout_s: float = 180) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            pytest.fail("the stack exited early:\n" + "".join(lines))
        lines.append(line)
        if re.search(pattern, line):
            return lines
    pytest.fail("timed out waiting for the stack:\n" + "".join(lines))


def _wait_for(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)


def _stop(process: subprocess.Popen[str]) -> str:
    """Ctrl-C in a terminal: SIGINT to the whole foreground process group."""
    os.killpg(process.pid, signal.SIGINT)
    rest, _ = process.communicate(timeout=60)
    return rest


def test_the_local_stack_starts_serves_and_stops(tmp_path: Path, checkpoint: Path) -> None:
    port, inference_port = free_port(), free_port()
    state = tmp_path / "state"
    stack = _start_stack(state, port, inference_port, checkpoint)
    try:
        lines = _read_until(stack, r"curl -s")
        text = "".join(lines)
        key = re.search(r"sam2_[a-z2-7]{12}_[0-9A-Za-z]{32}_[0-9A-Za-z]{6}", text)
        assert key is not None, text
        assert "RANDOM WEIGHTS" in text
        _wait_for(f"http://127.0.0.1:{port}/healthz")
        body = {"image": image_b64("landscape"), "point_coords": [[100, 50]], "mask_format": "rle"}
        answer = httpx.post(
            f"http://127.0.0.1:{port}/v1/segment",
            json=body,
            headers=bearer(key.group(0)),
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"]["random_weights"] is True
        # The stack's server bounds request heads (sam2_gateway.server).
        huge = b"GET /healthz HTTP/1.1\r\nhost: t\r\nx-padding: %s\r\n\r\n" % (b"x" * (1 << 20))
        assert raw_exchange(port, huge).startswith(b"HTTP/1.1 431")
    finally:
        rest = _stop(stack)
    assert stack.returncode == 0
    assert "Traceback" not in rest, rest
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{inference_port}/healthz", timeout=1)

    # A second start keeps the key store and its secrets: the first key still works.
    again = _start_stack(state, port, inference_port, checkpoint)
    try:
        lines = _read_until(again, r"shown on first start")
        _wait_for(f"http://127.0.0.1:{port}/healthz")
        token = httpx.post(
            f"http://127.0.0.1:{port}/v1/auth/token", headers=bearer(key.group(0)), timeout=10
        )
        assert token.status_code == 200
    finally:
        _stop(again)
    assert again.returncode == 0


def test_ctrl_c_while_the_model_loads_stops_both_without_a_traceback(
    tmp_path: Path, checkpoint: Path
) -> None:
    stack = _start_stack(tmp_path / "state", free_port(), free_port(), checkpoint)
    lines = _read_until(stack, r"starting the inference service")
    time.sleep(1.0)  # the child is importing torch or loading the model
    [child] = _children(stack.pid)
    rest = _stop(stack)
    assert stack.returncode == 130
    assert "Traceback" not in "".join(lines) + rest, rest
    assert not Path(f"/proc/{child}").exists()


def test_scripts_dev_help_answers_at_once_with_every_stack_flag(tmp_path: Path) -> None:
    """Before any set-up: here there is no .venv nor scripts/bootstrap to run."""
    (tmp_path / "scripts").mkdir()
    dev = tmp_path / "scripts" / "dev"
    dev.write_text((ROOT / "scripts" / "dev").read_text())
    dev.chmod(0o755)
    done = subprocess.run([str(dev), "--help"], capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / ".venv").exists()
    flags = _cli("stack", "--help", env={})
    options = re.findall(
        r"^  (--[a-z-]+) [A-Z_]+\s+(.+)$", flags.replace("\n" + " " * 24, " "), re.M
    )
    assert {flag for flag, _ in options} == {"--state-dir", "--port", "--inference-port"}
    for flag, text in options:
        assert re.search(rf"^  {flag} \S+ +{re.escape(text)}$", done.stdout, re.M), flag


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def _ready(url: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        time.sleep(0.2)
    return False


def test_the_stack_supervises_its_inference_child(tmp_path: Path, checkpoint: Path) -> None:
    """Refuses a taken port; restarts a killed inference; the child dies with a killed stack."""
    port, inference_port = free_port(), free_port()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", inference_port))
        squatter.listen()
        refused = _start_stack(tmp_path / "state", port, inference_port, checkpoint)
        out, _ = refused.communicate(timeout=60)
    assert refused.returncode != 0
    assert f"port {inference_port} is already in use" in out

    stack = _start_stack(tmp_path / "state", port, inference_port, checkpoint)
    try:
        _read_until(stack, r"Gateway on")
        assert _ready(f"http://127.0.0.1:{port}/readyz", 60)
        [child] = _children(stack.pid)
        os.kill(child, signal.SIGKILL)
        assert _ready(f"http://127.0.0.1:{port}/readyz", 120), "inference was not restarted"
        [restarted] = _children(stack.pid)
        assert restarted != child
    finally:
        stack.kill()  # SIGKILL: no handler of the stack's runs
        stack.wait(timeout=30)
        assert stack.stdout is not None
        stack.stdout.close()
    deadline = time.monotonic() + 15
    while Path(f"/proc/{restarted}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (
        not Path(f"/proc/{restarted}").exists()
        or "Z" in Path(f"/proc/{restarted}/stat").read_text().rsplit(")", 1)[1].split()[0]
    ), "the inference child outlived its stack"
