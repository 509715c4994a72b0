"""Segment a picture through the local stack with the Python SDK.

    scripts/dev                                  # in another terminal; note the printed key
    export SAM2_API_KEY=sam2_...
    .venv/bin/python sdk-python/client_example.py [photo.jpg]

Without a path it draws a picture of its own. SAM2_BASE_URL defaults to the local gateway.
"""

from __future__ import annotations

import os
import sys

import numpy as np
from sam2_sdk import ImageInput, Sam2Client, segment_image


def main() -> None:
    image: ImageInput
    if len(sys.argv) > 1:
        image = sys.argv[1]
    else:
        picture = np.full((480, 640, 3), 30, dtype=np.uint8)
        picture[120:360, 160:480] = (220, 120, 40)
        image = picture
    with Sam2Client() as client:
        click = client.segment(image, points=[[320, 240]], labels=[1])
        print(f"click: score {click.score:.3f}, {int(click.mask.sum())} px, {click.timings}")
        for warning in click.warnings:
            print(f"warning: {warning}")
        # A background point corrects the first mask (SAM2's mask_input) instead of starting over.
        points, labels = [[320, 240], [100, 100]], [1, 0]
        again = client.segment(image, points=points, labels=labels, refine=click.mask_id)
        total = again.timings.total_ms
        print(f"refining click reused the embedding: {again.cached}, {total:.0f} ms")
        auto = client.segment_auto(image, points_per_side=8)
        print(f"auto: {len(auto.masks)} masks")
    if len(sys.argv) > 1:
        url = os.environ.get("SAM2_BASE_URL", "http://127.0.0.1:8080")
        original = segment_image(sys.argv[1], url, point_coords=[[320, 240]], point_labels=[1])
        print(f"segment_image (original helper): mask {len(original['mask'])} rows")


if __name__ == "__main__":
    main()
