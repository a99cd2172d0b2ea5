"""Untrusted bytes -> an RGB ``uint8`` array, or an error that tells the caller what to fix.

Every request image enters the service here, so this module is where size limits are enforced.
The header is read lazily (``Image.open``) and the declared size is checked *before* any pixel
is decoded, which is what defeats decompression bombs (a few kB that declare gigapixels); PNG
metadata that inflates past Pillow's caps is refused as too large, not as damage, and only the first
page or frame of a multi-page file is ever read (tests/trap_files.py has the hostile files).
Only a fixed set of raster formats is accepted; everything the models see afterwards is
one layout: HxWx3 ``uint8`` RGB, C-contiguous, EXIF orientation applied, alpha composited
over white (with the alpha itself kept separately for callers that care).

Only numpy, OpenCV, Pillow and the standard library are used: this is the Ray-free core.
"""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from lensgraph.errors import CorruptImage, ImageTooLarge, MissingImage, UnsupportedImage

__all__ = [
    "SUPPORTED_FORMATS",
    "DecodedImage",
    "ImageLimits",
    "decode_image",
    "to_gray",
]

# Pillow format ids we open; the names users see are in _FORMAT_NAMES.
SUPPORTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "BMP", "TIFF", "WEBP", "GIF")
_FORMAT_NAMES = "JPEG, PNG, BMP, TIFF, WebP, GIF"

# Magic numbers of the supported formats: a file that starts like one of them but that Pillow
# cannot identify is damaged (422), not of an unsupported type (415).
_SUPPORTED_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
# A few well-known unsupported types, named in the error so the user knows what they sent.
_OTHER_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "a PDF document"),
    (b"<svg", "an SVG drawing"),
    (b"<?xml", "an XML/SVG document"),
    (b"\x00\x00\x01\x00", "an ICO icon"),
    (b"8BPS", "a Photoshop document"),
)

# Errors Pillow raises while decoding damaged data.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)

_HIGH_DEPTH_INT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I;16S", "I"})
_TIFF_BITS_PER_SAMPLE = 258


@dataclass(frozen=True)
class ImageLimits:
    """Per-image limits; ``max_pixels`` and ``max_side`` are checked on the header."""

    max_bytes: int = 8 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_side: int = 16384


@dataclass(frozen=True, eq=False)  # arrays: identity equality, no field-wise __eq__/__hash__
class DecodedImage:
    """A decoded request image.

    ``pixels`` is HxWx3 ``uint8`` RGB, C-contiguous, upright (EXIF orientation applied) and,
    when the source had transparency, composited over white. ``alpha`` is the HxW ``uint8``
    alpha of the source (``None`` when it had none). ``original_mode`` is Pillow's mode before
    conversion (``"RGB"``, ``"P"``, ``"I;16"``, ...).
    """

    pixels: np.ndarray
    format: str
    original_mode: str
    had_alpha: bool = False
    alpha: np.ndarray | None = None

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


def decode_image(data: bytes, limits: ImageLimits = ImageLimits()) -> DecodedImage:
    """Decode request bytes into a :class:`DecodedImage`.

    Raises ``MissingImage`` (empty), ``ImageTooLarge`` (bytes, pixels or a side over ``limits``,
    checked before decoding pixels), ``UnsupportedImage`` (not one of the supported formats, or
    an image mode that cannot be shown as RGB) and ``CorruptImage`` (truncated or damaged data).
    """
    if data is None or len(data) == 0:
        raise MissingImage("No image was sent: upload a JPEG, PNG, BMP, TIFF, WebP or GIF file.")
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(
            f"The image is {len(data)} bytes; the limit is {limits.max_bytes} bytes. "
            "Send a smaller or more compressed image.",
            bytes=len(data),
            max_bytes=limits.max_bytes,
        )
    _let_pillow_allow(limits.max_pixels)
    with _quiet_pillow():
        image = _open_header(data, limits)
        _check_size(image.size, limits)
        _load_pixels(image, limits)
        _check_size(image.size, limits)  # GIF frames may grow the canvas while loading
        fmt = str(image.format or "")
        mode = image.mode
        image = _apply_exif_orientation(image)
        rgb, alpha = _to_rgb(image)
    return DecodedImage(
        pixels=np.ascontiguousarray(rgb),
        format=fmt,
        original_mode=mode,
        had_alpha=alpha is not None,
        alpha=alpha,
    )


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 RGB ``uint8`` -> HxW ``uint8`` luma (ITU-R BT.601, as OpenCV computes it).

    A 2-D array is taken to be grayscale already and returned unchanged.
    """
    if rgb.ndim == 2:
        return rgb
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected HxWx3 RGB or HxW gray, got shape {rgb.shape}")
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


# --- opening and limits ------------------------------------------------------------------------


def _let_pillow_allow(max_pixels: int) -> None:
    """Make our ``max_pixels`` the limit that governs.

    Pillow has its own process-wide bomb guard (``Image.MAX_IMAGE_PIXELS``: warning above it,
    error above twice it). It is left on as a second line of defence but raised, never lowered,
    when our configured limit is higher, so that an image we allow is never refused by Pillow.
    """
    current = Image.MAX_IMAGE_PIXELS
    if current is not None and current < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels


@contextmanager
def _quiet_pillow() -> Iterator[None]:
    """Pillow's warnings off, except ``DecompressionBombWarning``, which becomes an exception.

    Pillow warns once per damaged tag ("Tag data larger than file. Skipping tag 41857"): an EXIF bomb
    of thousands of such tags made thousands of log lines per request, and Python's warning registry
    kept each message for the process's lifetime. They describe the client's file, not the service.
    ``catch_warnings`` swaps the process-wide filter list, so it is not thread-safe; the worst a race
    can do is let one warning through as a plain warning (the size checks still reject a bomb: Pillow's
    threshold is never below ours, see ``_let_pillow_allow``).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # inserted first: takes precedence
        yield


