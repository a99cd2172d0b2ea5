"""Post-processing on real model outputs (face detector, landmark regressor) and synthetic maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lensgraph.errors import InvalidRequest
from lensgraph.imaging.decode import decode_image
from lensgraph.imaging.transforms import detector_input, square_face_crop
from lensgraph.postprocess.classification import embedding_stats, load_labels, softmax, top_k
from lensgraph.postprocess.detection import FaceBox, decode_ultraface
from lensgraph.postprocess.landmarks import (
    LANDMARK_NAMES,
    decode_heatmaps,
    decode_regressor,
    named_points,
)

ort = pytest.importorskip("onnxruntime")


def _session(path: Path):
    options = ort.SessionOptions()
    options.log_severity_level = 3  # initializers listed as inputs: hundreds of warnings
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def detector(assets: Path):
    return _session(assets / "face_detector" / "version-RFB-320.onnx")


@pytest.fixture(scope="module")
def landmarker(assets: Path):
    return _session(assets / "landmarks" / "resnet_facial_feature.onnx")


def _detect(detector, assets: Path, relative: str) -> tuple[np.ndarray, list[FaceBox]]:
    pixels = decode_image((assets / relative).read_bytes()).pixels
    x = (detector_input(pixels).astype(np.float32) - 127.0) / 128.0
    scores, boxes = detector.run(None, {"input": x.transpose(2, 0, 1)[None]})
    return pixels, decode_ultraface(scores, boxes, pixels.shape[1], pixels.shape[0])


# --- detection ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("faces/astronaut.png", 1),
        ("faces/obama.jpg", 1),
        ("faces/biden.jpg", 1),
        ("face_detector/linzaer_imgs_2.jpg", 4),
        ("face_detector/linzaer_imgs_13.jpg", 2),
    ],
)
def test_ultraface_counts_on_real_photos(detector, assets: Path, relative: str, expected: int):
    pixels, faces = _detect(detector, assets, relative)
    height, width = pixels.shape[:2]
    assert len(faces) == expected
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)
    for face in faces:
        assert face.score > 0.7
        assert 0 <= face.x1 < face.x2 <= width and 0 <= face.y1 < face.y2 <= height
        assert set(face.to_dict()) == {"x1", "y1", "x2", "y2", "score"}


def test_ultraface_nms_thresholds_and_clipping():
    scores = np.array([[0.1, 0.9], [0.2, 0.8], [0.05, 0.95], [0.5, 0.5]])
    boxes = np.array(
        [
            [0.0, 0.0, 0.5, 0.5],
            [0.05, 0.0, 0.55, 0.5],  # IoU ~0.82 with the first: suppressed
            [0.8, 0.8, 1.2, 1.1],  # crosses the border: clipped
            [0.0, 0.6, 0.2, 0.8],  # score 0.5: below threshold
        ]
    )
    faces = decode_ultraface(scores[None], boxes[None], 200, 100)
    assert [round(f.score, 2) for f in faces] == [0.95, 0.9]
    assert faces[0].to_dict() == {"x1": 160.0, "y1": 80.0, "x2": 200.0, "y2": 100.0, "score": 0.95}
    assert faces[1].xyxy() == (0.0, 0.0, 100.0, 50.0)
    assert len(decode_ultraface(scores, boxes, 200, 100, iou_threshold=0.9)) == 3
    assert len(decode_ultraface(scores, boxes, 200, 100, max_faces=1)) == 1
    assert decode_ultraface(scores, boxes, 200, 100, score_threshold=0.99) == []


@pytest.mark.parametrize(
    "kwargs", [{"score_threshold": 1.5}, {"iou_threshold": -0.1}, {"max_faces": 0}]
)
def test_ultraface_rejects_bad_parameters(kwargs: dict):
    with pytest.raises(InvalidRequest):
        decode_ultraface(np.zeros((1, 2)), np.zeros((1, 4)), 10, 10, **kwargs)


# --- landmarks ---------------------------------------------------------------------------------


def test_landmark_regressor_on_the_astronaut(detector, landmarker, assets: Path):
    pixels, faces = _detect(detector, assets, "faces/astronaut.png")
    face = faces[0]
    crop, box = square_face_crop(pixels, face.xyxy(), out_size=96)
    out = landmarker.run(None, {"input.1": (crop.astype(np.float32) / 255.0)[None, None]})[0]
    assert out.shape == (1, 30)
    in_crop = decode_regressor(out)[0]
    points = named_points(box.to_image(in_crop, out_size=96))
    left_eye, right_eye = points["left_eye_center"], points["right_eye_center"]
    nose, lip = points["nose_tip"], points["mouth_center_bottom_lip"]
    assert left_eye[0] > right_eye[0]  # subject's left is the image right
    assert points["mouth_left_corner"][0] > points["mouth_right_corner"][0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < lip[1]
    for x, y in points.values():
        assert face.x1 <= x <= face.x2 and face.y1 <= y <= face.y2


def test_decode_regressor_scaling_and_shapes():
    assert len(LANDMARK_NAMES) == 15 and LANDMARK_NAMES[10] == "nose_tip"
    out = np.zeros(30)
    out[0], out[1] = 0.5, -1.0  # left eye x, y
    points = decode_regressor(out)
    assert points.shape == (15, 2)
    np.testing.assert_allclose(points[0], [72.0, 0.0])
    np.testing.assert_allclose(points[1:], 48.0)
    assert decode_regressor(np.zeros((3, 30))).shape == (3, 15, 2)
    np.testing.assert_allclose(decode_regressor(np.ones(30), crop_size=64), 64.0)
    with pytest.raises(ValueError):
        decode_regressor(np.zeros(28))


def _gaussian_map(h: int, w: int, x: float, y: float, sigma: float = 2.0) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w]
    return np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))


def test_decode_heatmaps_recovers_sub_pixel_peaks():
    truth = [(37.3, 52.7), (10.5, 20.0), (60.8, 3.4)]
    maps = np.stack([_gaussian_map(64, 72, x, y) for x, y in truth]).astype(np.float32)
    points, confidence = decode_heatmaps(maps)
    assert points.shape == (3, 2) and confidence.shape == (3,)
    np.testing.assert_allclose(points, truth, atol=0.15)
    assert np.all(confidence > 0.8)
    _, as_probability = decode_heatmaps(maps, apply_sigmoid=True)
    np.testing.assert_allclose(as_probability, 1 / (1 + np.exp(-confidence)))


def test_decode_heatmaps_borders_flat_maps_and_batches():
    border = np.zeros((2, 8, 8))
    border[0, 0, 7] = 1.0  # corner peak: no neighbours on two sides
    border[1, 4, 2] = border[1, 4, 3] = 1.0  # a two-pixel plateau: its centre, 2.5
    points, confidence = decode_heatmaps(border)
    np.testing.assert_allclose(points, [[7.0, 0.0], [2.5, 4.0]])
    np.testing.assert_allclose(confidence, [1.0, 1.0])
    flat_points, _ = decode_heatmaps(np.zeros((1, 5, 5)))
    np.testing.assert_allclose(flat_points, [[0.0, 0.0]])
    truth = np.array([[[5.2, 6.9], [20.6, 11.1]], [[30.0, 30.0], [14.45, 2.75]]])
    batch = np.stack([[_gaussian_map(32, 40, x, y) for x, y in item] for item in truth])
    batch_points, batch_conf = decode_heatmaps(batch)
    assert batch_points.shape == (2, 2, 2) and batch_conf.shape == (2, 2)
    np.testing.assert_allclose(batch_points, truth, atol=0.15)


# --- classification ----------------------------------------------------------------------------


def test_softmax_matches_reference_and_is_stable():
    logits = np.random.default_rng(0).normal(size=(4, 10)).astype(np.float32)
    reference = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(softmax(logits), reference, rtol=1e-5)
    assert softmax(logits).dtype == np.float32
    huge = softmax(np.array([[1000.0, 1000.0, -1000.0]]))
    np.testing.assert_allclose(huge, [[0.5, 0.5, 0.0]])
    np.testing.assert_allclose(softmax(logits, axis=0).sum(axis=0), 1.0, rtol=1e-6)


def test_top_k_matches_a_full_sort():
    probs = softmax(np.random.default_rng(1).normal(size=(5, 50)))
    indices, values = top_k(probs, 7)
    expected = np.argsort(-probs, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_array_equal(values, np.take_along_axis(probs, expected, axis=1))
    all_indices, _ = top_k(probs, 50)
    np.testing.assert_array_equal(all_indices, np.argsort(-probs, axis=1, kind="stable"))
    tied, tied_values = top_k(np.array([[0.25, 0.25, 0.5]]), 3)
    np.testing.assert_array_equal(tied, [[2, 0, 1]])
    np.testing.assert_array_equal(tied_values, [[0.5, 0.25, 0.25]])


@pytest.mark.parametrize("k", [0, -1, 51, 2.5, True])
def test_top_k_out_of_range_is_invalid_request(k):
    with pytest.raises(InvalidRequest) as info:
        top_k(np.zeros((2, 50)), k)
    assert info.value.status == 422 and "between 1 and 50" in info.value.message


def test_embedding_stats_uses_population_variance():
    emb = np.random.default_rng(2).normal(size=(3, 16)).astype(np.float32)
    mean, var = embedding_stats(emb)
    np.testing.assert_allclose(mean, [row.mean() for row in emb.astype(np.float64)])
    rows = emb.astype(np.float64)
    np.testing.assert_allclose(var, [np.mean((row - row.mean()) ** 2) for row in rows])
    assert mean.shape == var.shape == (3,)


def test_load_labels(tmp_path: Path, assets: Path):
    path = tmp_path / "labels.txt"
    path.write_text("  cat \ndog\n\n", encoding="utf-8")
    assert load_labels(path) == ["cat", "dog"]
    imagenet = load_labels(assets / "imagenet" / "imagenet_classes.txt")
    assert len(imagenet) == 1000 and imagenet[0] == "tench" and imagenet[999] == "toilet tissue"
    coral = load_labels(assets / "imagenet" / "coral_imagenet_labels.txt")
    assert len(coral) == 1001 and coral[0] == "background"


def test_landmark_records_name_points_in_output_order_and_null_missing_confidence():
    from lensgraph.postprocess.landmarks import LANDMARK_NAMES, landmark_records

    points = np.arange(30, dtype=np.float32).reshape(15, 2)
    plain = landmark_records(points, np.full(15, np.nan))
    assert [r["name"] for r in plain] == list(LANDMARK_NAMES)
    assert plain[1] == {"name": "right_eye_center", "x": 2.0, "y": 3.0, "confidence": None}
    confident = landmark_records(points, np.linspace(0, 1, 15))
    assert confident[-1]["confidence"] == 1.0 and "confidence" in confident[0]
