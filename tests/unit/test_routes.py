"""The route modules (lensgraph.routes): geometry read from the model cards, and answers that are
exactly what the API's response schemas describe (the ingress sends them without re-validating)."""

from __future__ import annotations

import copy
import io
import json

import numpy as np
import pytest
from PIL import Image

from lensgraph.errors import InvalidRequest
from lensgraph.inference.local import LocalPipelines
from lensgraph.repository.store import find_model
from lensgraph.routes import classify, faces, landmarks, model_ref
from pipelines.schemas import ClassifyResponse, DigitResponse, FacesResponse, LandmarksResponse


@pytest.fixture(scope="module")
def local(repository):
    return LocalPipelines(repository, threads=1)


def _as_schema_says(schema, answer: dict) -> None:
    """The answer survives JSON and equals the schema's own serialisation: no missing, extra or mistyped key."""
    sent = json.loads(json.dumps(answer, allow_nan=False))
    assert schema.model_validate(sent).model_dump(mode="json") == sent


def test_geometry_comes_from_the_cards(repository):
    card = find_model(repository, "classifier").card
    assert classify.ClassifyGeometry.from_card(card) == classify.ClassifyGeometry(256, 224, 1000)
    bigger = copy.deepcopy(card)
    bigger["inputs"][0]["shape"] = ["batch", 288, 288, 3]
    bigger["preprocessing"]["before_graph"] = {"resize_shorter": 320, "crop": 288}
    geometry = classify.ClassifyGeometry.from_card(bigger)
    assert classify.prepare(np.zeros((500, 400, 3), np.uint8), geometry).shape == (288, 288, 3)
    detector, marks = find_model(repository, "face_detector").card, find_model(repository, "landmarks").card
    assert faces.FaceGeometry.from_cards(detector, marks) == faces.FaceGeometry((320, 240), 96)
    assert landmarks.crop_side(marks) == 96
    marks_64 = copy.deepcopy(marks)
    marks_64["inputs"][0]["shape"] = ["batch", 64, 64, 1]
    crop, _ = landmarks.prepare(np.zeros((100, 80, 3), np.uint8), landmarks.crop_side(marks_64))
    assert crop.shape == (64, 64, 1)


def test_classify_checks_before_decoding(repository):
    geometry = classify.ClassifyGeometry.from_card(find_model(repository, "classifier").card)
    with pytest.raises(InvalidRequest, match="1000 classes"):
        classify.check(geometry, 1001, "standard")
    with pytest.raises(InvalidRequest, match="unknown preprocessing profile"):
        classify.check(geometry, 2, "sharpen")


def test_answers_are_what_the_schemas_say(local, assets, repository):
    photo = (assets / "imagenet/n01440764_tench.JPEG").read_bytes()
    _as_schema_says(ClassifyResponse, local.classify([photo])[0])
    for answer in local.faces([(assets / "face_detector/linzaer_imgs_2.jpg").read_bytes()]):
        assert len(answer["faces"]) == 4
        _as_schema_says(FacesResponse, answer)
    blank, digit = io.BytesIO(), io.BytesIO()
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(blank, format="PNG")
    Image.open(assets / "imagenet/n01440764_tench.JPEG").save(digit, format="PNG")
    for answer in local.digits([blank.getvalue(), digit.getvalue()], seed=1):
        _as_schema_says(DigitResponse, answer)
    card = find_model(repository, "landmarks").card
    crop, box = landmarks.prepare(np.zeros((120, 100, 3), np.uint8), 96)
    (result,) = local.landmarks.run_groups([crop[None]])[0]
    _as_schema_says(LandmarksResponse, landmarks.answer(card, 100, 120, box, result, 96))
    assert model_ref(card) == {"name": "landmarks", "version": 1, "weights_real": True}


def test_one_call_per_request_keeps_each_requests_faces(local):
    """LandmarkRunner.run_groups: stacks of different sizes in one session call, split back in order."""
    rng = np.random.default_rng(0)
    groups = [rng.integers(0, 255, (k, 96, 96, 1), dtype=np.uint8) for k in (3, 1, 5)]
    together = local.landmarks.run_groups(groups)
    assert [len(g) for g in together] == [3, 1, 5]
    alone = local.landmarks.run_batch(list(groups[2]))
    for a, b in zip(together[2], alone):
        np.testing.assert_allclose(a["points"], b["points"], atol=1e-4)


def test_face_tiling_comes_from_the_detector_card_unless_the_ingress_overrides_it(repository):
    detector, marks = find_model(repository, "face_detector").card, find_model(repository, "landmarks").card
    assert detector["options"]["tile_width"] == 800  # configs/models.yaml
    changed = copy.deepcopy(detector)
    changed["options"].update(tile_width=640, max_tiles=16)
    geometry = faces.FaceGeometry.from_cards(changed, marks, tile_width=None, max_tiles=8)
    assert (geometry.tile_width, geometry.max_tiles, geometry.tile_overlap) == (640, 8, 0.5)
