"""Users' own models, served next to the built-ins by configuration only (docs/models.md).

One live app serves, besides the four built-ins: a torchvision-layout ResNet18 state dict as a second
classifier (``/v1/classify?model=resnet18``) and a heatmap UNet from a ``simple_unet.pth`` as a
second landmark model (``/v1/landmarks?model=unet``, ``/v1/faces?landmark_model=unet``). Neither needs
Python: an entry in a models file and one in the serve config. Their weights are made here so that
what they answer is known (tests/known_weights.py), and they are declared not real.

Also the resize parity the cards promise: served probabilities equal each model's reference pipeline
(torchvision's Resize + CenterCrop on PIL images, written out here with PIL) within 1e-3.
"""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from PIL import Image

from tests.integration.conftest import running_server
from lensgraph.architectures import darknet_files
from lensgraph.architectures.darknet_known import known_output_weights
from tests.known_weights import expected_points, shift_unet

pytestmark = [pytest.mark.serve, pytest.mark.slow]

BUILTINS = ("classifier", "face_detector", "landmarks", "digits")
DOG_BOX = (-40.0, -70.0, 60.0, 90.0)  # network pixels: centre (10, 10), in the top-left cell
PHOTOS = ("imagenet/n01440764_tench.JPEG", "imagenet/n01667114_mud_turtle.JPEG", "faces/obama.jpg")


@pytest.fixture(scope="module")
def byo(repository: Path, assets: Path, tmp_path_factory):
    import torch

    from lensgraph.architectures import build_architecture
    from lensgraph.repository.build import build_all, build_one
    from lensgraph.repository.spec import load_models_config

    tmp = tmp_path_factory.mktemp("byo")
    root = tmp / "repo"
    root.mkdir()
    for name in BUILTINS:
        (root / name).symlink_to(repository / name)
    torch.manual_seed(0)
    torch.save(build_architecture("resnet18").state_dict(), tmp / "resnet18.pth")  # the user's state dict
    shift_unet(tmp / "simple_unet.pth")
    (tmp / "models.yaml").write_text(yaml.safe_dump({"models": {
        "resnet18_user": {"task": "classification", "architecture": "resnet18", "weights": "path:resnet18.pth",
                          "weights_real": False, "labels": "assets:imagenet/imagenet_classes.txt"},
        "unet_known": {"task": "landmark_heatmaps", "architecture": "landmark_unet", "weights": "path:simple_unet.pth",
                       "weights_real": False},
    }}))
    # A darknet TinyYOLOv2 (Debian's cfg and voc.names) whose only detection, for any photo, is one dog box.
    known = known_output_weights(darknet_files.cfg(), DOG_BOX, class_id=11, score=0.9)
    known.write(tmp / "yolov2-tiny-voc.weights")
    config = yaml.safe_load((tmp / "models.yaml").read_text())
    config["models"]["detector_known"] = {
        "task": "detection", "architecture": "darknet", "architecture_args": {"cfg": "darknet:yolov2-tiny-voc.cfg"},
        "weights": "path:yolov2-tiny-voc.weights", "weights_real": False, "labels": "darknet:voc.names",
        "options": {"score_threshold": 0.5, "iou_threshold": 0.45, "max_detections": 100}}
    (tmp / "models.yaml").write_text(yaml.safe_dump(config))
    specs = load_models_config(tmp / "models.yaml")
    results = build_all(specs, root, tmp)
    # Version 2 of the user's ResNet: other weights, served only once the config says so.
    torch.manual_seed(1)
    torch.save(build_architecture("resnet18").state_dict(), tmp / "resnet18_v2.pth")
    v2 = specs["resnet18_user"].model_copy(update={"version": 2, "weights": "path:resnet18_v2.pth"})
    results.append(build_one(v2, root, tmp))
    assert all(r.status == "built" for r in results), [(r.name, r.status, r.message) for r in results]

    def edit(config: dict) -> None:
        app = config["applications"][0]
        app["args"]["models"] = {"resnet18": {"model": "resnet18_user"}, "unet": "unet_known",
                                 "detector": "detector_known"}
        app["deployments"] += [{"name": name, "ray_actor_options": {"num_cpus": 0.25},
                                "user_config": {"max_batch_size": 8, "intra_op_threads": 1,
                                                **({"version": 1} if name == "resnet18" else {})}}
                               for name in ("resnet18", "unet", "detector")]

    (tmp / "serve").mkdir()
    with running_server(root, assets, tmp / "serve", edit=edit, head_cpus=3) as server:
        yield server, root


