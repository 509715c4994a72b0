"""The inference backend in the cloud: a call to the deployed Modal inference class.

The class (infra/, issue 4) answers `segment_frame` with what the HTTP app would have sent: a
status, the body bytes, and the metering numbers, so both backends map results and errors the
same way. Modal is imported lazily: the local stack never needs it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sam2_contract.images import Pixels

from sam2_gateway.backends import InferenceResult, error_from_problem, timed_out, unavailable


class ModalBackend:
    def __init__(self, app_name: str, class_name: str, *, timeout_s: float) -> None:
        import modal

        self._cls = modal.Cls.from_name(app_name, class_name)
        self._timeout_s = timeout_s

    async def segment(
        self, request_json: bytes, pixels: Pixels | None, *, namespace: str, request_id: str
    ) -> InferenceResult:
        shape = list(pixels.shape[:2]) if pixels is not None else None
        raw = pixels.tobytes() if pixels is not None else None
        answer = await self._call(
            "segment_frame", request_json, raw, shape, namespace=namespace, request_id=request_id
        )
        if answer["status"] != 200:
            problem = json.loads(answer["body"])
            if answer.get("retry_after") is not None:
                problem["retry_after"] = answer["retry_after"]
            raise error_from_problem(int(answer["status"]), problem)
        return InferenceResult(
            body=answer["body"], masks=int(answer["masks"]), model_ms=float(answer["model_ms"])
        )

    async def health(self) -> dict[str, Any]:
        answer: dict[str, Any] = await self._call("health")
        return answer

    async def aclose(self) -> None:
        return None

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        import modal.exception

        function = getattr(self._cls(), method)
        try:
            return await asyncio.wait_for(function.remote.aio(*args, **kwargs), self._timeout_s)
        except TimeoutError:
            raise timed_out(self._timeout_s) from None
        except modal.exception.Error as exc:
            raise unavailable(f"the Modal inference call failed: {type(exc).__name__}") from None
