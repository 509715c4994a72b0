"""Image decoding: every format and mode a user may upload, and every way a file can be bad."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from sam2_contract import (
    ErrorCode,
    Sam2ServiceError,
    decode_base64,
    image_id_for,
    image_id_for_file,
    load_image,
    probe_image,
)
from support import b64, encode, png_header, scene

PIXELS = scene(48, 64)
LOSSLESS = [
    ("PNG", {}),
    ("WEBP", {"lossless": True}),
    ("BMP", {}),
    ("TIFF", {}),
    ("GIF", {}),
]


@pytest.mark.parametrize(("fmt", "params"), LOSSLESS, ids=[f for f, _ in LOSSLESS])
def test_lossless_formats_decode_to_the_same_pixels_named_by_their_file(
    fmt: str, params: dict
) -> None:
    data = encode(PIXELS, fmt, **params)
    decoded = load_image(data)
    assert decoded.format == fmt
    assert np.array_equal(decoded.pixels, PIXELS)
    assert decoded.image_id == image_id_for_file(data)
    header = probe_image(data)
    assert (header.format, header.width, header.height) == (fmt, 64, 48)


def test_the_file_names_the_image_and_never_collides_with_raw_pixels() -> None:
    png, bmp = encode(PIXELS, "PNG"), encode(PIXELS, "BMP")
    assert image_id_for_file(png) == image_id_for_file(bytes(png))
    assert image_id_for_file(png) != image_id_for_file(bmp)  # same pixels, another file
    assert image_id_for_file(PIXELS.tobytes()) != image_id_for(PIXELS)


def test_jpeg_decodes_to_rgb_of_the_right_shape() -> None:
    decoded = load_image(encode(PIXELS, "JPEG", quality=95))
    assert decoded.format == "JPEG"
    assert decoded.shape == (48, 64)
    assert np.abs(decoded.pixels.astype(int) - PIXELS).mean() < 8


def test_gif_gives_its_first_frame() -> None:
    frames = [Image.fromarray(PIXELS), Image.fromarray(255 - PIXELS)]
    data = io.BytesIO()
    frames[0].save(data, format="GIF", save_all=True, append_images=frames[1:])
    assert np.array_equal(load_image(data.getvalue()).pixels, PIXELS)


def test_exif_orientation_is_applied() -> None:
    image = Image.fromarray(PIXELS)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    decoded = load_image(encode(image, "JPEG", exif=exif, quality=95))
    assert decoded.shape == (64, 48)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("RGBA", (10, 20, 30)),
        ("LA", (10, 10, 10)),
        ("L", (18, 18, 18)),  # ITU-R 601 luma of (10, 20, 30)
        ("P", (10, 20, 30)),
        ("CMYK", None),
    ],
)
def test_modes_become_rgb(mode: str, expected: tuple[int, int, int] | None) -> None:
    base = Image.new("RGBA", (5, 4), (10, 20, 30, 128))
    image = base.convert(mode) if mode != "LA" else Image.new("LA", (5, 4), (10, 128))
    fmt = "TIFF" if mode == "CMYK" else "PNG"
    decoded = load_image(encode(image, fmt))
    assert decoded.pixels.shape == (4, 5, 3)
    assert decoded.pixels.dtype == np.uint8
    if expected is not None:
        assert tuple(decoded.pixels[0, 0]) == expected
    else:
        assert tuple(decoded.pixels[0, 0]) == tuple(np.array(image.convert("RGB"))[0, 0])


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    values = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode.startswith("I;16")
    decoded = load_image(encode(image, "PNG"))
    assert decoded.pixels[0, :, 0].tolist() == [0, 100, 255]


def test_data_url_prefix_and_line_breaks_are_accepted() -> None:
    data = encode(PIXELS)
    text = b64(data)
    wrapped = "data:image/png;base64," + "\n".join(
        text[i : i + 76] for i in range(0, len(text), 76)
    )
    assert decode_base64(wrapped) == data


def _code(call: object) -> str:
    with pytest.raises(Sam2ServiceError) as info:
        call()  # type: ignore[operator]
    return info.value.code.value


def test_bad_files_have_precise_codes() -> None:
    png = encode(PIXELS)
    assert _code(lambda: decode_base64("not base64!!")) == ErrorCode.INVALID_BASE64
    assert _code(lambda: decode_base64("")) == ErrorCode.EMPTY_IMAGE
    assert _code(lambda: load_image(b"hello, I am text")) == ErrorCode.UNSUPPORTED_IMAGE
    assert _code(lambda: load_image(png[: len(png) // 2])) == ErrorCode.TRUNCATED_IMAGE
    assert _code(lambda: load_image(png_header(0, 10))) == ErrorCode.EMPTY_IMAGE
    assert _code(lambda: load_image(png_header(5000, 5000))) == ErrorCode.IMAGE_TOO_LARGE
    assert _code(lambda: load_image(png_header(10**5, 10**5))) == ErrorCode.IMAGE_TOO_LARGE
    assert _code(lambda: load_image(encode(PIXELS, "PDF"))) == ErrorCode.UNSUPPORTED_IMAGE


def test_the_header_check_refuses_what_decoding_would_without_decoding() -> None:
    """The gateway checks uploads with `probe_image` only: the same codes for what the header
    shows, at no decoding cost (a 25 MP bomb of a few bytes is refused at once)."""
    assert _code(lambda: probe_image(b"hello, I am text")) == ErrorCode.UNSUPPORTED_IMAGE
    assert _code(lambda: probe_image(png_header(0, 10))) == ErrorCode.EMPTY_IMAGE
    assert _code(lambda: probe_image(png_header(5000, 5000))) == ErrorCode.IMAGE_TOO_LARGE
    assert _code(lambda: probe_image(encode(PIXELS, "PDF"))) == ErrorCode.UNSUPPORTED_IMAGE
    assert probe_image(png_header(4096, 3000)).width == 4096  # a phone photo's size passes


def test_pixel_limit_is_checked_before_decoding() -> None:
    # 3000 x 3000 of one colour compresses to a few KB; the limit stops it from the header.
    small_file = encode(Image.new("L", (3000, 3000)), "PNG")
    assert len(small_file) < 50_000
    assert _code(lambda: load_image(small_file, max_pixels=1_000_000)) == ErrorCode.IMAGE_TOO_LARGE
    assert load_image(small_file, max_pixels=9_000_000).shape == (3000, 3000)
