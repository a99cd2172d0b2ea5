"""The model repository: strict configs, incremental builds, weight sources and their checksums."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml

from lensgraph.errors import ChecksumMismatch, InvalidRequest, WeightsError, WeightsNotFound
from lensgraph.repository import store
from lensgraph.repository.build import build_all, build_one
from lensgraph.repository.spec import ModelSpec, load_models_config
from lensgraph.repository.weights import WeightSource, resolve, sha256_file
from lensgraph.runtime.session import create_session

ROOT = Path(__file__).resolve().parents[2]


def _spec(**fields) -> ModelSpec:
    return ModelSpec.model_validate(fields).model_copy(update={"name": fields.get("name", "m")})


def _write_config(path: Path, models: dict) -> Path:
    path.write_text(yaml.safe_dump({"models": models}))
    return path


def test_shipped_config_parses_and_declares_the_default_set():
    specs = load_models_config(ROOT / "configs" / "models.yaml")
    assert {"classifier", "face_detector", "landmarks", "digits"} <= set(specs)
    assert specs["classifier"].architecture == "efficientnet_lite0"
    assert specs["face_detector"].onnx.startswith("assets:")


def test_unknown_keys_are_rejected(tmp_path):
    config = _write_config(tmp_path / "m.yaml", {"x": {"task": "landmarks", "onnx": "a.onnx", "sha265": "00",
                                                      "input_normalization": {"mean": [0], "std": [255]}}})
    with pytest.raises(InvalidRequest, match="sha265"):
        load_models_config(config)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"task": "classification"}, "exactly one of"),
        ({"task": "classification", "architecture": "resnet18"}, "needs weights"),
        ({"task": "landmarks", "onnx": "x.onnx"}, "input_normalization"),
        ({"task": "digits", "architecture": "digit_cnn", "weights": "random:1", "bake_resize": True}, "bake_resize"),
        ({"task": "nonsense", "onnx": "x.onnx"}, "task"),
    ],
)
def test_invalid_specs_say_what_is_wrong(fields, message):
    with pytest.raises(ValueError, match=message):
        ModelSpec.model_validate(fields)


def test_weight_source_forms():
    assert WeightSource.parse("random:7").seed == 7 and not WeightSource.parse("random:7").is_real
    assert WeightSource.parse("assets:imagenet/x.pth").kind == "assets"
    assert WeightSource.parse("path:w.pth").location == "w.pth"
    assert WeightSource.parse("w.pth").kind == "path"
    with pytest.raises(WeightsError, match="sha256"):
        WeightSource.parse("https://example.invalid/w.pth")
    with pytest.raises(WeightsError, match="seed"):
        WeightSource.parse("random:abc")


def test_missing_assets_folder_says_how_to_fix(monkeypatch):
    monkeypatch.delenv("LENSGRAPH_ASSETS", raising=False)
    with pytest.raises(WeightsNotFound, match="LENSGRAPH_ASSETS"):
        resolve(WeightSource.parse("assets:landmarks/resnet_facial_feature.onnx"))


def test_checksum_mismatch_is_refused(assets):
    with pytest.raises(ChecksumMismatch, match="expected deadbeef"):
        resolve(WeightSource.parse("assets:landmarks/resnet_facial_feature.onnx", "deadbeef"))


@pytest.fixture()
def http_server(tmp_path):
    """A real HTTP server on localhost serving tmp_path: the download path runs for real."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_url_weights_are_downloaded_once_and_checked(http_server, tmp_path, monkeypatch):
    served, base = http_server
    monkeypatch.setenv("LENSGRAPH_CACHE", str(tmp_path / "cache"))
    (served / "w.bin").write_bytes(b"weights" * 100)
    digest = sha256_file(served / "w.bin")
    path = resolve(WeightSource.parse(f"{base}/w.bin", digest))
    assert path.read_bytes() == b"weights" * 100 and path.is_relative_to(tmp_path / "cache")
    (served / "w.bin").unlink()  # a second resolve must come from the cache
    assert resolve(WeightSource.parse(f"{base}/w.bin", digest[:12])) == path
    (served / "bad.bin").write_bytes(b"tampered")
    with pytest.raises(ChecksumMismatch):
        resolve(WeightSource.parse(f"{base}/bad.bin", digest))
    assert not (tmp_path / "cache" / "weights" / "bad.bin").exists()
    with pytest.raises(WeightsNotFound, match="could not download"):
        resolve(WeightSource.parse(f"{base}/absent.bin", digest))


def _onnx_specs() -> dict[str, ModelSpec]:
    specs = load_models_config(ROOT / "configs" / "models.yaml")
    return {k: specs[k] for k in ("face_detector", "landmarks")}


