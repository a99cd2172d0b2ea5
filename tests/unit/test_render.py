"""Pictures of the routes' answers (lensgraph.render): real photos, real answers from the models
(lensgraph.inference.local, the same route modules as the service), decoded back and compared with the
photo pixel by pixel."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from lensgraph.datasets.mnist import load_split
from lensgraph.errors import InvalidRequest
from lensgraph.imaging.decode import decode_image, to_gray
from lensgraph.inference.local import LocalPipelines
from lensgraph.render import ROUTES, draw, negotiate, render
from lensgraph.render.canvas import Style, text_size
from lensgraph.render.digits import CHOSEN, SIZE
from lensgraph.render.faces import LANDMARK_COLOURS
from lensgraph.routes import digits as digits_route
from lensgraph.routes import landmarks as landmarks_route


@pytest.fixture(scope="module")
def local(repository):
    return LocalPipelines(repository, threads=1)


def _decoded(data: bytes, media: str) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    assert image.format == {"image/png": "PNG", "image/jpeg": "JPEG"}[media]
    return np.asarray(image.convert("RGB"))


def _photo(assets, relative: str) -> tuple[bytes, np.ndarray]:
    data = (assets / relative).read_bytes()
    return data, decode_image(data).pixels


def _box_region(shape, x1, y1, x2, y2) -> tuple[slice, slice]:
    h, w = shape[:2]
    x1, y1 = max(0, int(np.floor(x1))), max(0, int(np.floor(y1)))
    x2, y2 = min(w, int(np.ceil(x2)) + 1), min(h, int(np.ceil(y2)) + 1)
    return slice(y1, y2), slice(x1, x2)


def _label_margin(pixels: np.ndarray, text: str) -> int:
    """How far a box's label (above it, from its left edge) and lines may reach beyond the box."""
    style = Style.for_shape(*pixels.shape[:2])
    width, height, depth = text_size(text, style)
    return max(width, height + depth) + 2 * style.font_thickness + 2 * style.thickness + 2


def _far_from(shape, boxes, margin: int) -> np.ndarray:
    """True where a pixel is more than ``margin`` px from every box (labels sit just outside a box)."""
    far = np.ones(shape[:2], bool)
    h, w = shape[:2]
    for x1, y1, x2, y2 in boxes:
        rows = slice(max(0, int(y1) - margin), min(h, int(y2) + margin + 1))
        far[rows, max(0, int(x1) - margin) : min(w, int(x2) + margin + 1)] = False
    return far


@pytest.mark.parametrize("relative,count", [("face_detector/linzaer_imgs_2.jpg", 4), ("faces/obama.jpg", 1),
                                            ("faces/astronaut.png", 1)])
def test_faces_are_drawn_in_every_box_and_nowhere_else(local, assets, relative, count):
    data, pixels = _photo(assets, relative)
    original = pixels.copy()
    answer = local.faces([data])[0]
    assert len(answer["faces"]) == count
    picture, media = render("faces", pixels, answer, "png")
    assert media == "image/png"
    np.testing.assert_array_equal(pixels, original)  # the caller's photo is not drawn on
    drawn = _decoded(picture, media)
    assert drawn.shape == pixels.shape
    colours = {tuple(c) for c in LANDMARK_COLOURS.values()}
    boxes = []
    for face in answer["faces"]:
        b = face["box"]
        boxes.append((b["x1"], b["y1"], b["x2"], b["y2"]))
        inside = _box_region(pixels.shape, *boxes[-1])
        changed = np.any(drawn[inside] != pixels[inside], axis=-1)
        assert changed.mean() > 0.01, (relative, face["box"])
        assert len(face["landmarks"]) == 15
        for mark in face["landmarks"]:  # a filled circle of its landmark's colour on every point
            if 0 <= mark["x"] < pixels.shape[1] - 0.5 and 0 <= mark["y"] < pixels.shape[0] - 0.5:
                assert tuple(drawn[int(round(mark["y"])), int(round(mark["x"]))]) in colours, mark["name"]
    far = _far_from(pixels.shape, boxes, _label_margin(pixels, "0.00"))
    assert far.mean() > 0.3
    np.testing.assert_array_equal(drawn[far], pixels[far])