def _open_header(data: bytes, limits: ImageLimits) -> ImageFile.ImageFile:
    """Identify the format and parse the header only; no pixel data is decoded here."""
    try:
        return Image.open(io.BytesIO(data), formats=list(SUPPORTED_FORMATS))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_many_pixels(str(exc), limits) from exc
    except UnidentifiedImageError as exc:
        raise _unidentified(data) from exc
    except _DECODE_ERRORS as exc:
        if _is_metadata_bomb(exc):
            raise _metadata_too_large(exc) from exc
        raise CorruptImage(
            f"The image header could not be read ({exc}). The file may be damaged; re-export it.",
        ) from exc


def _check_size(size: tuple[int, int], limits: ImageLimits) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise CorruptImage(f"The image declares an empty size ({width}x{height}); re-export it.")
    if max(width, height) > limits.max_side:
        raise ImageTooLarge(
            f"The image is {width}x{height}; no side may exceed {limits.max_side} pixels. "
            "Downscale it before sending.",
            width=width,
            height=height,
            max_side=limits.max_side,
        )
    if width * height > limits.max_pixels:
        raise ImageTooLarge(
            f"The image is {width}x{height} = {width * height} pixels; the limit is "
            f"{limits.max_pixels}. Downscale it before sending.",
            width=width,
            height=height,
            max_pixels=limits.max_pixels,
        )


def _load_pixels(image: ImageFile.ImageFile, limits: ImageLimits) -> None:
    """Decode the pixels of the first frame (Pillow positions multi-frame files on frame 0; the other
    pages of a TIFF and frames of a GIF are never read, however many there are)."""
    try:
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _too_many_pixels(str(exc), limits) from exc
    except _DECODE_ERRORS as exc:
        if _is_metadata_bomb(exc):  # PNG text chunks after the pixels are read here
            raise _metadata_too_large(exc) from exc
        raise CorruptImage(
            f"The {image.format} image could not be decoded ({exc}); the file is truncated or "
            "damaged. Re-upload the complete file.",
            format=image.format,
        ) from exc


def _too_many_pixels(reason: str, limits: ImageLimits) -> ImageTooLarge:
    return ImageTooLarge(
        f"The image declares too many pixels ({reason}); the limit is {limits.max_pixels} pixels and "
        f"{limits.max_side} per side. Downscale it before sending.",
        max_pixels=limits.max_pixels,
        max_side=limits.max_side,
    )


# Pillow's refusals of PNG metadata that inflates past its caps (PngImagePlugin.MAX_TEXT_CHUNK, 1 MiB a
# compressed text or ICC profile chunk; MAX_TEXT_MEMORY, 64 MiB of text in all): a bomb, not damage.
_METADATA_BOMBS = ("Decompressed data too large", "Too much memory used in text chunks")


def _is_metadata_bomb(exc: BaseException) -> bool:
    return isinstance(exc, ValueError) and any(text in str(exc) for text in _METADATA_BOMBS)


def _metadata_too_large(exc: BaseException) -> ImageTooLarge:
    return ImageTooLarge(
        f"The image's metadata inflates to more than the decoder allows ({exc}): a compressed text chunk "
        "or ICC profile of over 1 MiB, or over 64 MiB of text. Strip the metadata (e.g. re-export without "
        "it) and send the image again.",
        part="metadata",
    )


