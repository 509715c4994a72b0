"""`sam2-inference`: serve the model over HTTP, or build a random-weight checkpoint."""

from __future__ import annotations

import argparse
import contextlib
import logging
from pathlib import Path
from typing import Any

from sam2_contract.models import MODEL_IDS

from sam2_inference.config import InferenceSettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="sam2-inference", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--model", choices=sorted(MODEL_IDS), help="SAM 2.1 model (SAM2_MODEL)")
    serve.add_argument(
        "--weights",
        help="huggingface | random | auto | PATH to a checkpoint (SAM2_WEIGHTS)",
    )
    serve.add_argument("--device", choices=["auto", "cuda", "mps", "cpu"], help="(SAM2_DEVICE)")
    serve.add_argument(
        "--pipeline", choices=["auto", "exact", "fast"], help="(SAM2_PIPELINE, default auto)"
    )
    serve.add_argument("--host", help="(SAM2_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="(SAM2_PORT, default 8081)")

    build = commands.add_parser("random-checkpoint", help="write a seeded random-weight checkpoint")
    build.add_argument("--model", choices=sorted(MODEL_IDS), default="tiny")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--out", type=Path, required=True)

    args = parser.parse_args(argv)
    # sam2 logs every set_image at INFO on the root logger: keep the root at WARNING and
    # let this service's own loggers speak at INFO.
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("sam2_inference").setLevel(logging.INFO)
    if args.command == "serve":
        _serve(args)
    else:
        from sam2_inference.runtime.weights import build_random_checkpoint

        path = build_random_checkpoint(args.model, args.out, seed=args.seed)
        print(f"wrote RANDOM-weight {args.model} checkpoint to {path}")


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from sam2_inference.api.app import create_app

    overrides: dict[str, Any] = {
        key: value
        for key in ("model", "weights", "device", "pipeline", "host", "port")
        if (value := getattr(args, key)) is not None
    }
    settings = InferenceSettings(**overrides)
    # On Ctrl-C uvicorn shuts down gracefully, then raises the signal again: a KeyboardInterrupt.
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")
