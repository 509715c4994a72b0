"""`sam2-gateway`: serve the gateway, manage API keys, or run the whole local stack."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sam2_gateway.api.deps import SCOPES
from sam2_gateway.core.config import GatewaySettings
from sam2_gateway.core.logs import configure_json_logging
from sam2_gateway.core.store import KeyRecord, KeyStore


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="sam2-gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway (settings from SAM2_GATEWAY_*)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    stack = commands.add_parser("stack", help="run inference and gateway together, locally")
    stack.add_argument(
        "--state-dir", default=".sam2-dev", help="keys, database, secrets (default .sam2-dev)"
    )
    stack.add_argument(
        "--port", type=int, default=8080, help="the gateway's port, with /playground/ (8080)"
    )
    stack.add_argument(
        "--inference-port", type=int, default=8081, help="the inference service's port (8081)"
    )

    schema = commands.add_parser("openapi", help="print the OpenAPI document (openapi.json)")
    schema.add_argument("--out", help="write it to this file instead")

    state_help = "manage the local stack's keys (e.g. .sam2-dev)"
    keys_parser = commands.add_parser("keys", help="API keys")
    keys_parser.add_argument("--state-dir", help=state_help)
    # Accepted after the action too (`keys create --state-dir X`), without overriding the above.
    state_dir = argparse.ArgumentParser(add_help=False)
    state_dir.add_argument("--state-dir", default=argparse.SUPPRESS, help=state_help)
    keys = keys_parser.add_subparsers(dest="action", required=True)

    def action(name: str, description: str) -> argparse.ArgumentParser:
        return keys.add_parser(name, help=description, parents=[state_dir])

    create = action("create", "create a key and print it (once)")
    create.add_argument("--name", required=True)
    create.add_argument(
        "--scopes", default="segment,auto,video,jobs", help=f"from {','.join(sorted(SCOPES))}"
    )
    create.add_argument("--tier", default="standard", help="rate tier (SAM2_GATEWAY_RATE_TIERS)")
    create.add_argument("--expires-in-days", type=_days, help="1 or more; omitted: never")
    action("list", "list keys (never their secrets)")
    revoke = action("revoke", "revoke a key; effective on its next request")
    revoke.add_argument("key_id")
    usage = action("usage", "requests, images, masks and GPU ms per key and day")
    usage.add_argument("key_id", nargs="?")

    args = parser.parse_args(argv)
    if args.command == "openapi":
        _openapi(args.out)
        return
    configure_json_logging()
    if args.command == "serve":
        _serve(args)
    elif args.command == "stack":
        from sam2_gateway.stack import run_stack

        try:
            run_stack(args.state_dir, port=args.port, inference_port=args.inference_port)
        except KeyboardInterrupt:  # Ctrl-C before the gateway served: the child is stopped
            raise SystemExit(130) from None
    else:
        _keys(args)


def _openapi(out: str | None) -> None:
    """The document the gateway serves at /openapi.json, as committed in the repository."""
    from sam2_gateway.main import create_app

    app = create_app(GatewaySettings(environment="development"))
    text = json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"
    if out is None:
        sys.stdout.write(text)
    else:
        Path(out).write_text(text)


def _days(value: str) -> int:
    days = int(value) if value.lstrip("-").isdigit() else 0
    if days < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: a key expires after 1 or more days")
    return days


def _serve(args: argparse.Namespace) -> None:
    from sam2_gateway.main import create_app
    from sam2_gateway.server import serve

    overrides = {k: v for k in ("host", "port") if (v := getattr(args, k)) is not None}
    settings = GatewaySettings(**overrides)
    serve(create_app(settings), host=settings.host, port=settings.port)


def _keys(args: argparse.Namespace) -> None:
    if args.state_dir:
        from sam2_gateway.stack import local_settings

        settings = local_settings(args.state_dir)
    else:
        settings = GatewaySettings()
    store = KeyStore(settings.database_url, settings.key_pepper.get_secret_value())
    store.migrate()
    if args.action == "create":
        scopes = frozenset(s.strip() for s in args.scopes.split(",") if s.strip())
        if unknown := scopes - SCOPES:
            raise SystemExit(f"unknown scopes: {', '.join(sorted(unknown))}")
        expires = (
            datetime.now(UTC) + timedelta(days=args.expires_in_days)
            if args.expires_in_days
            else None
        )
        key, record = store.create(args.name, scopes, rate_tier=args.tier, expires_at=expires)
        print(key.full)
        print(f"# key id {record.key_id}; shown once, only its hash is stored", flush=True)
    elif args.action == "list":
        _table(
            ["key_id", "name", "scopes", "tier", "created", "last used", "state"],
            [
                [
                    r.key_id,
                    r.name,
                    ",".join(sorted(r.scopes)),
                    r.rate_tier,
                    r.created_at.date().isoformat(),
                    r.last_used_at.date().isoformat() if r.last_used_at else "-",
                    _state(r),
                ]
                for r in store.all_keys()
            ],
        )
    elif args.action == "revoke":
        if not store.revoke(args.key_id):
            raise SystemExit(f"no active key {args.key_id}")
        print(f"revoked {args.key_id}")
    else:
        _table(
            ["key_id", "day", "requests", "images", "masks", "gpu_ms"],
            [
                [
                    u.key_id,
                    str(u.day),
                    str(u.requests),
                    str(u.images),
                    str(u.masks),
                    f"{u.gpu_ms:.0f}",
                ]
                for u in store.usage(args.key_id)
            ],
        )


def _state(record: KeyRecord) -> str:
    if record.revoked_at is not None:
        return "revoked"
    if record.expires_at is not None and record.expires_at <= datetime.now(UTC):
        return "expired"
    return "active"


def _table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