def test_faces_options_gray_photos_and_jpeg(local, assets):
    data, pixels = _photo(assets, "faces/obama.jpg")
    answer = local.faces([data])[0]
    plain = draw("faces", pixels, answer)
    named = draw("faces", pixels, answer, names=True)
    assert np.count_nonzero(np.any(named != plain, axis=-1)) > 100  # landmark names: off by default
    gray = to_gray(pixels)
    picture, media = render("faces", gray, answer, "png")
    drawn = _decoded(picture, media)
    assert drawn.shape == (*gray.shape, 3)
    b = answer["faces"][0]["box"]
    inside = _box_region(gray.shape, b["x1"], b["y1"], b["x2"], b["y2"])
    assert np.any(drawn[inside] != gray[inside][..., None])
    picture, media = render("faces", pixels, answer, "jpeg")
    assert media == "image/jpeg" and picture[:3] == b"\xff\xd8\xff"
    assert _decoded(picture, media).shape == pixels.shape
    empty = draw("faces", pixels, {"faces": []})
    np.testing.assert_array_equal(empty, pixels)


def test_landmarks_of_a_face_crop(local, assets, repository):
    data, pixels = _photo(assets, "faces/obama.jpg")
    b = local.faces([data])[0]["faces"][0]["box"]
    face = np.ascontiguousarray(pixels[int(b["y1"]) : int(b["y2"]), int(b["x1"]) : int(b["x2"])])
    crop, box = landmarks_route.prepare(face, 96)
    (result,) = local.landmarks.run_batch([crop])
    answer = landmarks_route.answer(local.landmarks.entry.card, face.shape[1], face.shape[0], box, result, 96)
    picture, media = render("landmarks", face, answer, "png")
    drawn = _decoded(picture, media)
    assert drawn.shape == face.shape
    colours = {tuple(c) for c in LANDMARK_COLOURS.values()}
    for mark in answer["landmarks"]:
        assert tuple(drawn[int(round(mark["y"])), int(round(mark["x"]))]) in colours, mark["name"]


