"""Retry and timeout numbers, in one place."""

from __future__ import annotations

import httpx

DEFAULT_BASE_URL = "http://127.0.0.1:8080"
# A cold GPU container can take a minute or two to answer its first call: wait for it.
DEFAULT_TIMEOUT = httpx.Timeout(300.0, connect=10.0)
DEFAULT_MAX_RETRIES = 2
INITIAL_RETRY_DELAY_S = 0.5
MAX_RETRY_DELAY_S = 8.0
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
