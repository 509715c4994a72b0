"""A batch job's answers as one COCO file (issue 30, `GET /v1/jobs/{id}/results?format=coco`):
`images` (one per done item, `id` its index + 1, `file_name` its URL, image_id, or the name
it was uploaded under),
`annotations` (one per mask: the automatic mode's every mask, a prompt's best mask per prompt
set, each with its RLE `segmentation`, `area`, `bbox` [x, y, w, h], `score` (predicted IoU),
`iscrowd` 0) and one category. Written as it is read, a job's items at a time."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
from sam2_contract.masks import decode_mask

from sam2_gateway.core.jobs import ItemRecord

CATEGORY = {"id": 1, "name": "object", "supercategory": "sam2"}


def coco_file(items: Callable[[], Iterable[ItemRecord]], job_id: str) -> Iterator[bytes]:
    """The COCO JSON of a job's done items; `items` reads them afresh (read twice: images,
    then annotations)."""
    info = {"description": f"SAM2 batch job {job_id}", "version": "1.0"}
    yield b'{"info":%s,"categories":[%s],"images":[' % (
        json.dumps(info).encode(),
        json.dumps(CATEGORY).encode(),
    )
    first = True
    for item in _done(items()):
        height, width = item[1]["image_shape"]
        source = item[0].source
        image = {
            "id": item[0].position + 1,
            "file_name": source.get("name") or source.get("image_url") or source.get("image_id"),
            "height": height,
            "width": width,
            "sam2_image_id": item[1]["image_id"],
        }
        yield (b"" if first else b",") + json.dumps(image).encode()
        first = False
    yield b'],"annotations":['
    first, next_id = True, 1
    for record, answer in _done(items()):
        for annotation in _annotations(answer):
            annotation |= {"id": next_id, "image_id": record.position + 1, "category_id": 1}
            yield (b"" if first else b",") + json.dumps(annotation).encode()
            first, next_id = False, next_id + 1
    yield b"]}"


def _done(items: Iterable[ItemRecord]) -> Iterator[tuple[ItemRecord, dict[str, Any]]]:
    for item in items:
        if item.state == "done" and item.answer is not None:
            yield item, json.loads(item.answer)


def _annotations(answer: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if "masks" in answer:  # automatic mode: every mask, with its own area and box
        for mask in answer["masks"]:
            yield {
                "segmentation": mask["segmentation"],
                "area": mask["area"],
                "bbox": mask["bbox"],
                "score": mask["predicted_iou"],
                "iscrowd": 0,
            }
        return
    predictions = answer.get("predictions") or [answer]  # one per box or object, else one
    for prediction in predictions:
        yield _measured(prediction["mask"], prediction["score"])


def _measured(rle: dict[str, Any], score: float) -> dict[str, Any]:
    mask = decode_mask(rle)
    rows, cols = np.nonzero(mask)
    if rows.size:
        box = [int(cols.min()), int(rows.min())]
        box += [int(cols.max()) - box[0] + 1, int(rows.max()) - box[1] + 1]
    else:
        box = [0, 0, 0, 0]
    area = int(rows.size)
    return {"segmentation": rle, "area": area, "bbox": box, "score": score, "iscrowd": 0}
