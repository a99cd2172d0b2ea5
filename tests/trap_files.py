"""Hostile image files, made on the fly (no binaries in the repository): issue 11, "real-file traps".

Each maker returns bytes small enough to upload (well under the 8 MiB limit) that try to make a decoder
allocate, loop or decompress far more than they weigh. ``TRAPS`` names each with what the service must
answer: a decoded image (``"ok"``) or the JSON error code of a 4xx.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def photo(width: int = 64, height: int = 48) -> Image.Image:
    """A smooth colour gradient: survives JPEG and CMYK round trips with small errors."""
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), np.full_like(x, 128)], axis=2)
    return Image.fromarray(pixels.astype(np.uint8))


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_with(chunks: list[bytes], after_idat: list[bytes] = ()) -> bytes:
    """A real 64x48 PNG with extra chunks right after IHDR (and optionally after IDAT)."""
    png = _save(photo(), "PNG")
    ihdr_end = 8 + 25
    iend = png.rindex(b"IEND") - 4
    return png[:ihdr_end] + b"".join(chunks) + png[ihdr_end:iend] + b"".join(after_idat) + png[iend:]


def _zeros_deflated(size: int) -> bytes:
    """``size`` zero bytes, deflated: ~1 kB per MB."""
    packer = zlib.compressobj(9)
    block = bytes(1 << 20)
    out = [packer.compress(block) for _ in range(size >> 20)]
    out.append(packer.compress(bytes(size & ((1 << 20) - 1))))
    return b"".join(out) + packer.flush()


def png_giant_iccp(size: int = 1 << 30) -> bytes:
    """An ICC profile that inflates to 1 GiB from about 1 MB."""
    return _png_with([_chunk(b"iCCP", b"bomb\x00\x00" + _zeros_deflated(size))])


def png_giant_ztxt(size: int = 1 << 30) -> bytes:
    """A compressed text chunk that inflates to 1 GiB from about 1 MB."""
    return _png_with([_chunk(b"zTXt", b"Comment\x00\x00" + _zeros_deflated(size))])


def png_many_ztxt(count: int = 2000, each: int = (1 << 20) - 64) -> bytes:
    """Thousands of text chunks just under Pillow's per-chunk limit, 2 GB of text in all, after the pixels."""
    one = _chunk(b"zTXt", b"Comment\x00\x00" + _zeros_deflated(each))
    return _png_with([], after_idat=[one] * count)


def tiff_many_pages(pages: int = 3000) -> bytes:
    """A TIFF of ``pages`` 8x8 pages; the first is the photo's colour."""
    frames = [Image.new("RGB", (8, 8), (200, 30, 30))] + [Image.new("RGB", (8, 8), (0, 0, 0))] * (pages - 1)
    return _save(frames[0], "TIFF", save_all=True, append_images=frames[1:])


def gif_many_frames(frames: int = 5000) -> bytes:
    """A GIF of ``frames`` 16x16 frames; the first is red."""
    images = [Image.new("P", (16, 16), 1)] + [Image.new("P", (16, 16), 2 + i % 200) for i in range(frames - 1)]
    palette = [0, 0, 0, 255, 0, 0] + [i % 256 for i in range(3 * 254)]
    for image in images:
        image.putpalette(palette)
    return _save(images[0], "GIF", save_all=True, append_images=images[1:], duration=10, loop=0, optimize=False)


def cmyk_jpeg() -> bytes:
    """A CMYK JPEG (Adobe APP14, as print workflows write them) of the photo."""
    return _save(photo().convert("CMYK"), "JPEG", quality=95)


def progressive_jpeg_declaring(width: int = 60000, height: int = 60000) -> bytes:
    """A small progressive JPEG whose SOF2 header says ``width`` x ``height``."""
    data = bytearray(_save(photo(), "JPEG", progressive=True, quality=80))
    sof = data.index(b"\xff\xc2")
    assert sof > 0, "not progressive"
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _ifd(entries: list[tuple[int, int, int, bytes]], next_ifd: int) -> bytes:
    """A little-endian TIFF IFD: (tag, type, count, 4-byte value or offset) entries."""
    body = b"".join(struct.pack("<HHI", tag, kind, count) + value for tag, kind, count, value in entries)
    return struct.pack("<H", len(entries)) + body + struct.pack("<I", next_ifd)


