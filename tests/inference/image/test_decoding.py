"""JPEG decoded where the model runs (decoding.py): the pixels and answers Pillow's decoding gives.

On the CPU, torchvision's decoder is the libjpeg-turbo Pillow uses, so every JPEG an upload may
be must decode to the same pixels, and an engine that decodes there must answer exactly what
one decoding with Pillow answers, without sending the pixels to the device a second time.
What the device decoder should not take goes to Pillow, errors included.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from sam2_contract import ErrorCode, Sam2ServiceError, SegmentRequest, decode_mask, load_image
from sam2_contract.images import image_id_for_file
from sam2_inference import Sam2Engine
from sam2_inference.image.decoding import ImageDecoder, pick_decoder
from sam2_inference.runtime.fastpath import DeviceTransforms
from support import IMAGES, b64, encode, fresh_engine, scene

CPU = torch.device("cpu")
PIXELS = scene(61, 83, seed=5)  # odd sizes: chroma subsampling's edge cases
NOISE = np.random.default_rng(3).integers(0, 256, size=(61, 83, 3), dtype=np.uint8)
JPEGS = {
    "4:4:4": encode(PIXELS, "JPEG", quality=90, subsampling=0),
    "4:2:2": encode(PIXELS, "JPEG", quality=90, subsampling=1),
    "4:2:0": encode(PIXELS, "JPEG", quality=75, subsampling=2),
    "noise 4:2:0": encode(NOISE, "JPEG", quality=95, subsampling=2),
    "progressive": encode(PIXELS, "JPEG", quality=90, progressive=True),
    "greyscale": encode(Image.fromarray(PIXELS).convert("L"), "JPEG"),
}


def _decoder(max_pixels: int = 1 << 24) -> ImageDecoder:
    return ImageDecoder("torchvision", CPU, max_pixels=max_pixels)


@pytest.mark.parametrize("variant", list(JPEGS))
def test_every_kind_of_jpeg_decodes_on_the_device_to_pillows_pixels(variant: str) -> None:
    data = JPEGS[variant]
    decoded = _decoder().load(data)
    pillows = load_image(data)
    assert decoded.on_device is not None  # decoded by torchvision, not handed to Pillow
    assert np.array_equal(decoded.image.pixels, pillows.pixels)
    assert np.array_equal(decoded.on_device.numpy(), pillows.pixels)
    assert (decoded.image.format, decoded.image.image_id) == ("JPEG", pillows.image_id)


def _rotated_jpeg() -> bytes:
    image = Image.fromarray(PIXELS)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display": torchvision applies it on the CPU only
    return encode(image, "JPEG", exif=exif, quality=95)


def _multi_picture() -> bytes:
    return encode(
        Image.fromarray(PIXELS), "MPO", save_all=True, append_images=[Image.fromarray(NOISE)]
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda: encode(PIXELS, "PNG"),
        _rotated_jpeg,
        lambda: encode(Image.fromarray(PIXELS).convert("CMYK"), "JPEG"),
        _multi_picture,
    ],
    ids=["png", "exif-rotated jpeg", "cmyk jpeg", "multi-picture jpeg"],
)
def test_what_the_device_decoder_should_not_take_is_decoded_by_pillow(make: Any) -> None:
    data = make()
    decoded = _decoder().load(data)
    pillows = load_image(data)
    assert decoded.on_device is None
    assert np.array_equal(decoded.image.pixels, pillows.pixels)
    assert decoded.image.shape == pillows.shape


def _code(data: bytes, decoder: ImageDecoder) -> ErrorCode:
    with pytest.raises(Sam2ServiceError) as caught:
        decoder.load(data)
    return caught.value.code


def test_a_damaged_or_oversized_jpeg_gets_the_code_pillow_gives() -> None:
    jpeg = JPEGS["4:2:0"]
    truncated = jpeg[: len(jpeg) // 2]
    scrambled = jpeg[:200] + bytes(range(256)) * 4  # a valid header, then garbage
    assert _code(truncated, _decoder()) == ErrorCode.TRUNCATED_IMAGE
    with pytest.raises(Sam2ServiceError) as pillows:
        load_image(scrambled)
    assert _code(scrambled, _decoder()) == pillows.value.code
    assert _code(jpeg, _decoder(max_pixels=61 * 83 - 1)) == ErrorCode.IMAGE_TOO_LARGE


def test_the_device_decoder_is_chosen_where_it_pays_and_only_if_it_works(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cuda = torch.device("cuda")
    assert pick_decoder("auto", CPU, "fast") == "pillow"  # no gain on the CPU
    assert pick_decoder("auto", cuda, "exact") == "pillow"  # the exact pipeline decodes as sam2
    assert pick_decoder("pillow", cuda, "fast") == "pillow"
    assert pick_decoder("torchvision", CPU, "exact") == "torchvision"  # named, and it works
    # The fast pipeline on CUDA: nvjpeg where it decodes a test JPEG, else Pillow, said why.
    if torch.cuda.is_available():
        assert pick_decoder("auto", cuda, "fast") == "torchvision"
    else:
        assert pick_decoder("auto", cuda, "fast") == "pillow"
        assert "torchvision cannot decode JPEG on cuda" in caplog.text


def _uploads(engine: Sam2Engine, run: Any) -> tuple[Any, int]:
    """What `run(engine)` answers, and how many host images it sent to the model's device."""
    sent = 0
    upload = DeviceTransforms.__call__

    def counting(self: DeviceTransforms, x: np.ndarray) -> torch.Tensor:
        nonlocal sent
        sent += 1
        return upload(self, x)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DeviceTransforms, "__call__", counting)
        return run(engine), sent