def test_imported_models_build_with_cards_and_dynamic_batch(assets, tmp_path):
    results = build_all(_onnx_specs(), tmp_path, ROOT / "configs", command="test")
    assert [r.status for r in results] == ["built", "built"]
    detector = store.find_model(tmp_path, "face_detector")
    card = detector.card
    assert card["weights"]["real"] is True
    assert card["weights"]["sha256"].startswith("34cd7e60aeff")
    assert card["inputs"] == [{"name": "image", "dtype": "uint8", "shape": ["batch", 240, 320, 3]}]
    assert [o["name"] for o in card["outputs"]] == ["scores", "boxes"]
    assert card["parity"]["max_abs_diff"] <= 1e-4
    assert card["build"]["command"] == "test"
    session = create_session(detector.onnx_path)
    scores, boxes = session.run(None, {"image": np.zeros((5, 240, 320, 3), np.uint8)})
    assert scores.shape == (5, 4420, 2) and boxes.shape == (5, 4420, 4)
    landmarks = store.find_model(tmp_path, "landmarks")
    assert landmarks.input_spec()["shape"] == ["batch", 96, 96, 1]
    assert landmarks.card["outputs"][0]["name"] == "landmarks"


def test_rebuild_is_incremental_and_force_rebuilds(assets, tmp_path):
    specs = _onnx_specs()
    build_all(specs, tmp_path, ROOT / "configs")
    first = store.read_card(tmp_path / "landmarks" / "1")["build"]["built_at"]
    again = build_all(specs, tmp_path, ROOT / "configs")
    assert {r.status for r in again} == {"up-to-date"}
    changed = {"landmarks": specs["landmarks"].model_copy(update={"description": "changed"})}
    assert build_all(changed, tmp_path, ROOT / "configs")[0].status == "built"
    assert build_all(changed, tmp_path, ROOT / "configs", force=True)[0].status == "built"
    assert store.read_card(tmp_path / "landmarks" / "1")["description"] == "changed"
    assert first  # the card records when it was built


def test_a_missing_model_does_not_stop_the_others(assets, tmp_path):
    specs = _onnx_specs()
    specs["ghost"] = _spec(name="ghost", task="digits", architecture="digit_cnn", weights="path:nowhere.pth",
                           weights_hint="train it first")
    specs["broken"] = _spec(name="broken", task="landmarks", onnx="assets:landmarks/resnet_facial_feature.onnx",
                            sha256="00000000", input_normalization={"mean": [0], "std": [255]})
    results = {r.name: r for r in build_all(specs, tmp_path, ROOT / "configs")}
    assert results["face_detector"].status == results["landmarks"].status == "built"
    assert results["ghost"].status == "missing" and "nowhere.pth" in results["ghost"].message
    assert "train it first" in results["ghost"].message
    assert results["broken"].status == "failed" and "sha256" in results["broken"].message
    assert not (tmp_path / "ghost").exists() and not (tmp_path / "broken").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".build-")]


def test_find_model_explains_what_is_missing(tmp_path):
    from lensgraph.errors import ModelUnavailable

    with pytest.raises(ModelUnavailable, match="lensgraph models build --only nope"):
        store.find_model(tmp_path, "nope")


def test_cli_build_and_list(assets, tmp_path):
    config = _write_config(
        tmp_path / "models.yaml",
        {"landmarks": {"task": "landmarks", "onnx": "assets:landmarks/resnet_facial_feature.onnx",
                       "input_normalization": {"mean": [0], "std": [255]}},
         "absent": {"task": "digits", "architecture": "digit_cnn", "weights": "path:absent.pth"}},
    )
    repo = tmp_path / "repo"
    cmd = [sys.executable, "-m", "lensgraph", "models"]
    built = subprocess.run(cmd + ["build", "--config", str(config), "--repository", str(repo)],
                           capture_output=True, text=True, check=True)
    assert "landmarks" in built.stdout and "built" in built.stdout and "missing" in built.stdout
    strict = subprocess.run(cmd + ["build", "--config", str(config), "--repository", str(repo), "--strict"],
                            capture_output=True, text=True)
    assert strict.returncode == 1
    listed = json.loads(subprocess.run(cmd + ["list", "--repository", str(repo), "--json"],
                                       capture_output=True, text=True, check=True).stdout)
    assert [(m["name"], m["real_weights"]) for m in listed] == [("landmarks", True)]
    table = subprocess.run(cmd + ["list", "--repository", str(repo)], capture_output=True, text=True, check=True)
    assert "landmarks" in table.stdout and "uint8[batchx96x96x1]" in table.stdout
    shutil.rmtree(repo)
