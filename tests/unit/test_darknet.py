"""Darknet TinyYOLOv2: the cfg parser, darknet's forward in torch, .weights files, the ONNX export with
parity, the region decoder, the letterbox mapping and the /v1/detect route logic. No mocks: the real
cfg from Debian's darknet package, real ONNX Runtime sessions.

The forward is checked against a direct numpy transcription of pjreddie's C loops (convolution,
``normalize_cpu`` with ``sqrt(var) + 1e-6``, ``forward_maxpool_layer`` with its asymmetric window).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from lensgraph.architectures import darknet_files
from lensgraph.architectures.darknet import build_darknet
from lensgraph.architectures.darknet_cfg import CfgError, ConvLayer, MaxPoolLayer, parse_cfg, read_cfg
from lensgraph.architectures.darknet_known import known_output_weights
from lensgraph.architectures.darknet_weights import (
    DarknetWeightsError,
    Header,
    expected_size,
    from_module,
    load_into,
    parse_weights,
    random_weights,
    read_weights,
)
from lensgraph.errors import InvalidRequest, WeightsError, WeightsNotFound
from lensgraph.imaging.decode import decode_image
from lensgraph.imaging.letterbox import DARKNET_FILL, letterbox
from lensgraph.inference.detector import DetectorRunner
from lensgraph.postprocess.yolo_region import RegionSpec, decode_region
from lensgraph.repository import store
from lensgraph.repository.build import build_one
from lensgraph.repository.spec import ModelSpec
from lensgraph.routes import detect
from lensgraph.runtime.session import create_session

VOC_ANCHORS = [1.08, 1.19, 3.42, 4.41, 6.63, 11.38, 9.42, 5.11, 16.62, 10.52]


@pytest.fixture(scope="session")
def tiny_cfg() -> Path:
    """The real yolov2-tiny-voc.cfg of Debian's darknet package (skips locally without it; fails in CI)."""
    try:
        return darknet_files.cfg("yolov2-tiny-voc.cfg")
    except WeightsNotFound as exc:
        if os.environ.get("CI"):
            pytest.fail(exc.message)
        pytest.skip(exc.message)


# --- the cfg -------------------------------------------------------------------------------------


def test_the_debian_tiny_yolo_cfg_parses_into_darknets_shapes(tiny_cfg):
    cfg = read_cfg(tiny_cfg)
    assert (cfg.width, cfg.height, cfg.channels) == (416, 416, 3)
    kinds = ["c" if isinstance(layer, ConvLayer) else "m" for layer in cfg.layers]
    assert "".join(kinds) == "cmcmcmcmcmcmccc"
    assert [c.filters for c in cfg.convs] == [16, 32, 64, 128, 256, 512, 1024, 1024, 125]
    sizes = [layer.out_hw for layer in cfg.layers]
    assert sizes[:12] == [(416, 416), (208, 208), (208, 208), (104, 104), (104, 104), (52, 52), (52, 52),
                          (26, 26), (26, 26), (13, 13), (13, 13), (13, 13)]  # the size=2 stride=1 pool keeps 13
    last_pool = cfg.layers[11]
    assert isinstance(last_pool, MaxPoolLayer) and (last_pool.size, last_pool.stride, last_pool.padding) == (2, 1, 1)
    assert cfg.output_shape == (125, 13, 13)
    assert cfg.region.anchors == tuple(zip(VOC_ANCHORS[::2], VOC_ANCHORS[1::2]))
    assert (cfg.region.classes, cfg.region.num, cfg.region.coords) == (20, 5, 4)
    assert cfg.convs[-1].activation == "linear" and not cfg.convs[-1].batch_normalize
    assert all(c.batch_normalize and c.activation == "leaky" for c in cfg.convs[:-1])
    # 15,867,885 floats: pjreddie's yolov2-tiny-voc.weights is 20 + 4 * that = 63,471,560 bytes.
    assert cfg.value_count == 15_867_885
    assert expected_size(cfg, Header(0, 2, 0)) == 63_471_560
    assert expected_size(cfg, Header(0, 1, 0)) == 63_471_556


