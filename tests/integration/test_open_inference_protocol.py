"""/v2, the Open Inference Protocol, on a real app (one start for the module): the real client,
``tritonclient.http`` 2.41.0 (its own venv, tests/tritonclient_env.py), infers on the classifier and the
digits model with binary data on and off and reads metadata, Triton's config and statistics and the health
probes; wrong requests are 4xx JSON in the protocol's form through plain httpx (docs/api.md, "/v2")."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.serve

HERE = Path(__file__).resolve().parent
PHOTOS = {"tench": ("imagenet/n01440764_tench.JPEG", 0), "turtle": ("imagenet/n01667114_mud_turtle.JPEG", 35)}
HEADER = "Inference-Header-Content-Length"


@pytest.fixture(scope="module")
def triton_python() -> Path:
    from tests import tritonclient_env

    try:
        return tritonclient_env.ensure()
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"tritonclient's environment could not be made: {exc}")


@pytest.fixture(scope="module")
def crops(assets, repository) -> dict[str, np.ndarray]:
    """The classifier's input from each photo, made as /v1/classify makes it (its decoder, the card's geometry)."""
    from lensgraph.imaging.decode import decode_image
    from lensgraph.repository.store import find_model
    from lensgraph.routes import classify

    geometry = classify.ClassifyGeometry.from_card(find_model(repository, "classifier").card)
    return {name: classify.prepare(decode_image((assets / path).read_bytes()).pixels, geometry)
            for name, (path, _) in PHOTOS.items()}


@pytest.fixture(scope="module")
def digits(assets) -> tuple[np.ndarray, np.ndarray]:
    """Real MNIST test digits as the digits graph takes them: uint8 [N, 28, 28, 1], light ink on black."""
    from lensgraph.datasets.mnist import load_split

    split = load_split("test", assets / "mnist")
    return split.images[:8][..., None].astype(np.uint8), split.labels[:8].astype(int)


def run_client(python: Path, url: str, calls: list[dict], folder: Path) -> list[dict]:
    spec, results = folder / "calls.json", folder / "results.json"
    spec.write_text(json.dumps({"url": url.removeprefix("http://"), "calls": calls}))
    done = subprocess.run([str(python), str(HERE / "v2_client.py"), str(spec), str(results)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(results.read_text())


def save(folder: Path, name: str, array: np.ndarray) -> str:
    path = folder / f"{name}.npy"
    np.save(path, array)
    return str(path)


def outputs(result: dict) -> dict[str, np.ndarray]:
    assert result["ok"], result
    return {name: np.load(path) for name, path in result["value"]["outputs"].items()}


def test_tritonclient_infers_on_the_classifier_and_digits_with_binary_data_on_and_off(
        server, triton_python, crops, digits, assets, tmp_path):
    images, labels = digits
    tench, turtle = crops["tench"][None], crops["turtle"][None]
    both = np.stack([crops["tench"], crops["turtle"]])
    calls = [
        {"op": "infer", "model": "classifier", "inputs": {"image": save(tmp_path, "tench", tench)},
         "request_id": "tench-1"},  # tritonclient's defaults: binary inputs, every output binary
        {"op": "infer", "model": "classifier", "inputs": {"image": save(tmp_path, "turtle", turtle)},
         "binary": False, "outputs": ["probabilities", "embedding"]},
        {"op": "infer", "model": "classifier", "version": "1", "inputs": {"image": save(tmp_path, "both", both)},
         "outputs": ["probabilities"]},
        {"op": "infer", "model": "digits", "inputs": {"image": save(tmp_path, "digits", images)}},
        {"op": "infer", "model": "digits", "inputs": {"image": save(tmp_path, "digits", images)}, "binary": False,
         "outputs": ["probabilities", "energy", "distance"]},
    ]
    results = run_client(triton_python, server.url, calls, tmp_path)

    first = results[0]["value"]["response"]
    assert first["id"] == "tench-1" and first["model_name"] == "classifier" and first["model_version"] == "1"
    assert all(o["parameters"]["binary_data_size"] > 0 for o in first["outputs"]), "binary by default"
    assert all("data" in o for o in results[1]["value"]["response"]["outputs"]), "JSON when binary_data=False"
    tench_out, turtle_out, both_out = (outputs(r) for r in results[:3])
    assert tench_out["probabilities"].shape == (1, 1000) and tench_out["embedding"].shape == (1, 1280)
    assert int(np.argmax(tench_out["probabilities"][0])) == PHOTOS["tench"][1]
    assert int(np.argmax(turtle_out["probabilities"][0])) == PHOTOS["turtle"][1]
    assert list(np.argmax(both_out["probabilities"], axis=1)) == [0, 35] and set(both_out) == {"probabilities"}
    np.testing.assert_allclose(both_out["probabilities"][0], tench_out["probabilities"][0], atol=1e-5)
    np.testing.assert_allclose(both_out["probabilities"][1], turtle_out["probabilities"][0], atol=1e-5)
    # The same crop answers the same through /v1 (which decodes and prepares it in the ingress).
    v1 = httpx.post(server.url + "/v1/classify", params={"top_k": 1}, headers={"content-type": "image/jpeg"},
                    content=(assets / PHOTOS["tench"][0]).read_bytes(),
                    timeout=60).json()["predictions"][0]
    assert v1["class_id"] == 0 and abs(v1["confidence"] - float(tench_out["probabilities"][0, 0])) < 1e-4

    binary, plain = outputs(results[3]), outputs(results[4])
    assert binary["probabilities"].shape == (8, 10) and binary["energy"].shape == (8,)
    assert list(np.argmax(binary["probabilities"], axis=1)) == list(labels)
    for name in ("probabilities", "energy", "distance"):
        np.testing.assert_array_equal(binary[name], plain[name])  # JSON carries float32 exactly
    np.testing.assert_allclose(binary["probabilities"].sum(axis=1), 1.0, atol=1e-5)


def test_tritonclient_reads_health_metadata_config_and_statistics(server, triton_python, digits, tmp_path):
    images, _ = digits
    calls = [
        {"op": "live"}, {"op": "ready"}, {"op": "server_metadata"},
        {"op": "model_ready", "model": "classifier"}, {"op": "model_ready", "model": "digits", "version": "1"},
        {"op": "model_ready", "model": "nope"}, {"op": "model_ready", "model": "digits", "version": "7"},
        {"op": "metadata", "model": "classifier"}, {"op": "metadata", "model": "digits", "version": "1"},
        {"op": "config", "model": "classifier"}, {"op": "config", "model": "digits"},
        {"op": "stats", "model": "digits"},
        {"op": "infer", "model": "digits", "inputs": {"image": save(tmp_path, "four", images[:4])}},
        {"op": "stats", "model": "digits", "version": "1"},
        {"op": "metadata", "model": "nope"},
    ]
    (live, ready, server_meta, classifier_ready, digits_ready, nope_ready, v7_ready, classifier_meta, digits_meta,
     classifier_config, digits_config, before, _, after, nope_meta) = run_client(triton_python, server.url, calls,
                                                                                  tmp_path)
    assert live["value"] is True and ready["value"] is True
    assert {"binary_tensor_data", "model_configuration", "statistics"} <= set(server_meta["value"]["extensions"])
    assert classifier_ready["value"] is True and digits_ready["value"] is True
    assert nope_ready["value"] is False and v7_ready["value"] is False
    assert not nope_meta["ok"] and nope_meta["status"] == "404" and "unknown model 'nope'" in nope_meta["message"]

    meta = classifier_meta["value"]
    assert meta["name"] == "classifier" and meta["versions"] == ["1"] and meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "image", "datatype": "UINT8", "shape": [-1, 224, 224, 3]}]
    assert meta["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 1000]},
                               {"name": "embedding", "datatype": "FP32", "shape": [-1, 1280]}]
    assert digits_meta["value"]["inputs"] == [{"name": "image", "datatype": "UINT8", "shape": [-1, 28, 28, 1]}]
    assert [o["shape"] for o in digits_meta["value"]["outputs"]] == [[-1, 10], [-1], [-1]]

    live_settings = server.models()
    for config, name in ((classifier_config["value"], "classifier"), (digits_config["value"], "digits")):
        assert config["name"] == name and config["platform"] == "onnxruntime_onnx"
        assert config["max_batch_size"] == live_settings[name]["info"]["batching"]["max_batch_size"]
        assert "dynamic_batching" in config
    (image,) = classifier_config["value"]["input"]
    assert (image["name"], image["data_type"], image["dims"]) == ("image", "TYPE_UINT8", [224, 224, 3])
    assert [o["dims"] for o in classifier_config["value"]["output"]] == [[1000], [1280]]

    (old,), (new,) = before["value"]["model_stats"], after["value"]["model_stats"]
    assert new["name"] == "digits" and new["version"] == "1"
    assert new["inference_count"] - old["inference_count"] == 4
    assert 1 <= new["execution_count"] - old["execution_count"] <= 4
    stats = new["inference_stats"]
    assert stats["success"]["count"] - old["inference_stats"]["success"]["count"] == 1  # one request of 4 rows
    assert stats["success"]["ns"] > old["inference_stats"]["success"]["ns"]
    assert stats["compute_infer"]["ns"] > 0
    for name in ("queue", "compute_input", "compute_output", "cache_hit", "cache_miss"):
        assert isinstance(stats[name]["count"], int) and isinstance(stats[name]["ns"], int), name
    assert any(b["batch_size"] >= 2 for b in new["batch_stats"]), "a request's rows share a session call"


def _digit_body(images: np.ndarray) -> tuple[bytes, dict[str, str]]:
    head = json.dumps({"inputs": [{"name": "image", "shape": list(images.shape), "datatype": "UINT8",
                                   "parameters": {"binary_data_size": images.nbytes}}],
                       "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]}).encode()
    return head + images.tobytes(), {HEADER: str(len(head)), "content-type": "application/octet-stream"}


def test_rows_of_concurrent_requests_share_session_calls(server, digits):
    images, labels = digits
    stats = server.url + "/v2/models/digits/stats"
    before = httpx.get(stats, timeout=30).json()["model_stats"][0]
    statuses: list[int] = []

    def client(k: int) -> None:
        body, headers = _digit_body(images[k : k + 1])
        with httpx.Client(timeout=60) as http:
            for _ in range(10):
                statuses.append(http.post(server.url + "/v2/models/digits/infer", content=body,
                                          headers=headers).status_code)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    after = httpx.get(stats, timeout=30).json()["model_stats"][0]
    assert statuses == [200] * 80
    requests = after["inference_stats"]["success"]["count"] - before["inference_stats"]["success"]["count"]
    executions = after["execution_count"] - before["execution_count"]
    assert requests == 80 and executions < requests, (requests, executions)


def test_wrong_requests_are_4xx_json_in_the_protocols_form(server, digits):
    images, labels = digits
    infer = server.url + "/v2/models/digits/infer"
    good, headers = _digit_body(images[:2])
    answer = httpx.post(infer, content=good, headers=headers, timeout=60)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/octet-stream"
    length = int(answer.headers[HEADER])
    head = json.loads(answer.content[:length])
    assert head["outputs"][0]["parameters"]["binary_data_size"] == 2 * 10 * 4
    assert list(np.frombuffer(answer.content[length:], np.float32).reshape(2, 10).argmax(axis=1)) == list(labels[:2])

    max_batch = httpx.get(server.url + "/v2/models/digits/config", timeout=30).json()["max_batch_size"]
    too_many, too_many_headers = _digit_body(np.zeros((max_batch + 1, 28, 28, 1), np.uint8))
    image = {"name": "image", "shape": [1, 28, 28, 1], "datatype": "UINT8", "data": [0] * 784}
    mismatch = json.dumps({"inputs": [{**{k: v for k, v in image.items() if k != "data"},
                                       "parameters": {"binary_data_size": 700}}]}).encode()
    cases = [
        ("wrong shape", infer, {"inputs": [{**image, "shape": [1, 32, 32, 1], "data": [0] * 1024}]}, None, 400,
         "has shape [1, 32, 32, 1]"),
        ("wrong datatype", infer, {"inputs": [{**image, "datatype": "FP32"}]}, None, 400, "is UINT8, not 'FP32'"),
        ("too big a batch", infer, too_many, too_many_headers, 400, f"max_batch_size of {max_batch}"),
        ("unknown model", server.url + "/v2/models/nope/infer", {"inputs": [image]}, None, 404, "unknown model 'nope'"),
        ("unknown version", server.url + "/v2/models/digits/versions/2/infer", {"inputs": [image]}, None, 404,
         "serves version 1, not '2'"),
        ("unknown input", infer, {"inputs": [{**image, "name": "pixels"}]}, None, 400, "unknown input 'pixels'"),
        ("byte size mismatch", infer, mismatch + bytes(700), {HEADER: str(len(mismatch))}, 400,
         "binary_data_size is 700 bytes, but shape [1, 28, 28, 1] of UINT8 is 784 bytes"),
        ("binary after the JSON that the header does not cover", infer, good, {HEADER: str(len(good))}, 400,
         "not valid JSON"),
        ("not JSON", infer, b"{", {"content-type": "application/json"}, 400, "not valid JSON"),
        ("unknown output", infer, {"inputs": [image], "outputs": [{"name": "logits"}]}, None, 400,
         "unknown output 'logits'"),
    ]
    for what, url, body, extra, status, says in cases:
        if isinstance(body, dict):
            response = httpx.post(url, json=body, headers=extra, timeout=60)
        else:
            response = httpx.post(url, content=body, headers=extra, timeout=60)
        assert response.status_code == status, (what, response.status_code, response.text[:300])
        assert response.headers["content-type"].startswith("application/json"), what
        assert set(response.json()) == {"error"} and says in response.json()["error"], (what, response.text[:300])
        assert response.headers.get("x-request-id"), what
    for path, status in (("/v2/models/nope", 404), ("/v2/models/digits/versions/3", 404),
                         ("/v2/models/digits/versions/3/config", 404), ("/v2/models/nope/stats", 404)):
        response = httpx.get(server.url + path, timeout=30)
        assert response.status_code == status and set(response.json()) == {"error"}, (path, response.text)
    wrong_method = httpx.get(infer, timeout=30)
    assert wrong_method.status_code == 405 and set(wrong_method.json()) == {"error"}
    v1 = httpx.post(server.url + "/v1/classify", params={"model": "nope"}, content=b"x",
                    headers={"content-type": "image/jpeg"}, timeout=30)
    assert v1.status_code == 404 and v1.json()["error"] == "unknown_model" and "message" in v1.json(), "v1 unchanged"
    assert httpx.post(infer, content=good, headers=headers, timeout=60).status_code == 200, "still serving"
    assert httpx.get(server.url + "/v2/health/ready", timeout=30).json() == {"ready": True}
