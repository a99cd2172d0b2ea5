"""The decoder on hostile files (tests/trap_files.py): each decodes to the image it carries, or is refused
with its 4xx, without a hang, a memory spike or a flood of warnings."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

from lensgraph.errors import LensgraphError
from lensgraph.imaging.decode import decode_image
from tests import trap_files
from tests.trap_files import TRAPS

ROOT = trap_files.__file__.rsplit("/tests/", 1)[0]


def _outcome(data: bytes) -> str:
    try:
        decode_image(data)
    except LensgraphError as exc:
        assert 400 <= exc.status < 500, (exc.status, exc.message)
        assert len(exc.message) > 40, exc.message  # says what was wrong and what to do
        return exc.code
    return "ok"


@pytest.mark.parametrize("name", sorted(TRAPS))
def test_each_trap_decodes_or_gets_its_4xx_and_warns_nothing(name):
    maker, expected = TRAPS[name]
    data = maker()
    assert len(data) < 8 * 1024 * 1024, "must fit the upload limit, or it tests the byte limit instead"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _outcome(data) == expected
    assert [str(w.message) for w in caught] == []


def test_metadata_bombs_name_the_metadata():
    for name in ("png_giant_iccp", "png_giant_ztxt", "png_many_ztxt"):
        with pytest.raises(LensgraphError) as info:
            decode_image(TRAPS[name][0]())
        assert info.value.status == 413 and "metadata" in info.value.message
        assert info.value.detail == {"part": "metadata"}


def test_declared_giant_progressive_jpeg_is_refused_from_its_header_with_our_limits():
    with pytest.raises(LensgraphError) as info:
        decode_image(trap_files.progressive_jpeg_declaring(60000, 60000))
    assert info.value.status == 413 and "40000000 pixels and 16384 per side" in info.value.message


def test_cmyk_jpeg_becomes_the_right_rgb():
    decoded = decode_image(trap_files.cmyk_jpeg())
    assert decoded.original_mode == "CMYK" and decoded.pixels.shape == (48, 64, 3)
    expected = np.asarray(trap_files.photo()).astype(int)
    assert np.abs(decoded.pixels.astype(int) - expected).mean() < 6  # JPEG error only, no inverted channels


def test_many_pages_and_many_frames_give_the_first():
    tiff = decode_image(trap_files.tiff_many_pages())
    assert tiff.format == "TIFF" and tiff.pixels.shape == (8, 8, 3) and (tiff.pixels == (200, 30, 30)).all()
    gif = decode_image(trap_files.gif_many_frames())
    assert gif.format == "GIF" and (gif.pixels == (255, 0, 0)).all()


@pytest.mark.parametrize("name", ["exif_bomb", "png_exif_bomb"])
def test_exif_bombs_still_apply_their_orientation(name):
    decoded = decode_image(TRAPS[name][0]())
    assert decoded.pixels.shape == (64, 48, 3)  # 64x48 turned 90 degrees, as its Orientation tag says


@pytest.mark.parametrize("name, fmt", [("png_then_zip", "PNG"), ("jpeg_then_script", "JPEG")])
def test_polyglots_decode_to_the_image_they_carry(name, fmt):
    decoded = decode_image(TRAPS[name][0]())
    expected = np.asarray(trap_files.photo()).astype(int)
    assert decoded.format == fmt and decoded.pixels.shape == expected.shape
    assert np.abs(decoded.pixels.astype(int) - expected).mean() < 3  # the junk after the image is ignored


_CHILD = """
import json, resource, sys
sys.path.insert(0, {root!r})
from tests.trap_files import TRAPS
from lensgraph.errors import LensgraphError
from lensgraph.imaging.decode import decode_image
decode_image(TRAPS["cmyk_jpeg"][0]())  # libraries warmed up: what follows is the traps' own memory
out = {{}}
for name, (maker, _) in sorted(TRAPS.items()):
    data = maker()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        decode_image(data)
    except LensgraphError:
        pass
    out[name] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps(out))
"""


def test_no_trap_hangs_or_raises_the_peak_memory():
    """In a fresh process: the peak resident memory grows by less than 64 MB over all the traps (a bomb that
    got through would take gigabytes); the timeout only stops a hang."""
    child = subprocess.run([sys.executable, "-c", _CHILD.format(root=ROOT)], capture_output=True, text=True,
                           timeout=300)
    assert child.returncode == 0, child.stderr[-3000:]
    growth = json.loads(child.stdout.strip().splitlines()[-1])
    assert set(growth) == set(TRAPS)
    assert sum(growth.values()) < 64, growth
