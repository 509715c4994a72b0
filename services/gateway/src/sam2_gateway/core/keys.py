"""API keys: `sam2_<key id>_<secret>_<check>`.

- the key id (12 base32 chars) finds the stored record without scanning;
- the secret is 32 base62 chars, about 190 random bits;
- the check is a CRC32 of the rest in 6 base62 chars, so junk and typos are refused without a
  database hit, and secret scanners can recognise a leaked key by its shape and checksum.

Only an HMAC-SHA256 of the whole key under a server-side pepper is stored; verification
compares in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import zlib
from dataclasses import dataclass

PREFIX = "sam2"
_BASE62 = string.digits + string.ascii_letters
_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"
_KEY = re.compile(r"sam2_([a-z2-7]{12})_([0-9A-Za-z]{32})_([0-9A-Za-z]{6})")


@dataclass(frozen=True, slots=True)
class ParsedKey:
    key_id: str
    full: str


class MalformedKeyError(ValueError):
    """Not shaped like a key, or its checksum is wrong."""


def generate_key() -> ParsedKey:
    """A new random key; show `full` to its owner once and store only `hash_key(full)`."""
    key_id = "".join(secrets.choice(_BASE32) for _ in range(12))
    secret = "".join(secrets.choice(_BASE62) for _ in range(32))
    body = f"{PREFIX}_{key_id}_{secret}"
    return ParsedKey(key_id=key_id, full=f"{body}_{_checksum(body)}")


def parse_key(candidate: str) -> ParsedKey:
    """Check a presented key's shape and checksum (no database involved)."""
    match = _KEY.fullmatch(candidate)
    if match is None:
        raise MalformedKeyError("not shaped like an API key")
    body = candidate.rsplit("_", 1)[0]
    if not hmac.compare_digest(_checksum(body), match.group(3)):
        raise MalformedKeyError("the key's checksum does not match")
    return ParsedKey(key_id=match.group(1), full=candidate)


def looks_like_key(candidate: str) -> bool:
    """Whether a bearer credential is meant as an API key (rather than a token)."""
    return candidate.startswith(PREFIX + "_")


def hash_key(full: str, pepper: str) -> str:
    return hmac.new(pepper.encode(), full.encode(), hashlib.sha256).hexdigest()


def verify_key(full: str, stored_hash: str, pepper: str) -> bool:
    return hmac.compare_digest(hash_key(full, pepper), stored_hash)


def _checksum(body: str) -> str:
    value = zlib.crc32(body.encode())
    digits = []
    for _ in range(6):
        value, digit = divmod(value, 62)
        digits.append(_BASE62[digit])
    return "".join(reversed(digits))
