"""The TypeScript SDK's `client.jobs` (built) against the real gateway and inference: a job
made once per idempotency key, waited for, its results in item order equal to the Python
SDK's answers to the same clicks, the item never uploaded failed with its code."""

from __future__ import annotations

import json
from pathlib import Path

from sam2_sdk import Sam2Client
from support import IMAGES, GatewayServer, encode, run_node_against

SDK_JS = Path(__file__).parents[2] / "sdk-js"


def test_typescript_jobs_answer_as_the_calls_alone(
    gateway_server: GatewayServer, tmp_path: Path
) -> None:
    assert (SDK_JS / "dist" / "jobs.js").exists(), "build it first: (cd sdk-js && npm run build)"
    files = []
    for name in ("landscape", "portrait"):
        path = tmp_path / f"{name}.png"
        path.write_bytes(encode(IMAGES[name]))
        files.append(str(path))
    js = json.loads(run_node_against(gateway_server, SDK_JS / "test" / "jobs.mjs", *files))
    assert js["jobIds"][0] == js["jobIds"][1]
    assert js["jobIds"][0] in js["listed"]
    assert js["state"] == "done"
    assert (js["counts"]["done"], js["counts"]["failed"]) == (2, 1)
    assert [r["index"] for r in js["results"]] == [0, 1, 2]
    with Sam2Client(api_key=gateway_server.key, base_url=gateway_server.url) as client:
        for result, path in zip(js["results"][:2], files, strict=True):
            alone = client.segment(Path(path), points=[[40, 30]])
            assert result["mask"] == "".join("1" if v else "0" for v in alone.mask.ravel())
    failed = js["results"][2]
    assert (failed["status"], failed["code"]) == (404, "image_not_cached")
    assert failed["hint"]
    assert "https URL or an image_id" in js["refused"]
