"""Every decision the two clients share, with no I/O: request bodies, which image_id an image
has, when to send the image again, when and how long to wait before a retry, what error the
caller gets (_http.py). Sam2Client and AsyncSam2Client add one request loop each
(openai-python's split).

Embedding reuse without thinking: the client remembers which `image_id` the service gave each
image (by a hash of its bytes or pixels); later calls on the same image send only that id, and
if the service has let it go (`image_not_cached`) the client sends the image again, once, by
itself. Concurrent calls on a new image wait for the first one's upload.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import quote

import httpx
import numpy as np
from PIL import Image

from sam2_sdk._constants import DEFAULT_BASE_URL
from sam2_sdk._exceptions import Sam2Error
from sam2_sdk._http import retry_or_raise
from sam2_sdk._types import (
    OBJECT_KEYS,
    AutoOptions,
    Box,
    ImageInput,
    Labels,
    Points,
    SegmentObject,
)

_REMEMBERED_IMAGES = 256
AUTO_OPTIONS = frozenset(get_type_hints(AutoOptions))


def image_bytes(image: ImageInput) -> bytes:
    """The file bytes to upload: files and bytes as they are, arrays and PIL images as PNG."""
    if isinstance(image, bytes):
        return image
    if isinstance(image, str | os.PathLike):
        return Path(image).read_bytes()
    picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def fingerprint(image: ImageInput) -> str:
    """What names an image for embedding reuse, without encoding it: the hash of a file's
    bytes, or of an array's (or PIL image's) pixels with their shape and type. Encoding a
    12-megapixel array to PNG just to recognise it took seconds."""
    digest = hashlib.sha256()
    if isinstance(image, bytes | str | os.PathLike):
        digest.update(b"file:" + image_bytes(image))
    elif isinstance(image, Image.Image):
        digest.update(f"pil:{image.mode}:{image.size}:".encode() + image.tobytes())
    else:
        array = np.ascontiguousarray(np.asarray(image))
        digest.update(f"array:{array.dtype.str}:{array.shape}:".encode())
        digest.update(array.reshape(-1).view(np.uint8).data)
    return digest.hexdigest()


def plain(value: Any) -> Any:
    """Lists of Python numbers from lists, tuples, numpy arrays or numpy scalars (JSON-ready)."""
    return None if value is None else np.asarray(value).tolist()


def _refuse_unknown(given: Any, known: frozenset[str], what: str, advice: str = "") -> None:
    """A TypeError naming the keys of `given` outside `known`, before anything is sent."""
    unknown = sorted(set(given) - known)
    if unknown:
        raise TypeError(
            f"{what} unknown key(s) {', '.join(unknown)}; the keys are "
            f"{', '.join(sorted(known))}{advice}"
        )


def _object_fields(item: SegmentObject) -> dict[str, Any]:
    _refuse_unknown(item, OBJECT_KEYS, "an object has")
    fields = {
        "point_coords": plain(item.get("points")),
        "point_labels": plain(item.get("labels")),
        "box_coords": plain(item.get("box")),
        "refine": item.get("refine"),
    }
    return {k: v for k, v in fields.items() if v is not None}


class BaseClient:
    def __init__(self, *, api_key: str | None, base_url: str | None, max_retries: int) -> None:
        key = api_key or os.environ.get("SAM2_API_KEY")
        if not key:
            raise Sam2Error("no API key: pass api_key=... or set SAM2_API_KEY")
        self.api_key = key
        url = base_url or os.environ.get("SAM2_BASE_URL") or DEFAULT_BASE_URL
        self.base_url = url.rstrip("/")
        self.max_retries = max_retries
        self._image_ids: OrderedDict[str, str] = OrderedDict()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def _url(self, path: str) -> str:
        return self.base_url + path

    @staticmethod
    def _usage_path(days: int) -> str:
        return f"/v1/usage?days={int(days)}"

    @staticmethod
    def _embedding_path(image_id: str, dtype: str) -> str:
        return f"/v1/images/{quote(image_id, safe='')}/embedding?dtype={quote(dtype, safe='')}"

    @staticmethod
    def _prompt_fields(
        points: Points | None,
        labels: Labels | None,
        box: Box | None,
        boxes: Points | None,
        multimask: bool,
        refine: str | None,
        model: str | None,
        objects: Sequence[SegmentObject] | None = None,
        render: str | None = None,
    ) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "mode": "box" if box is not None or boxes is not None else "point",
            "mask_format": "rle",
            "multimask_output": multimask,
        }
        optional: dict[str, Any] = {
            "point_coords": plain(points),
            "point_labels": plain(labels),
            "box_coords": plain(boxes if boxes is not None else box),
            "refine": refine,
            "model": model,
            "objects": None if objects is None else [_object_fields(o) for o in objects],
            "render": render,
        }
        return fields | {k: v for k, v in optional.items() if v is not None}

    @staticmethod
    def _auto_fields(options: AutoOptions) -> dict[str, Any]:
        _refuse_unknown(
            options, AUTO_OPTIONS, "segment_auto() got", " (points and boxes: use segment())"
        )
        return {"mode": "auto", "mask_format": "rle"} | dict(options)

    @staticmethod
    def _batch_fields(requests: list[dict[str, Any]]) -> dict[str, Any]:
        return {"requests": [{"mask_format": "rle"} | request for request in requests]}

    @staticmethod
    def _token_fields(scopes: list[str] | None, ttl_s: int | None) -> dict[str, Any]:
        return {k: v for k, v in {"scopes": scopes, "ttl_s": ttl_s}.items() if v is not None}

    def _retry_or_raise(
        self, attempt: int, outcome: httpx.Response | httpx.TransportError
    ) -> float:
        """How long to wait before attempt `attempt + 1`, or the error the caller gets."""
        return retry_or_raise(attempt, outcome, max_retries=self.max_retries, url=self.base_url)

    # Which image_id an image has

    def _by_id(self, key: str, fields: dict[str, Any]) -> dict[str, Any] | None:
        """The body that names a known image by its image_id (None: not known)."""
        known = self._image_ids.get(key)
        return None if known is None else {"image_id": known} | fields

    @staticmethod
    def _file(image: ImageInput) -> bytes:
        """The image as a file to upload (a path's bytes as they are; arrays as PNG)."""
        return image_bytes(image)

    def _answered(self, key: str, sent: dict[str, Any], answer: dict[str, Any]) -> bool:
        """Keep the image_id an answer carries; False when a call by image_id found the
        embedding gone (a batch's items say so), so the image must be sent again."""
        if "image_id" in sent and _missed(answer):
            self._forget(key, sent["image_id"])
            return False
        results = answer.get("results")
        carried = (
            [r["result"]["image_id"] for r in results if r["status"] == 200] if results else None
        )
        image_id = answer.get("image_id") or (carried[0] if carried else None)
        if image_id:
            self._remember(key, image_id)
        return True

    def _forget(self, key: str, image_id: str) -> None:
        """The service let this image go: the next call uploads it again (unless a concurrent
        call already did and remembered a new id)."""
        if self._image_ids.get(key) == image_id:
            self._image_ids.pop(key, None)

    def _remember(self, key: str, image_id: str) -> None:
        self._image_ids[key] = image_id
        self._image_ids.move_to_end(key)
        while len(self._image_ids) > _REMEMBERED_IMAGES:
            self._image_ids.popitem(last=False)


def _missed(answer: dict[str, Any]) -> bool:
    """Whether a batch sent by image_id found the embedding gone (its items say so)."""
    results = answer.get("results") or []
    return any((r.get("error") or {}).get("code") == "image_not_cached" for r in results)