def test_darknet_files_finds_names_and_photos_and_honours_the_override(tiny_cfg, tmp_path, monkeypatch):
    names = darknet_files.names().read_text().split()
    assert len(names) == 20 and names[11] == "dog" and names[14] == "person"
    for photo in ("dog.jpg", "person.jpg", "horses.jpg"):
        assert darknet_files.sample_photo(photo).stat().st_size > 10_000
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "mine.cfg").write_text("[net]\n")
    monkeypatch.setenv(darknet_files.DARKNET_DIR_ENV, str(tmp_path))
    assert darknet_files.cfg("mine.cfg") == tmp_path / "cfg" / "mine.cfg"
    with pytest.raises(WeightsNotFound, match="apt-get install darknet") as err:
        darknet_files.find("nope.cfg")
    assert str(tmp_path) in err.value.message and darknet_files.DARKNET_DIR_ENV in err.value.message


SMALL_CFG = """
[net]
# a comment
width=20
height = 14
channels=3

[convolutional]
batch_normalize=1
filters=6
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=5
size=3
stride=2
pad=1
activation=leaky

[maxpool]
size=2
stride=1

[maxpool]
size=3
stride=2

[convolutional]
filters=14
size=1
stride=1
pad=1
activation=linear

[region]
anchors = 1,2,  3,4
classes=2
num=2
coords=4
softmax=1
"""


@pytest.mark.parametrize(("text", "message"), [
    (SMALL_CFG.replace("[maxpool]\nsize=3", "[avgpool]\nsize=3"), "[avgpool] is not supported"),
    (SMALL_CFG.replace("activation=linear", "activation=mish"), "activation=mish is not supported"),
    (SMALL_CFG.replace("classes=2", "classes=3"), "= 16 channels, but the layer before gives 14"),
    (SMALL_CFG.replace("softmax=1", "softmax=0"), "only softmax=1"),
    (SMALL_CFG.split("[region]")[0], "no [region] layer"),
    (SMALL_CFG.replace("height = 14", "height = x"), "height='x' is not an integer"),
    (SMALL_CFG.replace("anchors = 1,2,  3,4", "anchors = 1,2,3"), "anchors has 3 values"),
])
def test_cfgs_it_cannot_reproduce_are_refused_by_name(text, message):
    with pytest.raises(CfgError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_cfg(text, source="small.cfg")


# --- darknet's forward, transcribed from its C loops ----------------------------------------------


def _reference_conv(x: np.ndarray, layer: ConvLayer, w) -> np.ndarray:
    p, s, k = layer.padding, layer.stride, layer.size
    xp = np.pad(x, ((0, 0), (p, p), (p, p)))
    out_h, out_w = layer.out_hw
    out = np.zeros((layer.filters, out_h, out_w), np.float32)
    for i in range(out_h):
        for j in range(out_w):
            patch = xp[:, i * s : i * s + k, j * s : j * s + k]
            out[:, i, j] = np.tensordot(w.weights, patch, axes=([1, 2, 3], [0, 1, 2]))
    if layer.batch_normalize:  # normalize_cpu, scale_bias
        out = (out - w.rolling_mean[:, None, None]) / (np.sqrt(w.rolling_var[:, None, None]) + 0.000001)
        out = out * w.scales[:, None, None]
    out = out + w.biases[:, None, None]
    return np.where(out > 0, out, 0.1 * out) if layer.activation == "leaky" else out


def _reference_maxpool(x: np.ndarray, layer: MaxPoolLayer) -> np.ndarray:
    c, h, w = x.shape
    out_h, out_w = layer.out_hw
    offset = -(layer.padding // 2)
    out = np.empty((c, out_h, out_w), np.float32)
    for k in range(c):
        for i in range(out_h):
            for j in range(out_w):
                best = -np.finfo(np.float32).max
                for n in range(layer.size):
                    for m in range(layer.size):
                        cur_h, cur_w = offset + i * layer.stride + n, offset + j * layer.stride + m
                        if 0 <= cur_h < h and 0 <= cur_w < w:
                            best = max(best, x[k, cur_h, cur_w])
                out[k, i, j] = best
    return out


def _reference_forward(cfg, weights, image: np.ndarray) -> np.ndarray:
    x, convs = image.astype(np.float32), iter(weights.convs)
    for layer in cfg.layers:
        x = _reference_conv(x, layer, next(convs)) if isinstance(layer, ConvLayer) else _reference_maxpool(x, layer)
    return x


def test_the_torch_module_reproduces_darknets_forward():
    cfg = parse_cfg(SMALL_CFG)
    # 20x14 -> conv 20x14 -> pool/2 10x7 -> conv/2 5x4 -> pool 2/1 5x4 -> pool 3/2 (padding 2) 3x2 -> 1x1 conv
    assert [layer.out_hw for layer in cfg.layers] == [(14, 20), (7, 10), (4, 5), (4, 5), (2, 3), (2, 3)]
    module, _ = build_darknet(cfg)
    weights = random_weights(cfg, seed=5)
    load_into(module, weights)
    image = np.random.default_rng(0).random((2, 3, 14, 20), dtype=np.float32) - 0.3  # negatives reach the pools
    with torch.inference_mode():
        ours = module(torch.from_numpy(image)).numpy()
    for b in range(2):
        reference = _reference_forward(cfg, weights, image[b])
        assert ours[b].shape == reference.shape == (14, 2, 3)
        np.testing.assert_allclose(ours[b], reference, rtol=1e-5, atol=1e-5)


def _libdarknet():
    """pjreddie's own library from the Debian package, to run darknet's real forward (skips without it)."""
    import ctypes

    path = Path("/usr/lib/darknet/libdarknet.so")
    if not path.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{path} missing: install Debian's darknet package (make system-deps)")
        pytest.skip(f"{path} missing: install Debian's darknet package")
    lib = ctypes.CDLL(str(path))
    lib.load_network.restype = ctypes.c_void_p
    lib.load_network.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]
    lib.network_predict.restype = ctypes.POINTER(ctypes.c_float)
    lib.network_predict.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float)]
    lib.free_network.argtypes = [ctypes.c_void_p]
    return lib


