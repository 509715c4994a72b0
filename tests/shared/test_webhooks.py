"""Webhook signatures (sam2_contract.webhooks, issue 30): the Standard Webhooks
specification's published test vector, a tampered body or id refused, replays refused by
the timestamp, and a rotation's second signature accepted."""

from __future__ import annotations

import pytest
from sam2_contract.webhooks import WebhookVerificationError, new_secret, sign, verify
from sam2_sdk import verify_webhook

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
STAMP = 1614265330
BODY = b'{"test": 2432232314}'
SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def _headers(signature: str = SIGNATURE, message_id: str = ID) -> dict[str, str]:
    return {
        "Webhook-Id": message_id,
        "Webhook-Timestamp": str(STAMP),
        "Webhook-Signature": signature,
    }


def test_the_specifications_vector_is_reproduced_and_verified() -> None:
    assert sign(SECRET, ID, STAMP, BODY) == SIGNATURE
    verify(SECRET, BODY, _headers(), now=STAMP + 10)
    verify_webhook(BODY.decode(), _headers(), SECRET, now=STAMP)  # the SDK's one call


@pytest.mark.parametrize(
    ("body", "headers", "now", "why"),
    [
        (b'{"test": 2432232315}', _headers(), STAMP, "no signature matches"),
        (BODY, _headers(message_id="msg_other"), STAMP, "no signature matches"),
        (BODY, _headers(), STAMP + 301, "too old"),
        (BODY, {"webhook-id": ID, "webhook-timestamp": str(STAMP)}, STAMP, "webhook-signature"),
        (BODY, _headers() | {"Webhook-Timestamp": "yesterday"}, STAMP, "Unix seconds"),
    ],
    ids=["altered body", "another id", "replayed later", "unsigned", "bad timestamp"],
)
def test_a_tampered_or_replayed_delivery_is_refused(
    body: bytes, headers: dict[str, str], now: int, why: str
) -> None:
    with pytest.raises(WebhookVerificationError, match=why):
        verify(SECRET, body, headers, now=now)


def test_while_rotating_either_secret_verifies() -> None:
    old, new = SECRET, new_secret()
    assert new.startswith("whsec_")
    assert new != new_secret()
    both = f"{sign(new, ID, STAMP, BODY)} {sign(old, ID, STAMP, BODY)}"
    verify(old, BODY, _headers(both), now=STAMP)
    verify(new, BODY, _headers(both), now=STAMP)
    with pytest.raises(WebhookVerificationError):
        verify(new_secret(), BODY, _headers(both), now=STAMP)