def _reference_crop(path: Path, resize_shorter: int = 256, crop: int = 224) -> np.ndarray:
    """torchvision's Resize(resize_shorter) + CenterCrop(crop) on a PIL image, step by step."""
    image = Image.open(path).convert("RGB")
    w, h = image.size
    size = (resize_shorter, int(resize_shorter * h / w)) if w <= h else (int(resize_shorter * w / h), resize_shorter)
    image = image.resize(size, Image.Resampling.BILINEAR)
    left, top = int(round((size[0] - crop) / 2.0)), int(round((size[1] - crop) / 2.0))
    return np.asarray(image.crop((left, top, left + crop, top + crop)))


def _reference(module, crop: np.ndarray, mean, std) -> tuple[np.ndarray, np.ndarray]:
    """The torch module on the reference crop: (softmax probabilities, embedding)."""
    import torch

    x = (torch.from_numpy(crop.copy()).float().permute(2, 0, 1)[None] - torch.tensor(mean)[:, None, None]) \
        / torch.tensor(std)[:, None, None]
    with torch.no_grad():
        embedding = module.embed(x)
        probs = torch.softmax(module.classify(embedding), dim=1)
    return probs[0].numpy(), embedding[0].numpy()


def _module(architecture: str, weights: Path):
    from lensgraph.architectures import build_architecture
    from lensgraph.export.torch_models import load_weights

    module = build_architecture(architecture)
    load_weights(module, weights, str(weights))
    return module.eval()