def _darknet_predict(cfg_path: Path, weights_path: Path, image: np.ndarray, size: int) -> np.ndarray:
    """darknet's output for one CHW float image: the [region] layer's, i.e. after its logistic and softmax."""
    import ctypes

    lib = _libdarknet()
    net = lib.load_network(str(cfg_path).encode(), str(weights_path).encode(), 0)
    try:
        x = np.ascontiguousarray(image, np.float32)
        out = lib.network_predict(net, x.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
        return np.ctypeslib.as_array(out, shape=(size,)).copy()
    finally:
        lib.free_network(net)


def _activated(raw: np.ndarray, region: RegionSpec) -> np.ndarray:
    """What darknet's region layer does in place: logistic on x, y, objectness; softmax over classes."""
    r = raw.reshape(region.num, 5 + region.classes, *raw.shape[-2:]).astype(np.float64)
    out = r.copy()
    out[:, [0, 1, 4]] = 1.0 / (1.0 + np.exp(-r[:, [0, 1, 4]]))
    e = np.exp(r[:, 5:] - r[:, 5:].max(axis=1, keepdims=True))
    out[:, 5:] = e / e.sum(axis=1, keepdims=True)
    return out.reshape(-1)


@pytest.mark.parametrize("which", ["small", "yolov2-tiny-voc"])
def test_the_torch_module_matches_libdarknet_itself(which, tiny_cfg, tmp_path):
    if which == "small":
        cfg_path = tmp_path / "small.cfg"
        cfg_path.write_text(SMALL_CFG)
    else:
        cfg_path = tiny_cfg
    cfg = read_cfg(cfg_path)
    weights = random_weights(cfg, seed=3)
    weights_path = weights.write(tmp_path / "random.weights")
    module, _ = build_darknet(cfg)
    load_into(module, weights)
    image = np.random.default_rng(0).random((cfg.channels, cfg.height, cfg.width), dtype=np.float32)
    with torch.inference_mode():
        raw = module(torch.from_numpy(image)[None]).numpy()[0]
    theirs = _darknet_predict(cfg_path, weights_path, image, raw.size)
    assert np.abs(raw).max() > 1 and np.std(raw) > 0.1  # a varied output, not a constant
    np.testing.assert_allclose(_activated(raw, cfg.region), theirs, rtol=1e-4, atol=1e-4)


# --- .weights files --------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [Header(0, 2, 0, 32_013_312), Header(0, 1, 0, 12_800), Header(1000, 0, 0, 7)])
def test_weights_round_trip_byte_exactly(tiny_cfg, tmp_path, header):
    cfg = read_cfg(tiny_cfg)
    weights = random_weights(cfg, seed=11)
    weights.header = header
    path = weights.write(tmp_path / "random.weights")
    data = path.read_bytes()
    assert len(data) == expected_size(cfg, header) == header.size + 4 * 15_867_885
    assert header.size == (20 if header == Header(0, 2, 0, 32_013_312) else 16)
    again = read_weights(path, cfg)
    assert again.header == header
    assert again.to_bytes() == data
    # Through the torch module and back: the same bytes again.
    module, _ = build_darknet(cfg)
    load_into(module, again)
    assert from_module(module, header).to_bytes() == data
    assert float(module.convs[0].rolling_var[3]) == float(weights.convs[0].rolling_var[3])


def test_weights_that_do_not_fit_the_cfg_are_refused_with_both_sizes(tiny_cfg, tmp_path):
    cfg = read_cfg(tiny_cfg)
    data = random_weights(cfg, seed=1).to_bytes()
    short = tmp_path / "short.weights"
    short.write_bytes(data[: len(data) - 4000])
    with pytest.raises(DarknetWeightsError) as err:
        read_weights(short, cfg)
    message = err.value.message
    assert "too short" in message and "expected 63471560 bytes" in message and "got 63467560" in message
    assert "convolutional layer 14" in message  # the data ends inside the last layer
    assert isinstance(err.value, ValueError) and isinstance(err.value, WeightsError)
    with pytest.raises(DarknetWeightsError, match=r"too long .*expected 63471560 bytes.*got 63471564 \(\+4\)"):
        parse_weights(data + b"\0\0\0\0", cfg, source="long.weights")
    with pytest.raises(DarknetWeightsError, match="too short for even a darknet header"):
        parse_weights(data[:10], cfg)
    # A v0.1 header (int32 seen) on a file written with a v0.2 (int64) one is 4 bytes too long.
    v01 = b"\0\0\0\0\x01\0\0\0" + data[8:]
    with pytest.raises(DarknetWeightsError, match=r"expected 63471556 bytes.*got 63471560"):
        parse_weights(v01, cfg)


def test_a_build_with_weights_that_do_not_fit_fails_and_leaves_nothing(tiny_cfg, tmp_path):
    cfg = read_cfg(tiny_cfg)
    path = tmp_path / "cut.weights"
    path.write_bytes(random_weights(cfg, seed=0).to_bytes()[:-8])
    spec = _spec("cut", weights=f"path:{path}")
    result = build_one(spec, tmp_path / "repo", tmp_path)
    assert result.status == "failed" and "expected 63471560 bytes" in result.message
    assert not (tmp_path / "repo" / "cut").exists()


def test_a_missing_darknet_file_is_reported_as_missing_with_how_to_install_it(tmp_path):
    spec = _spec("nocfg", weights="random:0", architecture_args={"cfg": "darknet:yolov9-nope.cfg"})
    result = build_one(spec, tmp_path / "repo", tmp_path)
    assert result.status == "missing" and "apt-get install darknet" in result.message
    spec = _spec("nolabels", weights="random:0", labels="darknet:nope.names")
    result = build_one(spec, tmp_path / "repo", tmp_path)
    assert result.status == "missing" and "'nope.names' not found" in result.message


def test_a_cfg_beside_the_config_builds_with_its_own_input_size(tmp_path):
    (tmp_path / "small.cfg").write_text(SMALL_CFG)
    spec = _spec("small", weights="random:1", architecture_args={"cfg": "path:small.cfg"}, labels=None)
    result = build_one(spec, tmp_path / "repo", tmp_path)
    assert result.status == "built", result.message
    card = store.find_model(tmp_path / "repo", "small").card
    assert card["inputs"][0]["shape"] == ["batch", 14, 20, 3]
    assert card["outputs"][0]["shape"] == ["batch", 14, 2, 3]
    assert card["options"]["region"]["anchors"] == [1.0, 2.0, 3.0, 4.0] and card["parity"]["max_abs_diff"] <= 1e-4
    # The cfg's checksum is part of the fingerprint: editing it rebuilds the model.
    assert build_one(spec, tmp_path / "repo", tmp_path).status == "up-to-date"
    (tmp_path / "small.cfg").write_text(SMALL_CFG.replace("filters=6", "filters=7"))
    assert build_one(spec, tmp_path / "repo", tmp_path).status == "built"


# --- the artefact ----------------------------------------------------------------------------------


def _spec(name: str, **fields) -> ModelSpec:
    base = {"task": "detection", "architecture": "darknet", "architecture_args": {"cfg": "darknet:yolov2-tiny-voc.cfg"},
            "labels": "darknet:voc.names"}
    return ModelSpec.model_validate({**base, **fields}).model_copy(update={"name": name})


@pytest.fixture(scope="module")
def random_detector(tiny_cfg, tmp_path_factory):
    root = tmp_path_factory.mktemp("repo")
    spec = _spec("detector", weights="random:3", options={"score_threshold": 0.3})
    result = build_one(spec, root, root, command="test")
    assert result.status == "built", result.message
    return store.find_model(root, "detector")


def test_random_darknet_weights_export_with_parity_and_a_full_card(random_detector, tiny_cfg):
    card = random_detector.card
    assert card["task"] == "detection" and card["architecture"] == "darknet"
    assert card["weights"]["real"] is False and card["weights"]["source"] == "random:3"
    assert card["inputs"] == [{"name": "image", "dtype": "uint8", "shape": ["batch", 416, 416, 3]}]
    assert card["outputs"] == [{"name": "region", "dtype": "float32", "shape": ["batch", 125, 13, 13]}]
    assert card["parity"]["max_abs_diff"] <= 1e-4
    assert card["preprocessing"]["in_graph"] == {"mean": [0.0] * 3, "std": [255.0] * 3}
    before = card["preprocessing"]["before_graph"]
    assert before["letterbox"] == {"size": [416, 416], "fill": DARKNET_FILL, "centered": True}
    assert before["resize"] == {"library": "darknet", "filter": "bilinear", "antialias": False}
    options = card["options"]
    assert options["region"] == {"anchors": VOC_ANCHORS, "num": 5, "classes": 20, "coords": 4, "softmax": True}
    assert (options["score_threshold"], options["iou_threshold"], options["max_detections"]) == (0.3, 0.45, 100)
    assert card["export"]["darknet"]["cfg"] == "yolov2-tiny-voc.cfg"
    assert random_detector.labels_path.read_text().split()[11] == "dog"
    # An independent check: ORT on a real photo against the torch module filled from the same seed.
    cfg = read_cfg(tiny_cfg)
    module, _ = build_darknet(cfg)
    load_into(module, random_weights(cfg, seed=3))
    photo = decode_image(darknet_files.sample_photo("horses.jpg").read_bytes()).pixels
    image, _ = letterbox(photo, (416, 416))
    (region,) = create_session(random_detector.onnx_path).run(None, {"image": image[None]})
    with torch.inference_mode():
        expected = module(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0).numpy()
    assert np.max(np.abs(region - expected)) <= 1e-4
    assert np.std(region) > 0.1  # random weights still give a varied, finite output


def test_the_runner_batches_and_the_route_answers(random_detector):
    runner = DetectorRunner(random_detector)
    photos = [decode_image(darknet_files.sample_photo(p).read_bytes()).pixels for p in ("dog.jpg", "person.jpg")]
    prepared = [detect.prepare(p, runner.geometry) for p in photos]
    batched = runner.run_batch([image for image, _ in prepared])
    for (image, mapping), region in zip(prepared, batched):
        assert region.shape == (125, 13, 13) and region.dtype == np.float32
        np.testing.assert_allclose(region, runner.run_batch([image])[0], atol=1e-5)
    body = runner.detect(photos[0], score_threshold=0.05, max_detections=7)
    height, width = photos[0].shape[:2]
    assert body["model"] == {"name": "detector", "version": 1, "weights_real": False}
    assert body["image"] == {"width": width, "height": height}
    assert body["count"] == len(body["detections"]) <= 7
    assert body["thresholds"] == {"score_threshold": 0.05, "iou_threshold": 0.45, "max_detections": 7}
    for d in body["detections"]:
        x1, y1, x2, y2 = d["box"]
        assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height and d["score"] > 0.05
        assert d["label"] == runner.labels[d["class_id"]]


def test_request_thresholds_are_checked_and_default_to_the_card(random_detector):
    geometry = detect.DetectGeometry.from_card(random_detector.card)
    assert detect.thresholds(geometry) == detect.Thresholds(0.3, 0.45, 100)
    assert detect.thresholds(geometry, 0.01, 1.0, 1000) == detect.Thresholds(0.01, 1.0, 1000)
    for bad in ({"score_threshold": 0.0}, {"score_threshold": 1.5}, {"iou_threshold": 0.01},
                {"max_detections": 0}, {"max_detections": 1001}, {"max_detections": 2.5},
                {"score_threshold": True}, {"score_threshold": "0.5"}):
        with pytest.raises(InvalidRequest) as err:
            detect.thresholds(geometry, **bad)
        assert next(iter(bad)) in err.value.message and err.value.status == 422


# --- weights with a known detection, end to end through ONNX Runtime -------------------------------


@pytest.mark.parametrize(("box", "cell"), [((-60.0, -40.0, 100.0, 70.0), (0, 0)),
                                          ((330.0, 10.0, 440.0, 30.0), (0, 12)),
                                          ((0.0, 390.0, 50.0, 410.0), (12, 0)),
                                          ((300.0, 320.0, 500.0, 480.0), (12, 12))])
def test_known_output_weights_give_exactly_their_box_for_any_input(tiny_cfg, box, cell):
    cfg = read_cfg(tiny_cfg)
    known = known_output_weights(cfg, box, class_id=7, score=0.8)
    assert known.cell == cell
    module, _ = build_darknet(cfg)
    load_into(module, parse_weights(known.weights.to_bytes(), cfg))
    noise = torch.from_numpy(np.random.default_rng(1).random((2, 3, 416, 416), dtype=np.float32))
    with torch.inference_mode():
        regions = module(noise).numpy()
    np.testing.assert_array_equal(regions[0], regions[1])  # the input does not matter
    found = decode_region(regions[0], cfg.region, (416, 416), score_threshold=0.01, iou_threshold=0.45)
    assert len(found) == 1
    assert found[0].class_id == 7 and found[0].score == pytest.approx(0.8, abs=1e-4)
    np.testing.assert_allclose(found[0].xyxy(), box, atol=1e-3)


def test_known_output_weights_refuse_a_box_outside_the_corner_cells(tiny_cfg):
    with pytest.raises(ValueError, match="must lie inside a corner cell"):
        known_output_weights(tiny_cfg, (150, 150, 250, 250), class_id=0)
    with pytest.raises(ValueError, match="class_id"):
        known_output_weights(tiny_cfg, (0, 0, 20, 20), class_id=20)


def test_a_known_box_comes_back_in_the_photos_pixels_through_the_exported_model(tiny_cfg, tmp_path):
    """The end-to-end shape of /v1/detect: known weights -> models build -> ORT -> decode -> letterbox back."""
    box = (-40.0, -70.0, 60.0, 90.0)  # centre (10, 10): cell (0, 0); 100 x 160 network pixels
    known = known_output_weights(tiny_cfg, box, class_id=11, score=0.9)
    spec = _spec("known", weights=f"path:{known.write(tmp_path / 'known.weights')}", weights_real=False)
    result = build_one(spec, tmp_path / "repo", tmp_path)
    assert result.status == "built", result.message
    entry = store.find_model(tmp_path / "repo", "known")
    assert entry.card["weights"]["real"] is False
    runner = DetectorRunner(entry)
    photo = decode_image(darknet_files.sample_photo("dog.jpg").read_bytes()).pixels
    assert photo.shape == (576, 768, 3)
    body = runner.detect(photo, score_threshold=0.5)
    assert body["count"] == 1
    (found,) = body["detections"]
    assert found["class_id"] == 11 and found["label"] == "dog" and found["score"] == pytest.approx(0.9, abs=1e-4)
    # 768 x 576 letterboxed into 416 x 416: 416 x 312 at 52 rows down, both axes scaled by 416/768.
    scale = 416 / 768
    np.testing.assert_allclose(found["box"], [0.0, 0.0, 60.0 / scale, (90.0 - 52.0) / scale], atol=1e-2)

    # Another corner and class, on a portrait photo (grey bands left and right).
    box = (300.0, 380.0, 500.0, 430.0)  # centre (400, 405): cell (12, 12)
    known = known_output_weights(tiny_cfg, box, class_id=14, score=0.75)
    spec = _spec("known2", weights=f"path:{known.write(tmp_path / 'known2.weights')}")
    assert build_one(spec, tmp_path / "repo", tmp_path).status == "built"
    runner = DetectorRunner(store.find_model(tmp_path / "repo", "known2"))
    portrait = np.ascontiguousarray(photo[:, :300])  # 300 x 576 -> 216 x 416 (darknet truncates), 100 grey columns
    (found,) = runner.detect(portrait, score_threshold=0.5)["detections"]
    assert found["label"] == "person" and found["score"] == pytest.approx(0.75, abs=1e-4)
    scale_x, scale_y = 216 / 300, 416 / 576
    np.testing.assert_allclose(found["box"], [(300.0 - 100) / scale_x, 380.0 / scale_y, 300.0, 576.0], atol=1e-2)


# --- the decoder on synthetic region outputs ------------------------------------------------------


REGION = RegionSpec.from_flat(VOC_ANCHORS, classes=20, num=5)


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def _region_with(boxes: list[tuple[int, int, int, tuple[float, float, float, float], int, float]]) -> np.ndarray:
    """A [125, 13, 13] output with nothing in it but ``boxes``: (anchor, row, col, (cx, cy, w, h) in
    network pixels, class, objectness), encoded the way darknet's region layer decodes them."""
    out = np.zeros((5, 25, 13, 13), np.float32)
    out[:, 4] = -30.0
    for anchor, row, col, (cx, cy, w, h), class_id, objectness in boxes:
        aw, ah = REGION.anchors[anchor]
        out[anchor, 0, row, col] = _logit(cx / 32 - col)
        out[anchor, 1, row, col] = _logit(cy / 32 - row)
        out[anchor, 2, row, col] = np.log(w / (aw * 32))
        out[anchor, 3, row, col] = np.log(h / (ah * 32))
        out[anchor, 4, row, col] = _logit(objectness)
        out[anchor, 5 + class_id, row, col] = 40.0  # class probability 1 - 1e-16
    return out.reshape(125, 13, 13)


def test_decoded_boxes_are_darknets_and_map_back_through_the_letterbox():
    region = _region_with([(0, 6, 3, (112.0, 208.0, 40.0, 60.0), 14, 0.9),
                           (3, 2, 10, (336.0, 80.0, 100.0, 50.0), 6, 0.7)])
    found = decode_region(region, REGION, (416, 416), score_threshold=0.5)
    assert [(d.class_id, round(d.score, 4)) for d in found] == [(14, 0.9), (6, 0.7)]
    np.testing.assert_allclose(found[0].xyxy(), (92.0, 178.0, 132.0, 238.0), atol=1e-3)
    np.testing.assert_allclose(found[1].xyxy(), (286.0, 55.0, 386.0, 105.0), atol=1e-3)

    # A 640 x 480 photo: scale 0.65, 416 x 312 placed 52 rows down.
    photo = np.zeros((480, 640, 3), np.uint8)
    _, mapping = letterbox(photo, (416, 416))
    assert (mapping.offset_x, mapping.offset_y, mapping.scale_x, mapping.scale_y) == (0, 52, 0.65, 0.65)
    geometry = detect.DetectGeometry((416, 416), REGION, detect.Thresholds(), {"name": "t"})
    body = detect.answer(geometry, region, mapping, detect.Thresholds(0.5, 0.45, 100), labels=None)
    assert body["count"] == 2 and body["image"] == {"width": 640, "height": 480}
    np.testing.assert_allclose(body["detections"][0]["box"], [92 / 0.65, 126 / 0.65, 132 / 0.65, 186 / 0.65], atol=1e-3)
    np.testing.assert_allclose(body["detections"][1]["box"], [286 / 0.65, 3 / 0.65, 386 / 0.65, 53 / 0.65], atol=1e-3)
    assert body["detections"][0]["label"] == "14"


def test_nms_drops_a_duplicate_of_the_same_class_only():
    same = (0, 6, 6, (200.0, 200.0, 80.0, 80.0), 2, 0.9)
    shifted = (1, 6, 6, (204.0, 202.0, 80.0, 84.0), 2, 0.8)  # IoU ~0.86 with the first
    found = decode_region(_region_with([same, shifted]), REGION, (416, 416), 0.5, iou_threshold=0.45)
    assert len(found) == 1 and found[0].score == pytest.approx(0.9)
    other_class = (1, 6, 6, (204.0, 202.0, 80.0, 84.0), 5, 0.8)
    found = decode_region(_region_with([same, other_class]), REGION, (416, 416), 0.5, iou_threshold=0.45)
    assert sorted(d.class_id for d in found) == [2, 5]
    # With an IoU threshold above their overlap both boxes of one class stay.
    found = decode_region(_region_with([same, shifted]), REGION, (416, 416), 0.5, iou_threshold=0.9)
    assert [round(d.score, 4) for d in found] == [0.9, 0.8]


def test_score_threshold_is_strict_and_max_detections_keeps_the_best():
    boxes = [(0, r, c, (32 * c + 16, 32 * r + 16, 20.0, 20.0), 0, 0.3 + 0.1 * r) for r, c in ((0, 0), (2, 5), (4, 9))]
    region = _region_with(boxes)
    assert [round(d.score, 4) for d in decode_region(region, REGION, (416, 416), 0.29)] == [0.7, 0.5, 0.3]
    assert [round(d.score, 4) for d in decode_region(region, REGION, (416, 416), 0.5)] == [0.7]  # 0.5 is not > 0.5
    assert [round(d.score, 4) for d in decode_region(region, REGION, (416, 416), 0.01, max_detections=2)] == [0.7, 0.5]
    assert decode_region(region, REGION, (416, 416), 0.71) == []
    with pytest.raises(ValueError, match=r"expected a region output \[125, H, W\]"):
        decode_region(region[:100], REGION, (416, 416))


def test_letterbox_places_the_photo_centred_and_maps_back_exactly():
    photo = np.zeros((300, 500, 3), np.uint8)
    photo[100:200, 250:350] = 255  # a white square at x 250..350, y 100..200
    canvas, mapping = letterbox(photo, (416, 416))
    assert canvas.shape == (416, 416, 3)
    new_h = round(300 * 416 / 500)  # 250
    top = (416 - new_h) // 2
    assert mapping.offset_y == top == 83 and mapping.offset_x == 0
    assert (canvas[:top] == DARKNET_FILL).all() and (canvas[top + new_h :] == DARKNET_FILL).all()
    ys, xs = np.nonzero(canvas[..., 0] > 200)
    found = mapping.to_image(np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]]))[0]
    np.testing.assert_allclose(found, [250, 100, 350, 200], atol=1.5)
    boxes = np.array([[10.0, 20.0, 300.0, 250.0], [-5.0, -5.0, 600.0, 400.0]])
    np.testing.assert_allclose(mapping.to_image(mapping.to_input(boxes), clip=False), boxes, atol=1e-9)
    np.testing.assert_allclose(mapping.to_image(mapping.to_input(boxes))[1], [0, 0, 500, 300])
    gray = photo[..., 0]
    geometry = detect.DetectGeometry((416, 416), REGION, detect.Thresholds(), {})
    assert detect.prepare(gray, geometry)[0].shape == (416, 416, 3)  # grayscale photos become RGB