def exif_bomb() -> bytes:
    """EXIF for "rotate 90": its IFD0 chains to itself, points its Exif and GPS IFDs back at itself, and
    declares tags of 4 G values; a JPEG segment keeps it under 64 kB, so it is also padded with 4000 more
    entries that each claim gigabytes."""
    entries = [
        (0x0112, 3, 1, struct.pack("<HH", 6, 0)),  # Orientation: rotate 90 CW
        (0x8769, 4, 1, struct.pack("<I", 8)),  # ExifIFD -> IFD0 again
        (0x8825, 4, 1, struct.pack("<I", 8)),  # GPSInfo -> IFD0 again
        (0x010E, 2, 0xFFFFFFFF, struct.pack("<I", 8)),  # ImageDescription: 4 G characters
    ]
    entries += [(0x9000 + i, 7, 0x7FFFFFFF, struct.pack("<I", 8)) for i in range(5000)]  # undefined, 2 GB each
    entries.sort(key=lambda e: e[0])
    tiff = b"II*\x00" + struct.pack("<I", 8) + _ifd(entries, next_ifd=8)  # IFD0's next IFD: itself
    exif = b"Exif\x00\x00" + tiff
    assert len(exif) < 65533
    return _save(photo(), "JPEG", quality=90, exif=exif)


def png_exif_bomb() -> bytes:
    """EXIF in a PNG eXIf chunk, which has no 64 kB cap: 200 000 chained IFDs in 6 MB, each with an
    Orientation and an Exif IFD pointing at the first, and the last chaining back to the first."""
    entries = [(0x0112, 3, 1, struct.pack("<HH", 6, 0)), (0x8769, 4, 1, struct.pack("<I", 8))]
    count = 200_000
    ifds = []
    for i in range(count):
        offset = 8 + i * 30
        following = offset + 30 if i < count - 1 else 8  # the last points back at the first
        ifds.append(_ifd(entries, following))
    tiff = b"II*\x00" + struct.pack("<I", 8) + b"".join(ifds)
    return _png_with([_chunk(b"eXIf", tiff)])


def png_then_zip() -> bytes:
    """A PNG that is also a ZIP archive (the archive appended; unzip finds it from the end)."""
    import zipfile

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("index.html", "<html><script>alert(1)</script></html>")
    return _save(photo(), "PNG") + archive.getvalue()


def jpeg_then_script() -> bytes:
    """A JPEG followed by an HTML page with a script: browsers that sniff would run it."""
    return _save(photo(), "JPEG", quality=90) + b"<html><body><script>alert(document.domain)</script></body></html>"


def gif_js_polyglot() -> bytes:
    """``GIF89a/*...*/=1;alert(1)``: a GIF whose header is valid JavaScript (the screen width is '/*')."""
    gif = bytearray(_save(Image.new("P", (4, 4), 0), "GIF"))
    gif[6:8] = b"/*"  # logical screen width 0x2a2f: the canvas Pillow reads
    return bytes(gif) + b"*/=1;alert(1);"


def pdf_with_jpeg() -> bytes:
    """A PDF document that carries a JPEG: a PDF, not an image."""
    jpeg = _save(photo(), "JPEG")
    return (b"%PDF-1.4\n1 0 obj << /Type /XObject /Subtype /Image /Filter /DCTDecode /Length "
            + str(len(jpeg)).encode() + b" >>\nstream\n" + jpeg + b"\nendstream endobj\n%%EOF\n")


# name -> (maker, what the service answers: "ok" or the 4xx error code)
TRAPS = {
    "png_giant_iccp": (png_giant_iccp, "image_too_large"),
    "png_giant_ztxt": (png_giant_ztxt, "image_too_large"),
    "png_many_ztxt": (png_many_ztxt, "image_too_large"),
    "tiff_many_pages": (tiff_many_pages, "ok"),
    "gif_many_frames": (gif_many_frames, "ok"),
    "cmyk_jpeg": (cmyk_jpeg, "ok"),
    "progressive_jpeg_60000x60000": (progressive_jpeg_declaring, "image_too_large"),
    "exif_bomb": (exif_bomb, "ok"),
    "png_exif_bomb": (png_exif_bomb, "ok"),
    "png_then_zip": (png_then_zip, "ok"),
    "jpeg_then_script": (jpeg_then_script, "ok"),
    "gif_js_polyglot": (gif_js_polyglot, "ok"),
    "pdf_with_jpeg": (pdf_with_jpeg, "unsupported_media_type"),
}
