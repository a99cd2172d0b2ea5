"""Face detection over views of a photo (lensgraph.imaging.tiling, postprocess.detection.merge_views):
letterbox mapping, the tile plan and its cap, and the real detector on composed group photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lensgraph.imaging import tiling

INPUT = (320, 240)


@pytest.mark.parametrize("size", [(1000, 300), (300, 1000), (641, 479), (320, 240), (57, 31)])
def test_letterbox_mapping_is_exact_on_synthetic_boxes(size):
    """A box drawn in the photo lands where View.scale_* says, and to_photo maps it back exactly."""
    w, h = size
    view = tiling.View.of(0, 0, w, h, INPUT, True)
    rng = np.random.default_rng(0)
    for _ in range(20):
        x1, x2 = sorted(rng.uniform(0, w, 2))
        y1, y2 = sorted(rng.uniform(0, h, 2))
        forward = (x1 * view.scale_x, y1 * view.scale_y, x2 * view.scale_x, y2 * view.scale_y)
        np.testing.assert_allclose(view.to_photo(*forward), (x1, y1, x2, y2), rtol=0, atol=1e-9)
    # The pixels agree: a white block in the photo is where the mapping puts it in the letterboxed input.
    photo = np.zeros((h, w, 3), np.uint8)
    bx1, by1, bx2, by2 = w // 4, h // 4, 3 * w // 4, 3 * h // 4
    photo[by1:by2, bx1:bx2] = 255
    canvas = tiling.letterbox(photo, INPUT)
    ys, xs = np.nonzero(canvas[..., 0] > 127)
    expected = (bx1 * view.scale_x, by1 * view.scale_y, bx2 * view.scale_x, by2 * view.scale_y)
    assert abs(xs.min() - expected[0]) <= 1 and abs(xs.max() + 1 - expected[2]) <= 1
    assert abs(ys.min() - expected[1]) <= 1 and abs(ys.max() + 1 - expected[3]) <= 1
    assert canvas.shape == (240, 320, 3) and max(xs.max(), 0) < round(w * view.scale_x) + 1


def test_small_photos_get_one_view_and_large_ones_overlapping_tiles_that_cover_them():
    assert len(tiling.plan(640, 480, INPUT).views) == 1
    result = tiling.plan(1600, 1920, INPUT, tile_width=640, overlap=0.5)
    whole, tiles = result.views[0], result.views[1:]
    assert whole.whole and (whole.width, whole.height) == (1600, 1920) and not result.capped
    levels = sorted({(t.width, t.height) for t in tiles})
    assert levels == [(640, 480), (1280, 960)], "a pyramid: tiles, then tiles twice as large while they do not cover"
    for size in levels:
        level = [t for t in tiles if (t.width, t.height) == size]
        covered = np.zeros((1920, 1600), bool)
        for t in level:
            covered[t.y : t.y + t.height, t.x : t.x + t.width] = True
        assert covered.all(), size
        xs, ys = sorted({t.x for t in level}), sorted({t.y for t in level})
        # Half-tile overlap: every face up to half a tile lies whole in one tile of the level.
        assert max(np.diff(xs)) <= size[0] // 2 and max(np.diff(ys)) <= size[1] // 2


def test_the_tile_cap_bounds_the_work_on_huge_photos():
    huge = tiling.plan(12000, 9000, INPUT, tile_width=640, max_tiles=64)
    assert len(huge.views) <= 65 and huge.capped and huge.tile_width > 640
    assert len(tiling.plan(12000, 9000, INPUT, max_tiles=0).views) == 1
    with pytest.raises(ValueError):
        tiling.plan(100, 100, INPUT, overlap=1.0)


def test_the_answer_says_how_the_photo_was_searched_and_warns_when_capped():
    from lensgraph.routes.faces import FaceGeometry, search

    geometry = FaceGeometry(INPUT, 96)
    assert search(640, 480, geometry) == {"min_face": 48, "views": 1, "tile_width": None, "capped": False,
                                        "warning": None}
    big = search(1600, 1920, geometry)
    assert big["views"] > 10 and big["tile_width"] == 800 and not big["capped"] and big["warning"] is None
    huge = search(12000, 9000, FaceGeometry(INPUT, 96, max_tiles=16))
    assert huge["capped"] and huge["views"] <= 17 and huge["tile_width"] > 800
    assert "max_tiles=16" in huge["warning"] and "px tall may be missed" in huge["warning"]
    # A caller who wants only large faces pays for few views: tiles scale with min_face.
    portrait = search(3000, 4000, geometry, min_face=240)
    assert portrait["views"] < search(3000, 4000, geometry)["views"] and portrait["tile_width"] == 4000
    assert portrait["min_face"] == 240


@pytest.fixture(scope="module")
def detect(repository: Path):
    from lensgraph.inference.face_detector import FaceDetectorRunner
    from lensgraph.repository.store import find_model
    from lensgraph.routes.faces import FaceGeometry, detector_item

    runner = FaceDetectorRunner(find_model(repository, "face_detector"))
    geometry = FaceGeometry(INPUT, 96)

    def run(pixels: np.ndarray, **tiles) -> list[dict]:
        g = FaceGeometry(INPUT, 96, **tiles) if tiles else geometry
        return runner.run_batch([detector_item(pixels, g)])[0]

    return run


@pytest.fixture(scope="module")
def scene_parts(detect, assets: Path):
    from lensgraph.evaluation.face_scenes import face_photos, reference_boxes

    photos = face_photos(assets)
    return photos, reference_boxes(detect, photos)


def _boxes(found: list[dict]) -> np.ndarray:
    return np.array([[f["x1"], f["y1"], f["x2"], f["y2"]] for f in found]).reshape(-1, 4)


def test_an_8x8_group_photo_gives_at_least_61_faces_and_no_duplicates(detect, scene_parts):
    """Squeezed into one 320x240 pass, this 1600x1920 scene gave 13 of 64 (issue 13)."""
    from lensgraph.evaluation.face_scenes import grid_scene, match

    scene, truth = grid_scene(*scene_parts, n=8)
    found = _boxes(detect(scene))
    hits, extra = match(truth, found)
    assert hits >= 61 and extra == 0, (hits, extra, len(found))
    alone = _boxes(detect(scene, max_tiles=0))  # the whole photo only: what tiling adds
    assert match(truth, alone)[0] < 40


def test_a_face_cut_by_a_tile_border_is_found_once(detect, scene_parts):
    from lensgraph.evaluation.face_scenes import match

    photos, boxes = scene_parts
    canvas = np.full((960, 1280, 3), 90, np.uint8)
    # Tiles of 640x480 with half overlap start at x = 0, 320, 640: put the face across x = 640.
    face, box = photos[0], boxes[0]
    scale = 3.0
    big = np.array(__import__("cv2").resize(face, None, fx=1 / scale * 2, fy=1 / scale * 2))
    fb = box * (2 / scale)
    x0, y0 = int(640 - (fb[0] + fb[2]) / 2), 300
    canvas[y0 : y0 + big.shape[0], x0 : x0 + big.shape[1]] = big[: 960 - y0, : 1280 - x0]
    truth = (fb + [x0, y0, x0, y0])[None]
    found = _boxes(detect(canvas, tile_width=640))
    assert truth[0, 0] < 640 < truth[0, 2], "the face straddles a tile border"
    assert match(truth, found) == (1, len(found) - 1) and len(found) == 1, found