@pytest.mark.parametrize("photo", ["dog.jpg", "person.jpg", "horses.jpg"])
def test_the_served_letterbox_is_darknets_own_to_half_a_grey_level(photo):
    """No training/serving skew: the detector card's transform (``library: darknet``) against libdarknet's own
    ``letterbox_image`` (resize_image, then centred on 0.5 grey) on the package's photos. darknet keeps floats;
    the served input is uint8, so half a grey level is the whole difference."""
    import ctypes

    class Image(ctypes.Structure):
        _fields_ = [("w", ctypes.c_int), ("h", ctypes.c_int), ("c", ctypes.c_int),
                    ("data", ctypes.POINTER(ctypes.c_float))]

    lib = _libdarknet()
    lib.letterbox_image.restype = Image
    lib.letterbox_image.argtypes = [Image, ctypes.c_int, ctypes.c_int]
    lib.free_image.argtypes = [Image]
    pixels = decode_image(darknet_files.sample_photo(photo).read_bytes()).pixels
    chw = np.ascontiguousarray(pixels.transpose(2, 0, 1), np.float32) / 255
    boxed = lib.letterbox_image(Image(pixels.shape[1], pixels.shape[0], 3,
                                      chw.ctypes.data_as(ctypes.POINTER(ctypes.c_float))), 416, 416)
    try:
        reference = np.ctypeslib.as_array(boxed.data, shape=(3, 416, 416)).transpose(1, 2, 0) * 255
    finally:
        reference = reference.copy()
        lib.free_image(boxed)
    served, _ = letterbox(pixels, (416, 416))  # the card's defaults: darknet's resize, grey 127
    assert np.abs(served.astype(np.float32) - reference).max() <= 0.5 + 1e-3