def test_an_engine_decoding_jpeg_on_the_device_answers_what_pillows_decoding_answers(
    loaded_engine: Sam2Engine,
) -> None:
    data = encode(IMAGES["landscape"], "JPEG", quality=85)
    click = {"point_coords": [[60, 40], [150, 90]], "point_labels": [1, 0], "mask_format": "rle"}
    auto = {
        "mode": "auto",
        "points_per_side": 2,
        "pred_iou_thresh": 0.0,
        "stability_score_thresh": 0.0,
        "mask_format": "rle",
    }

    def answers(engine: Sam2Engine) -> list[dict[str, Any]]:
        sent = SegmentRequest(image=b64(data), **click)  # in the JSON body
        named = SegmentRequest(image_id=image_id_for_file(data), **auto)  # the gateway's upload
        again = SegmentRequest(image_id=image_id_for_file(data), **click | {"point_labels": [0, 1]})
        return [
            engine.segment(sent).model_dump(),
            engine.segment(named, namespace="another", image_file=data).model_dump(),
            engine.segment(again, namespace="a third", image_file=data).model_dump(),
        ]

    on_device = fresh_engine(loaded_engine, pipeline="fast", image_decoder="torchvision")
    by_pillow = fresh_engine(loaded_engine, pipeline="fast", image_decoder="pillow")
    assert on_device.decoder.name == "torchvision"
    ours, ours_sent = _uploads(on_device, answers)
    theirs, theirs_sent = _uploads(by_pillow, answers)
    assert (ours_sent, theirs_sent) == (0, 3)  # the pixels were already there
    assert ours[0]["all_scores"] == theirs[0]["all_scores"]
    assert np.array_equal(decode_mask(ours[0]["mask"]), decode_mask(theirs[0]["mask"]))
    assert ours[1]["count"] == theirs[1]["count"] > 0
    for mine, pillows in zip(ours[1]["masks"], theirs[1]["masks"], strict=True):
        assert mine["predicted_iou"] == pillows["predicted_iou"]
        assert np.array_equal(
            decode_mask(mine["segmentation"]), decode_mask(pillows["segmentation"])
        )
    assert ours[0]["timings_ms"]["decode_ms"] > 0
    assert ours[2]["all_scores"] == theirs[2]["all_scores"]  # a forwarded file, decoded again
    assert np.array_equal(decode_mask(ours[2]["mask"]), decode_mask(theirs[2]["mask"]))