@pytest.mark.parametrize("relative", ["imagenet/n01440764_tench.JPEG", "imagenet/n01667114_mud_turtle.JPEG"])
def test_classify_banner_over_the_top(local, assets, relative):
    data, pixels = _photo(assets, relative)
    answer = local.classify([data], top_k=5)[0]
    picture, media = render("classify", pixels, answer, "png")
    drawn = _decoded(picture, media)
    assert drawn.shape == pixels.shape
    h = pixels.shape[0]
    top, bottom = slice(0, h // 10), slice(int(h * 0.6), h)
    assert np.mean(drawn[top].astype(float)) < np.mean(pixels[top].astype(float))  # darkened: white text reads
    assert np.any(drawn[top] != pixels[top])
    np.testing.assert_array_equal(drawn[bottom], pixels[bottom])  # the banner stays on top
    picture, media = render("classify", pixels, answer, "jpeg")
    assert _decoded(picture, media).shape == pixels.shape


def test_classify_banner_fits_a_tiny_photo_and_many_classes(local, assets):
    data, pixels = _photo(assets, "imagenet/n01440764_tench.JPEG")
    answer = local.classify([data], top_k=50)[0]
    small = np.ascontiguousarray(pixels[:48, :64])
    drawn = draw("classify", small, answer)
    assert drawn.shape == small.shape
    assert np.any(drawn != small)
    np.testing.assert_array_equal(drawn[int(48 * 0.6) + 1 :], small[int(48 * 0.6) + 1 :])


def _digit_answer(local, data: bytes, seed: int = 1):
    prepared = digits_route.prepare(decode_image(data))
    result = None if prepared.blank else local.digit_runner.run_batch([(prepared.image, None, seed)])[0]
    return prepared, result, digits_route.answer(local.digit_runner.entry.card, prepared, result)


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_digits_picture(local, assets):
    digit = 255 - load_split("test", assets / "mnist").images[0]  # a 7, dark ink on white
    data = _png(np.asarray(Image.fromarray(digit).resize((140, 140))))
    prepared, result, answer = _digit_answer(local, data)
    assert answer["probabilities"] is None  # not asked for: the caller passes them explicitly
    pixels = decode_image(data).pixels
    picture, media = render("digits", pixels, answer, "png", probabilities=result["probabilities"],
                            digit_image=prepared)
    drawn = _decoded(picture, media)
    assert (drawn.shape[1], drawn.shape[0]) == SIZE
    assert drawn.std() > 20 and len(np.unique(drawn.reshape(-1, 3), axis=0)) > 20  # not blank
    assert np.all(drawn == CHOSEN, axis=-1).sum() > 200  # the chosen digit's bar, highlighted
    again = draw("digits", pixels, answer, probabilities=result["probabilities"])  # the 28x28 made from the photo
    np.testing.assert_array_equal(again, draw("digits", pixels, answer, probabilities=result["probabilities"],
                                              digit_image=prepared.image))


def test_digits_picture_of_a_photo_and_a_blank(local, assets):
    data, pixels = _photo(assets, "imagenet/n01440764_tench.JPEG")
    prepared, result, answer = _digit_answer(local, data)
    assert answer["reliable"] is False
    picture, media = render("digits", pixels, answer, "jpeg", probabilities=result["probabilities"],
                            digit_image=prepared.image)
    assert _decoded(picture, media).shape == (SIZE[1], SIZE[0], 3)
    with pytest.raises(ValueError, match="probabilities"):
        render("digits", pixels, answer, "png", digit_image=prepared.image)
    blank = np.full((40, 40), 255, np.uint8)
    prepared, result, answer = _digit_answer(local, _png(blank))
    assert answer["blank"] and result is None
    picture, media = render("digits", blank, answer, "png", digit_image=prepared)
    assert _decoded(picture, media).shape == (SIZE[1], SIZE[0], 3)


def test_detect_boxes_and_labels(assets):
    _, pixels = _photo(assets, "imagenet/n01440764_tench.JPEG")
    answer = {"detections": [{"box": [220.0, 160.0, 400.0, 250.0], "score": 0.91, "class_id": 7, "label": "cat"},
                             {"box": [20.5, 30.2, 120.0, 110.9], "score": 0.55, "class_id": 14, "label": "person"}],
              "count": 2, "image": {"width": pixels.shape[1], "height": pixels.shape[0]}}
    picture, media = render("detect", pixels, answer, "png")
    drawn = _decoded(picture, media)
    assert drawn.shape == pixels.shape
    for d in answer["detections"]:
        inside = _box_region(pixels.shape, *d["box"])
        assert np.any(drawn[inside] != pixels[inside])
    far = _far_from(pixels.shape, [d["box"] for d in answer["detections"]], _label_margin(pixels, "person 0.00"))
    assert far.mean() > 0.25
    np.testing.assert_array_equal(drawn[far], pixels[far])


def test_render_refuses_what_it_cannot_draw(assets):
    _, pixels = _photo(assets, "faces/obama.jpg")
    assert set(ROUTES) == {"classify", "faces", "landmarks", "detect", "digits"}
    with pytest.raises(ValueError, match="route"):
        render("models", pixels, {}, "png")
    with pytest.raises(ValueError, match="format"):
        render("faces", pixels, {"faces": []}, "gif")
    with pytest.raises(ValueError, match="uint8"):
        render("faces", pixels.astype(np.float32), {"faces": []}, "png")


@pytest.mark.parametrize("flag,accept,expected", [
    (None, None, None),
    (False, "", None),
    (None, "application/json", None),
    (None, "*/*", None),
    (None, "image/*", None),
    (True, None, "jpeg"),
    ("true", None, "jpeg"),
    ("1", "*/*", "jpeg"),
    (True, "application/json", "jpeg"),
    (True, "image/png", "png"),
    ("false", None, None),
    (None, "image/jpeg", "jpeg"),
    (None, "image/png", "png"),
    (False, "image/png", "png"),
    (None, "image/png, image/jpeg", "png"),
    (None, "image/jpeg, image/png", "png"),
    (None, "image/jpeg, image/png;q=0.5", "jpeg"),
    (None, "image/png;q=0.4, image/jpeg;q=0.9", "jpeg"),
    (None, "IMAGE/PNG", "png"),
    (None, "image/png;q=0", None),
    (None, "application/json, image/png;q=0.5", None),
    (None, "application/json;q=0.5, image/png", "png"),
    (None, "image/avif,image/webp,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5", "png"),
    (None, "text/html,application/xhtml+xml,image/webp,*/*;q=0.8", None),
    (None, "image/png;q=abc", None),
])
def test_negotiate(flag, accept, expected):
    assert negotiate(flag, accept) == expected


def test_negotiate_refuses_a_render_value_that_is_no_bool():
    with pytest.raises(InvalidRequest, match="render"):
        negotiate("maybe", None)
