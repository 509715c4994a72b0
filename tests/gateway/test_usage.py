"""GET /v1/usage: a key reads its own usage per UTC day and its tier's limits; nobody else's,
never with a browser token, and bad parameters are problems like any other."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sam2_gateway import GatewaySettings
from sam2_gateway.core.store import KeyStore, Usage
from support import RunningServer, bearer, image_b64


@pytest.fixture
def gateway(make_client: Callable[..., TestClient], inference_server: RunningServer) -> TestClient:
    return make_client(inference_url=inference_server.url)


def test_a_key_reads_what_it_used_today_at_once_and_its_limits(
    gateway: TestClient, new_key: Callable[..., str]
) -> None:
    key, other = new_key(), new_key()
    click = {"image": image_b64("portrait"), "point_coords": [[30, 40]], "mask_format": "rle"}
    first = gateway.post("/v1/segment", json=click, headers=bearer(key)).json()
    again = {"image_id": first["image_id"], "point_coords": [[60, 80]], "mask_format": "rle"}
    second = gateway.post("/v1/segment", json=again, headers=bearer(key)).json()
    report = _usage(gateway, key)  # no wait: the report includes the last call
    today = datetime.now(UTC).date()
    assert report["key_id"] == key.split("_")[1]
    assert report["rate_tier"] == "standard"
    assert report["limits"] == {
        "requests": 600,
        "window_s": 60,
        "concurrent": 8,
        "video_sessions": 2,
        "job_items": None,  # this key has no `jobs` scope
        "jobs": None,
        "job_running": None,
        "job_retention_days": None,
    }
    assert report["since"] == str(today - timedelta(days=29))
    [day] = report["days"]
    assert day["day"] == str(today)
    assert (day["requests"], day["images"], day["masks"]) == (2, 1, 2)
    spent = sum(
        a["timings_ms"]["embed_ms"] + a["timings_ms"]["predict_ms"] for a in (first, second)
    )
    assert day["gpu_ms"] == pytest.approx(spent, abs=0.2)  # metered as the header says: 0.1 ms
    assert report["total"] == {k: day[k] for k in ("requests", "images", "masks", "gpu_ms")}
    assert _usage(gateway, other)["days"] == []  # the other key's report has none of it


def test_days_choose_the_window_and_older_days_are_listed_oldest_first(
    gateway: TestClient,
    new_key: Callable[..., str],
    gateway_settings: GatewaySettings,
    store: KeyStore,
) -> None:
    key = new_key()
    key_id = key.split("_")[1]
    today = datetime.now(UTC).date()
    engine = sa.create_engine(gateway_settings.database_url)
    with engine.begin() as connection:
        for age, requests in ((40, 5), (6, 3), (0, 1)):
            connection.execute(
                sa.insert(Usage).values(
                    key_id=key_id,
                    day=today - timedelta(days=age),
                    requests=requests,
                    images=1,
                    masks=requests,
                    gpu_ms=10.5,
                )
            )
    engine.dispose()
    assert [d["requests"] for d in _usage(gateway, key)["days"]] == [3, 1]
    assert [d["requests"] for d in _usage(gateway, key, days=41)["days"]] == [5, 3, 1]
    week = _usage(gateway, key, days=7)
    assert (week["since"], week["total"]["requests"], week["total"]["gpu_ms"]) == (
        str(today - timedelta(days=6)),
        4,
        21.0,
    )
    assert _usage(gateway, key, days=1)["total"]["requests"] == 1


def test_a_browser_token_cannot_read_the_keys_usage(
    gateway: TestClient, new_key: Callable[..., str]
) -> None:
    key = new_key()
    token = gateway.post("/v1/auth/token", headers=bearer(key)).json()["token"]
    refused = gateway.get("/v1/usage", headers=bearer(token))
    assert (refused.status_code, refused.json()["code"]) == (403, "insufficient_scope")
    assert "API key" in refused.json()["detail"]
    anonymous = gateway.get("/v1/usage")
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "missing_credentials")


@pytest.mark.parametrize("days", ["0", "367", "-1", "seven", "1.5", "9" * 40, "9" * 5000])
def test_a_bad_window_is_a_422_problem_naming_the_parameter(
    gateway: TestClient, new_key: Callable[..., str], days: str
) -> None:
    answer = gateway.get(f"/v1/usage?days={days}", headers=bearer(new_key()))
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["code"] == "invalid_parameter"
    assert problem["errors"][0]["loc"] == ["query", "days"]
    assert problem["detail"].startswith("query.days: ")
    assert problem["hint"]
    assert "Traceback" not in answer.text


def _usage(gateway: TestClient, key: str, **params: Any) -> dict[str, Any]:
    answer = gateway.get("/v1/usage", params=params, headers=bearer(key))
    assert answer.status_code == 200, answer.text
    assert "ratelimit-remaining" in answer.headers  # counted against the key's rate
    report: dict[str, Any] = answer.json()
    return report
