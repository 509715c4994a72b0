"""Webhook signatures in the Standard Webhooks format (https://www.standardwebhooks.com), for
batch jobs' notifications (issue 30): the service signs, and a receiver verifies in one call
(`sam2_sdk.verify_webhook`, `verifyWebhook` in @sam2/sdk).

A secret is `whsec_` and the base64 of its key bytes. A delivery carries `webhook-id`,
`webhook-timestamp` (Unix seconds) and `webhook-signature`: `v1,` and the base64 HMAC-SHA256,
under the key, of `<id>.<timestamp>.<body>`; several space-separated while a secret is being
rotated. A receiver refuses a signature that does not match and a timestamp more than five
minutes from its clock (a replayed delivery)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
TOLERANCE_S = 300


class WebhookVerificationError(Exception):
    """A delivery that is not the service's: missing headers, another signature, or too old."""


def new_secret() -> str:
    """A new signing secret: 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header's value for one delivery."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(
    secret: str,
    body: bytes | str,
    headers: Mapping[str, str],
    *,
    now: float | None = None,
    tolerance_s: int = TOLERANCE_S,
) -> None:
    """Return if `body` with `headers` is a delivery signed with `secret`, else raise
    WebhookVerificationError saying why. Header names in any case."""
    named = {k.lower(): v for k, v in headers.items()}
    try:
        message_id = named["webhook-id"]
        stamp = named["webhook-timestamp"]
        offered = named["webhook-signature"]
    except KeyError as missing:
        raise WebhookVerificationError(f"no {missing.args[0]} header") from None
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not Unix seconds") from None
    moment = time.time() if now is None else now
    if abs(moment - timestamp) > tolerance_s:
        raise WebhookVerificationError(
            f"webhook-timestamp is {int(moment - timestamp)} s from now: too old or too new"
        )
    data = body.encode() if isinstance(body, str) else body
    expected = sign(secret, message_id, timestamp, data)
    for candidate in offered.split():
        if hmac.compare_digest(candidate.encode(), expected.encode()):
            return
    raise WebhookVerificationError("no signature matches: another secret, or an altered body")


def _key(secret: str) -> bytes:
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise WebhookVerificationError("the secret is not whsec_ and base64") from None
    if not key:
        raise WebhookVerificationError("the secret is empty")
    return key
