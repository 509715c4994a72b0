"""Decoding on the client (issue 29): an image's embedding and the exported decoder, for the
gateway to pass on."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sam2_contract.embedding import DECODER_MEDIA_TYPE, MEDIA_TYPE, parse_dtype
from sam2_contract.errors import (
    ImageNotCachedError,
    ModelNotFoundError,
)
from starlette.concurrency import run_in_threadpool

from sam2_inference.api.deps import EngineDep, NamespaceDep
from sam2_inference.image.client_decode import embedding_file

router = APIRouter(tags=["client decoding"])


@router.get("/v1/images/{image_id}/embedding")
async def embedding(
    image_id: str, engine: EngineDep, namespace: NamespaceDep, dtype: str = "float16"
) -> Response:
    """A cached image's embedding, for this tenant only (another's is not cached here)."""
    stored = parse_dtype(dtype)
    entry = engine.cache.get(namespace, image_id)
    if entry is None:
        raise ImageNotCachedError(f"no cached embedding for {image_id}")
    data = await run_in_threadpool(
        embedding_file,
        entry,
        image_id=image_id,
        dtype=stored,
        model=engine.info.name,
    )
    return Response(data, media_type=MEDIA_TYPE)


@router.get("/v1/models/{name}/decoder.onnx")
async def decoder(name: str, request: Request, engine: EngineDep) -> Response:
    """The served model's prompt encoder and mask decoder as ONNX (image/onnx.py), with an
    ETag of its bytes, which follow the weights: `If-None-Match` with it answers 304."""
    if name != engine.info.name:
        raise ModelNotFoundError(f"this server serves {engine.info.name!r}, not {name!r}")
    onnx, etag = await run_in_threadpool(engine.decoder_export.get)
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"etag": etag})
    return Response(onnx, media_type=DECODER_MEDIA_TYPE, headers={"etag": etag})