def _classify(url: str, path: Path, **params) -> dict:
    response = httpx.post(url + "/v1/classify", params={"top_k": 5, "embedding": True, **params},
                          content=path.read_bytes(), headers={"content-type": "image/jpeg"}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def test_models_lists_every_served_model_and_user_weights_are_not_real(byo):
    server, _ = byo
    models = server.models()
    assert set(models) == {*BUILTINS, "resnet18", "unet", "detector"}
    assert all(models[n]["status"] == "available" for n in models), models
    for name, repo_name in (("resnet18", "resnet18_user"), ("unet", "unet_known"), ("detector", "detector_known")):
        info = models[name]["info"]
        assert info["name"] == repo_name and info["weights"]["real"] is False
    assert models["resnet18"]["info"]["preprocessing"]["before_graph"]["resize"] == \
        {"library": "pil", "filter": "bilinear", "antialias": True}


@pytest.mark.parametrize("photo", PHOTOS)
def test_served_efficientnet_equals_its_reference_pipeline(byo, assets, photo):
    server, _ = byo
    module = _module("efficientnet_lite0", assets / "imagenet/efficientnet-lite0-57934424.pth")
    probs, _ = _reference(module, _reference_crop(assets / photo), [127.0] * 3, [128.0] * 3)
    body = _classify(server.url, assets / photo)
    served = {p["class_id"]: p["confidence"] for p in body["predictions"]}
    assert list(served) == list(np.argsort(-probs)[:5])
    assert max(abs(served[c] - probs[c]) for c in served) <= 1e-3, (served, probs[list(served)])


@pytest.mark.parametrize("photo", PHOTOS)
def test_a_users_resnet18_state_dict_is_a_second_classifier(byo, assets, photo, tmp_path):
    from lensgraph.architectures.resnet import IMAGENET_MEAN, IMAGENET_STD

    server, root = byo
    module = _module("resnet18", root.parent / "resnet18.pth")
    probs, embedding = _reference(module, _reference_crop(assets / photo), IMAGENET_MEAN, IMAGENET_STD)
    body = _classify(server.url, assets / photo, model="resnet18")
    assert body["model"] == {"name": "resnet18_user", "version": 1, "weights_real": False}
    served = {p["class_id"]: p["confidence"] for p in body["predictions"]}
    assert max(abs(served[c] - probs[c]) for c in served) <= 1e-3
    # Random weights make the probabilities nearly flat; the 512-d embedding shows every pixel's effect.
    np.testing.assert_allclose(body["embedding"], embedding, rtol=1e-3, atol=1e-3 * float(np.abs(embedding).max()))
    default = _classify(server.url, assets / photo)
    assert default["model"]["name"] == "classifier" and default["embedding_stats"]["dim"] == 1280


def test_a_model_that_is_not_served_or_of_another_task_is_a_404(byo, assets):
    server, _ = byo
    data = (assets / PHOTOS[0]).read_bytes()
    for params, says in (({"model": "resnet99"}, "no served model 'resnet99'"),
                         ({"model": "unet"}, "serves task 'landmark_heatmaps'")):
        response = httpx.post(server.url + "/v1/classify", params=params, content=data,
                              headers={"content-type": "image/jpeg"}, timeout=30)
        assert response.status_code == 404, response.text
        assert response.json()["error"] == "unknown_model" and says in response.json()["message"]


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_users_unet_puts_every_landmark_where_its_weights_say(byo):
    server, _ = byo
    crop = np.zeros((96, 96), np.uint8)
    crop[50, 40] = 255  # one bright pixel, centred at (40.5, 50.5)
    response = httpx.post(server.url + "/v1/landmarks", params={"model": "unet"}, content=_png(crop),
                          headers={"content-type": "image/png"}, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"]["name"] == "unet_known" and body["model"]["weights_real"] is False
    got = [(p["x"], p["y"]) for p in body["landmarks"]]
    np.testing.assert_allclose(got, expected_points(40.5, 50.5), atol=1.0)
    default = httpx.post(server.url + "/v1/landmarks", content=_png(crop), headers={"content-type": "image/png"},
                         timeout=30).json()
    assert default["model"]["name"] == "landmarks"


def test_the_users_unet_serves_the_faces_route(byo, assets):
    server, _ = byo
    photo = (np.asarray(Image.open(assets / "faces/obama.jpg").convert("RGB")) * 0.7).astype(np.uint8)

    def faces(pixels: np.ndarray, **params) -> dict:
        response = httpx.post(server.url + "/v1/faces", params=params, content=_png(pixels),
                              headers={"content-type": "image/png"}, timeout=60)
        assert response.status_code == 200, response.text
        return response.json()

    # Scale the photo so the face crop is about 90 px: the 96-px crop then resamples it at about 1:1.
    box = faces(photo, landmarks=False)["faces"][0]["box"]
    scale = 90.0 / max(box["x2"] - box["x1"], box["y2"] - box["y1"])
    h, w = photo.shape[:2]
    photo = np.asarray(Image.fromarray(photo).resize((round(w * scale), round(h * scale)), Image.Resampling.BILINEAR))
    x, y = round((box["x1"] + box["x2"]) / 2 * scale), round((box["y1"] + box["y2"]) / 2 * scale)
    photo = photo.copy()
    photo[y, x] = 255
    body = faces(photo, landmark_model="unet")
    assert [m["name"] for m in body["models"]] == ["face_detector", "unet_known"]
    face = body["faces"][0]
    side = max(face["box"]["x2"] - face["box"]["x1"], face["box"]["y2"] - face["box"]["y1"])
    k = side / 96.0  # photo pixels per crop pixel
    expected = [(x + 0.5 - (x + 0.5 - ex) * k, y + 0.5 - (y + 0.5 - ey) * k) for ex, ey in expected_points(x + 0.5, y + 0.5)]
    got = [(p["x"], p["y"]) for p in face["landmarks"]]
    np.testing.assert_allclose(got, expected, atol=1.0)


def test_detect_answers_the_box_the_weights_put_there_in_the_photos_pixels(byo):
    server, _ = byo
    data = darknet_files.sample_photo("dog.jpg").read_bytes()  # 768 x 576

    def detect(**params) -> httpx.Response:
        return httpx.post(server.url + "/v1/detect", params=params, content=data,
                          headers={"content-type": "image/jpeg"}, timeout=60)

    response = detect()
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == {"name": "detector_known", "version": 1, "weights_real": False}
    assert body["image"] == {"width": 768, "height": 576} and body["count"] == 1
    (found,) = body["detections"]
    assert found["label"] == "dog" and found["class_id"] == 11 and abs(found["score"] - 0.9) < 1e-3
    # 768 x 576 letterboxed into 416 x 416: scaled by 416/768, 52 rows of grey above; clipped to the photo.
    scale = 416 / 768
    x1, y1, x2, y2 = DOG_BOX
    np.testing.assert_allclose(found["box"], [0.0, 0.0, x2 / scale, (y2 - 52) / scale], atol=1.0)
    assert detect(score_threshold=0.95).json()["count"] == 0  # the box scores 0.9
    for params in ({"score_threshold": 0}, {"iou_threshold": 2}, {"max_detections": 0}):
        refused = detect(**params)
        assert refused.status_code == 422 and params.popitem()[0] in refused.text, refused.text
    drawn = httpx.post(server.url + "/v1/detect", params={"render": "true"}, content=data, timeout=60,
                       headers={"content-type": "image/jpeg"})
    assert drawn.status_code == 200 and drawn.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(drawn.content)).size == (768, 576)
    shown = subprocess.run([sys.executable, "-m", "lensgraph", "client", "detect", str(darknet_files.sample_photo("dog.jpg")),
                            "--url", server.url, "--model", "detector"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "dog" in shown.stdout and "NOT REAL" in shown.stdout, shown.stdout + shown.stderr


def test_detect_without_a_served_detector_says_how_to_provide_one(repository, assets, tmp_path):
    """The default app serves no detector (no weights ship): /v1/detect is a 503 that says what to do."""
    from lensgraph.serving_plan import choose
    from lensgraph.errors import ModelUnavailable

    with pytest.raises(ModelUnavailable, match="weights/detector/yolov2-tiny-voc.weights.*args.models"):
        choose("detect", None, {name: False for name in BUILTINS}, {})

def test_a_new_version_goes_live_by_serve_deploy_under_load_without_a_failed_request(byo, assets):
    """Runs last: the user's ResNet moves from version 1 to 2 by a config change while clients send."""
    server, _ = byo
    config = yaml.safe_load(server.config.read_text())
    deployment = next(d for d in config["applications"][0]["deployments"] if d["name"] == "resnet18")
    deployment["user_config"]["version"] = 2
    changed = server.config.with_name("version2.yaml")
    changed.write_text(yaml.safe_dump(config, sort_keys=False))
    data = (assets / PHOTOS[0]).read_bytes()
    answers: list[tuple[int, int | None]] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=60) as c:
            while not stop.is_set():
                r = c.post(server.url + "/v1/classify", params={"model": "resnet18"}, content=data,
                           headers={"content-type": "image/jpeg"})
                answers.append((r.status_code, r.json()["model"]["version"] if r.status_code == 200 else None))

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        while len(answers) < 10:
            time.sleep(0.05)
        server.cluster.deploy(changed)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (answers and answers[-1][1] == 2):
            time.sleep(0.2)
        seen = len(answers)
        while len(answers) < seen + 10:
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert {status for status, _ in answers} == {200}, answers
    versions = [v for _, v in answers]
    assert versions[0] == 1 and versions[-1] == 2, versions
    assert server.models()["resnet18"]["info"]["version"] == 2
