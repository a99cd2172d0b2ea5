"""Decoding untrusted bytes and the shared geometry: formats, modes, limits, crops."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from lensgraph.errors import CorruptImage, ImageTooLarge, MissingImage, UnsupportedImage
from lensgraph.imaging import decode as decode_module
from lensgraph.imaging.decode import ImageLimits, decode_image, to_gray
from lensgraph.imaging.transforms import (
    CropBox,
    center_crop,
    classifier_standard,
    detector_input,
    resize_exact,
    resize_shorter_side,
    square_face_crop,
    zoom_crop_pad,
)


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _png_declaring(width: int, height: int) -> bytes:
    """A real 1x1 PNG whose IHDR is patched (with a valid CRC) to declare ``width`` x ``height``."""
    png = bytearray(_encode(Image.new("L", (1, 1)), "PNG"))
    assert png[12:16] == b"IHDR"
    png[16:24] = struct.pack(">II", width, height)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    return bytes(png)


@pytest.fixture
def no_pixel_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any pixel data is decoded: proves a rejection came from the header."""

    def refuse(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


@pytest.fixture
def pillow_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """decode_image may raise Pillow's global bomb ceiling; restore it after the test."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)


# --- formats -----------------------------------------------------------------------------------

SOLID = (10, 200, 30)


@pytest.mark.parametrize(
    ("fmt", "options", "tolerance"),
    [
        ("JPEG", {"quality": 95}, 3),
        ("PNG", {}, 0),
        ("BMP", {}, 0),
        ("TIFF", {}, 0),
        ("WEBP", {"lossless": True}, 0),
        ("WEBP", {"quality": 90}, 4),
        ("GIF", {}, 0),
    ],
)
def test_every_supported_format_decodes_to_rgb_uint8(fmt: str, options: dict, tolerance: int):
    data = _encode(Image.new("RGB", (7, 5), SOLID), fmt, **options)
    decoded = decode_image(data)
    assert decoded.format == fmt
    assert decoded.pixels.shape == (5, 7, 3) and (decoded.width, decoded.height) == (7, 5)
    assert decoded.pixels.dtype == np.uint8 and decoded.pixels.flags["C_CONTIGUOUS"]
    assert np.abs(decoded.pixels.astype(int) - SOLID).max() <= tolerance
    assert not decoded.had_alpha and decoded.alpha is None


def test_animated_gif_gives_the_first_frame():
    first, second = Image.new("RGB", (6, 4), (255, 0, 0)), Image.new("RGB", (6, 4), (0, 0, 255))
    data = _encode(first, "GIF", save_all=True, append_images=[second], duration=50)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    decoded = decode_image(data)
    assert decoded.pixels.shape == (4, 6, 3)
    assert (decoded.pixels == (255, 0, 0)).all()


def test_palette_with_transparency_is_composited_over_white_and_keeps_alpha():
    image = Image.new("P", (4, 3), 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.putpixel((1, 1), 1)
    decoded = decode_image(_encode(image, "PNG", transparency=0))
    assert decoded.original_mode == "P" and decoded.had_alpha
    assert decoded.alpha is not None and decoded.alpha.shape == (3, 4)
    assert decoded.alpha[1, 1] == 255 and decoded.alpha.sum() == 255
    assert tuple(decoded.pixels[1, 1]) == (0, 0, 255)
    assert tuple(decoded.pixels[0, 0]) == (255, 255, 255)  # transparent -> white


def test_palette_without_transparency_has_no_alpha():
    image = Image.new("P", (2, 2), 1)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    decoded = decode_image(_encode(image, "PNG"))
    assert not decoded.had_alpha and (decoded.pixels == (0, 0, 255)).all()


def test_la_composites_gray_over_white():
    gray = np.full((2, 2), 100, np.uint8)
    alpha = np.array([[0, 255], [128, 255]], np.uint8)
    decoded = decode_image(_encode(Image.fromarray(np.dstack([gray, alpha]), "LA"), "PNG"))
    assert decoded.original_mode == "LA"
    np.testing.assert_array_equal(decoded.alpha, alpha)
    # 100 * a/255 + 255 * (1 - a/255), rounded: a=0 -> 255, a=128 -> 177 (177.2), a=255 -> 100
    np.testing.assert_array_equal(decoded.pixels[..., 0], [[255, 100], [177, 100]])
    assert (decoded.pixels[..., 0] == decoded.pixels[..., 2]).all()


def test_rgba_composites_over_white():
    rgba = np.array([[[255, 0, 0, 0], [255, 0, 0, 128], [255, 0, 0, 255]]], np.uint8)
    decoded = decode_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    np.testing.assert_array_equal(decoded.alpha, [[0, 128, 255]])
    expected = [[255, 255, 255], [255, 127, 127], [255, 0, 0]]
    np.testing.assert_array_equal(decoded.pixels[0], expected)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_grayscale_is_scaled_not_clipped(fmt: str):
    values = np.array([[0, 257, 32896, 65535]], np.uint16)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    decoded = decode_image(_encode(image, fmt))
    assert decoded.original_mode.startswith("I;16")
    # Pillow's own convert("L") would give [0, 255, 255, 255] here.
    np.testing.assert_array_equal(decoded.pixels[..., 0], [[0, 1, 128, 255]])
    assert decoded.pixels.shape == (1, 4, 3)


def test_float_tiff_in_unit_range_is_scaled_to_255():
    image = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32), "F")
    decoded = decode_image(_encode(image, "TIFF"))
    assert decoded.original_mode == "F"
    np.testing.assert_array_equal(decoded.pixels[..., 0], [[0, 128, 255]])


def test_cmyk_jpeg_and_bilevel_png():
    cmyk = decode_image(_encode(Image.new("CMYK", (4, 4), (0, 255, 255, 0)), "JPEG", quality=95))
    assert cmyk.original_mode == "CMYK"
    assert np.abs(cmyk.pixels.astype(int) - (255, 0, 0)).max() <= 3
    bilevel = decode_image(_encode(Image.new("1", (3, 2), 1), "PNG"))
    assert bilevel.original_mode == "1" and (bilevel.pixels == 255).all()


def test_exif_orientation_6_rotates_the_image():
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:8, :8] = (255, 0, 0)  # red top-left corner as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = _encode(Image.fromarray(pixels), "JPEG", exif=exif.tobytes(), quality=95)
    decoded = decode_image(data)
    assert decoded.pixels.shape == (40, 20, 3)  # width and height swap
    assert decoded.pixels[2, -3, 0] > 200 and decoded.pixels[2, -3, 1:].max() < 40  # now top-right
    assert decoded.pixels[2, 2].max() < 40 and decoded.pixels[-3, -3].max() < 40


def test_to_gray():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [200, 200, 200]]], np.uint8)
    np.testing.assert_array_equal(to_gray(rgb), [[76, 150, 29, 200]])  # BT.601 weights
    assert to_gray(rgb).dtype == np.uint8


# --- limits and errors -------------------------------------------------------------------------


def test_empty_is_missing_image():
    with pytest.raises(MissingImage) as info:
        decode_image(b"")
    assert info.value.status == 400


def test_too_many_bytes_is_413_before_anything_else():
    with pytest.raises(ImageTooLarge) as info:
        decode_image(b"\x00" * 1025, ImageLimits(max_bytes=1024))
    assert info.value.status == 413


@pytest.mark.usefixtures("no_pixel_decoding")
@pytest.mark.parametrize(
    ("width", "height", "why"),
    [(30000, 30000, "too many pixels"), (7000, 7000, "49000000 pixels"), (20000, 1, "16384")],
)
def test_declared_size_over_limits_is_rejected_from_the_header(width: int, height: int, why: str):
    with pytest.raises(ImageTooLarge, match=why) as info:
        decode_image(_png_declaring(width, height))
    assert info.value.status == 413


@pytest.mark.usefixtures("no_pixel_decoding")
def test_a_real_compressed_bomb_is_rejected_without_decoding():
    width = height = 7000  # 49 Mpx of zeros compress to ~50 kB
    raw = (b"\x00" * (width + 1)) * height
    idat = zlib.compress(raw, 9)
    assert len(idat) < 100_000

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    with pytest.raises(ImageTooLarge):
        decode_image(png)


@pytest.mark.usefixtures("pillow_limit")
def test_our_limit_governs_over_pillows_bomb_guard():
    # Declared size is allowed by our limits but above Pillow's default guard: no Pillow error,
    # the header is accepted and decoding then fails on the missing pixel data.
    with pytest.raises(CorruptImage):
        decode_image(_png_declaring(15000, 15000), ImageLimits(max_pixels=300_000_000))


@pytest.mark.usefixtures("pillow_limit")
def test_pillow_bomb_warning_becomes_image_too_large(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(decode_module, "_let_pillow_allow", lambda max_pixels: None)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)  # 100x100 is above: a warning only
    with pytest.raises(ImageTooLarge, match="too many pixels"):
        decode_image(_png_declaring(100, 100))


@pytest.mark.parametrize(
    "data",
    [
        np.random.default_rng(0).bytes(4096),
        b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n",
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10"/>',
        b"<svg width='10' height='10'></svg>",
        b"plain text, not an image",
    ],
    ids=["random", "pdf", "svg-xml", "svg", "text"],
)
def test_non_images_are_unsupported_and_list_the_formats(data: bytes):
    with pytest.raises(UnsupportedImage) as info:
        decode_image(data)
    assert info.value.status == 415
    assert "JPEG, PNG, BMP, TIFF, WebP, GIF" in info.value.message


def test_an_unsupported_but_real_image_format_is_415():
    with pytest.raises(UnsupportedImage):
        decode_image(_encode(Image.new("RGB", (4, 4)), "ICO"))


def test_truncated_jpeg_is_corrupt(assets: Path):
    data = (assets / "faces" / "obama.jpg").read_bytes()
    with pytest.raises(CorruptImage) as info:
        decode_image(data[: len(data) // 2])
    assert info.value.status == 422


def test_damaged_png_header_is_corrupt_not_unsupported():
    with pytest.raises(CorruptImage):
        decode_image(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)


@pytest.mark.parametrize(
    ("relative", "size"),
    [("faces/astronaut.png", (512, 512)), ("faces/obama.jpg", (910, 1137))],
)
def test_real_assets_decode(assets: Path, relative: str, size: tuple[int, int]):
    decoded = decode_image((assets / relative).read_bytes())
    assert (decoded.width, decoded.height) == size
    assert decoded.pixels.dtype == np.uint8 and decoded.pixels.shape == (size[1], size[0], 3)
    assert decoded.pixels.std() > 20  # a real photo, not a blank


# --- transforms --------------------------------------------------------------------------------


def test_resize_shorter_side_and_classifier_standard():
    img = np.zeros((375, 500, 3), np.uint8)
    assert resize_shorter_side(img, 256).shape == (256, 341, 3)
    assert resize_shorter_side(img.transpose(1, 0, 2), 256).shape == (341, 256, 3)
    assert classifier_standard(img).shape == (224, 224, 3)
    assert resize_exact(img, (320, 240)).shape == (240, 320, 3)
    assert detector_input(img[..., 0]).shape == (240, 320, 3)


def test_center_crop_is_centred_and_pads_small_images():
    img = np.arange(36, dtype=np.uint8).reshape(6, 6)
    np.testing.assert_array_equal(center_crop(img, 2), img[2:4, 2:4])
    padded = center_crop(np.full((2, 2, 3), 9, np.uint8), 4)
    assert padded.shape == (4, 4, 3) and padded.sum() == 9 * 12 and padded[1:3, 1:3].min() == 9


def test_zoom_crop_pad_is_deterministic_and_fills_exactly_the_centre():
    rng_image = np.random.default_rng(7)
    img = rng_image.integers(1, 256, size=(200, 160, 3), dtype=np.uint8)
    first = zoom_crop_pad(img, rng=np.random.default_rng(42))
    second = zoom_crop_pad(img, rng=np.random.default_rng(42))
    other = zoom_crop_pad(img, rng=np.random.default_rng(43))
    assert first.shape == (224, 224, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)
    bright = np.full((200, 160, 3), 200, np.uint8)
    out = zoom_crop_pad(bright, rng=np.random.default_rng(0))
    rows, cols = np.nonzero(out.any(axis=2))
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (62, 161, 62, 161)
    assert (out[62:162, 62:162] == 200).all()


def test_zoom_crop_pad_small_input_takes_what_exists():
    digit = np.full((28, 28), 255, np.uint8)  # 28 * 1.5 = 42 < 100
    out = zoom_crop_pad(digit, rng=np.random.default_rng(0))
    rows, cols = np.nonzero(out.any(axis=2))
    assert out.shape == (224, 224, 3)
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (91, 133, 91, 133)


def test_square_face_crop_geometry_and_round_trip():
    img = np.zeros((300, 400, 3), np.uint8)
    img[140:150, 250:260] = 255  # a white marker centred on (255, 145) in continuous coords
    crop, box = square_face_crop(img, (200, 100, 300, 180), out_size=96, scale=1.5)
    assert crop.shape == (96, 96) and crop.dtype == np.uint8
    assert box == CropBox(x0=175.0, y0=65.0, side=150.0)
    rows, cols = np.nonzero(crop > 0)
    weights = crop[rows, cols].astype(float)
    centroid = np.array([[np.average(cols, weights=weights), np.average(rows, weights=weights)]])
    np.testing.assert_allclose(box.to_image(centroid + 0.5), [[255.0, 145.0]], atol=0.5)
    points = np.array([[0.0, 0.0], [48.0, 48.0], [95.5, 12.25]])
    np.testing.assert_allclose(box.to_crop(box.to_image(points)), points)
    np.testing.assert_allclose(box.to_image([[48.0, 48.0]]), [[250.0, 140.0]])


def test_square_face_crop_near_the_border_pads_with_zeros():
    img = np.full((100, 120), 180, np.uint8)
    crop, box = square_face_crop(img, (-30, -20, 40, 60), out_size=96)
    assert crop.shape == (96, 96)
    assert crop[:10, :10].max() == 0  # outside the image
    assert crop[-10:, -10:].min() == 180  # inside the image
    outside, _ = square_face_crop(img, (500, 500, 600, 600))
    assert outside.max() == 0


def test_the_named_resizes_refuse_what_their_library_cannot_do_and_keep_shapes():
    from lensgraph.imaging.resize import DARKNET_BILINEAR, ResizeSpec, resize_to

    for bad in (("darknet", "bilinear", True), ("opencv", "bilinear", True), ("pil", "bilinear", False),
                ("darknet", "bicubic", False), ("cuda", "bilinear", False)):
        with pytest.raises(ValueError):
            ResizeSpec(*bad)
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert resize_to(gray, (8, 6), DARKNET_BILINEAR).shape == (6, 8)
    one = np.full((1, 1, 3), 200, np.uint8)
    np.testing.assert_array_equal(resize_to(one, (5, 4), DARKNET_BILINEAR), np.full((4, 5, 3), 200, np.uint8))
    ramp = np.tile(np.array([0, 100, 200], np.uint8), (3, 1))  # corners aligned: ends kept, middle interpolated
    np.testing.assert_array_equal(resize_to(ramp, (5, 3), DARKNET_BILINEAR)[0], [0, 50, 100, 150, 200])
