"""Decoding clicks on the client (issue 29): the embedding of an image this key uploaded, and
the served model's decoder as ONNX, downloaded once (ETag) and cached by the browser."""

from __future__ import annotations

import asyncio
import re

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sam2_contract.embedding import DECODER_MEDIA_TYPE, MEDIA_TYPE, parse_dtype
from sam2_contract.errors import (
    ImageNotCachedError,
    ModelNotFoundError,
)
from sam2_contract.models import IMAGE_ID_HEX_LENGTH, IMAGE_ID_PREFIX, MODEL_IDS
from sam2_contract.wire import routing_key

from sam2_gateway.api.deps import GatewayDep, PrincipalDep
from sam2_gateway.api.routes.segment import _limited, _request_id
from sam2_gateway.hop import Hop

router = APIRouter(tags=["client decoding"])
IMAGE_ID = re.compile(re.escape(IMAGE_ID_PREFIX) + f"[0-9a-f]{{{IMAGE_ID_HEX_LENGTH}}}")


@router.get(
    "/v1/images/{image_id}/embedding",
    responses={200: {"content": {MEDIA_TYPE: {}}}},
)
async def get_embedding(
    image_id: str,
    request: Request,
    principal: PrincipalDep,
    gateway: GatewayDep,
    dtype: str = "float16",
) -> Response:
    """An uploaded image's embedding (safetensors: float32, float16 or int8), for decoding
    clicks on the client; another key's image is not cached for this one."""
    principal.require("segment")
    if not IMAGE_ID.fullmatch(image_id):  # checked here: it becomes part of the hop's path
        raise ImageNotCachedError(f"no cached embedding for {image_id[:64]!r}")
    parse_dtype(dtype)
    async with _limited(gateway, principal) as rate:
        hop = Hop(principal.key_id, _request_id(request), routing_key(principal.key_id, image_id))
        answer = await gateway.backend.forward(
            "GET", f"/v1/images/{image_id}/embedding?dtype={dtype}", hop
        )
        await gateway.meter.add(principal.key_id, images=0, masks=0, gpu_ms=0.0)
    headers = rate.headers() | {"cache-control": "private, max-age=3600"}
    return Response(answer.body, media_type=MEDIA_TYPE, headers=headers)


@router.get(
    "/v1/models/{name}/decoder.onnx",
    responses={200: {"content": {DECODER_MEDIA_TYPE: {}}}, 304: {"description": "Not modified"}},
)
async def get_decoder(
    name: str, request: Request, principal: PrincipalDep, gateway: GatewayDep
) -> Response:
    """The served model's prompt encoder and mask decoder as ONNX, with inference's ETag (the
    digest of the file, exported from the served weights): a browser downloads it once."""
    principal.require("segment")
    if name not in MODEL_IDS:
        raise ModelNotFoundError(
            f"there is no model {name[:64]!r}: the models are {', '.join(MODEL_IDS)}"
        )
    async with _limited(gateway, principal) as rate:
        decoders: dict[str, tuple[bytes, str]] = request.app.state.decoders
        lock: asyncio.Lock = request.app.state.decoders_lock
        async with lock:  # kept here, revalidated with inference each time (a 304, no body):
            kept = decoders.get(name)  # weights redeployed under the same name are a new file
            hop = Hop(principal.key_id, _request_id(request))
            answer = await gateway.backend.forward(
                "GET",
                f"/v1/models/{name}/decoder.onnx",
                hop,
                headers={"if-none-match": kept[1]} if kept else None,
            )
            if answer.status != 304 or kept is None:
                decoders[name] = (answer.body, answer.etag)
        onnx, etag = decoders[name]
    headers = rate.headers() | {"etag": etag, "cache-control": "private, max-age=86400"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(onnx, media_type=DECODER_MEDIA_TYPE, headers=headers)