def _unidentified(data: bytes) -> UnsupportedImage | CorruptImage:
    head = data[:16]
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        claimed: str | None = "WebP"
    else:
        claimed = next((name for magic, name in _SUPPORTED_MAGIC if head.startswith(magic)), None)
    if claimed is not None:
        return CorruptImage(
            f"The data starts like a {claimed} file but its header is damaged; "
            "re-export the image.",
            format=claimed,
        )
    stripped = data[:64].lstrip().lower()
    what = next((name for magic, name in _OTHER_MAGIC if stripped.startswith(magic.lower())), None)
    sent = f"The data looks like {what}, which is not supported. " if what else ""
    return UnsupportedImage(
        f"{sent}Unrecognised image format: send one of {_FORMAT_NAMES}.",
        supported=list(SUPPORTED_FORMATS),
    )


# --- orientation and modes ---------------------------------------------------------------------


def _apply_exif_orientation(image: Image.Image) -> Image.Image:
    """Rotate/flip as the EXIF Orientation tag says; unreadable EXIF means "as stored"."""
    try:
        return ImageOps.exif_transpose(image)
    except (*_DECODE_ERRORS, KeyError, TypeError):
        return image


def _to_rgb(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Any supported Pillow mode -> (HxWx3 uint8 RGB, alpha or None)."""
    mode = image.mode
    if mode in _HIGH_DEPTH_INT_MODES or mode == "F":
        gray = _high_depth_to_uint8(image)
        return np.repeat(gray[:, :, None], 3, axis=2), None
    if _has_alpha(image):
        rgba = np.asarray(_convert(image, "RGBA"))
        alpha = np.ascontiguousarray(rgba[:, :, 3])
        return _over_white(rgba[:, :, :3], alpha), alpha
    return np.asarray(_convert(image, "RGB")), None


def _has_alpha(image: Image.Image) -> bool:
    bands = image.getbands()
    return "A" in bands or "a" in bands or "transparency" in image.info


def _convert(image: Image.Image, mode: str) -> Image.Image:
    try:
        return image.convert(mode)
    except (ValueError, OSError) as exc:
        raise UnsupportedImage(
            f"Image mode {image.mode!r} cannot be converted to {mode}; save the image as 8-bit "
            "RGB or grayscale.",
            mode=image.mode,
        ) from exc


def _over_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite straight (non-premultiplied) RGB over white, rounding to nearest."""
    a = alpha.astype(np.uint32)[:, :, None]
    out = (rgb.astype(np.uint32) * a + 255 * (255 - a) + 127) // 255
    return out.astype(np.uint8)


def _high_depth_to_uint8(image: Image.Image) -> np.ndarray:
    """16/32-bit integer or float grayscale -> 8-bit, scaled by the image's bit range.

    Pillow's own ``convert("L")`` *clips* (32896 -> 255), which would turn most 16-bit images
    white. Integers are scaled by the declared bit depth (TIFF BitsPerSample up to 16, else 16
    bits for I;16 and for mode I data in 0..65535): full-range 16-bit divides by 257. Other
    integers (negative, or 32-bit data beyond 65535) and floats outside [0, 1] are min-max
    stretched; floats in [0, 1] are multiplied by 255.
    """
    values = np.asarray(image)
    if image.mode == "F":
        return _float_to_uint8(values.astype(np.float64))
    values = values.astype(np.int64)
    bits = _declared_bits(image)
    if bits is None:
        lo = int(values.min()) if values.size else 0
        hi = int(values.max()) if values.size else 0
        if lo < 0 or hi > 65535:
            return _stretch(values.astype(np.float64))
        bits = 16
    full_scale = (1 << bits) - 1
    scaled = (np.clip(values, 0, full_scale) * 255 + full_scale // 2) // full_scale
    return scaled.astype(np.uint8)


def _declared_bits(image: Image.Image) -> int | None:
    tags = getattr(image, "tag_v2", None)
    if tags is not None and _TIFF_BITS_PER_SAMPLE in tags:
        raw = tags[_TIFF_BITS_PER_SAMPLE]
        bits = int(raw[0] if isinstance(raw, tuple) else raw)
        if 8 <= bits <= 16:
            return bits
    if image.mode.startswith("I;16"):
        return 16
    return None


def _float_to_uint8(values: np.ndarray) -> np.ndarray:
    values = np.where(np.isfinite(values), values, 0.0)
    if values.size and values.min() >= 0.0 and values.max() <= 1.0:
        return np.rint(values * 255.0).astype(np.uint8)
    return _stretch(values)


def _stretch(values: np.ndarray) -> np.ndarray:
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.rint((values - lo) * (255.0 / (hi - lo))).astype(np.uint8)
