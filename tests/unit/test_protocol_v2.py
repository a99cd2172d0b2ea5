"""The Open Inference Protocol (KServe v2) without Ray: signatures from the real cards, every check of a
request (JSON and Triton's binary tensor extension), responses as tritonclient reads them, the raw-row
batching on a real ONNX Runtime session, Triton's statistics, and the /v2 rules of the ASGI layers
(errors in the protocol's form, probes open with API keys on, admission bounding /v2 infer)."""

from __future__ import annotations

import asyncio
import json
import types

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from lensgraph.errors import UnknownModel
from lensgraph.protocol import stats as protocol_stats
from lensgraph.protocol import v2
from lensgraph.repository.store import find_model
from pipelines import errors
from pipelines.admission import Admission, AdmissionMiddleware, is_model_request
from pipelines.guard import Guard, GuardMiddleware

LIMIT = 8 * 1024 * 1024


@pytest.fixture(scope="module")
def classifier(repository):
    return v2.Signature.from_card(find_model(repository, "classifier").card)


@pytest.fixture(scope="module")
def digits_entry(repository):
    return find_model(repository, "digits")


@pytest.fixture(scope="module")
def digits(digits_entry):
    return v2.Signature.from_card(digits_entry.card)


def _json_request(inputs: list[dict], **extra) -> bytes:
    return json.dumps({"inputs": inputs, **extra}).encode()


def _binary_request(arrays: dict[str, np.ndarray], datatype: str, **extra) -> tuple[bytes, str]:
    """What tritonclient sends with binary_data=True: the JSON, then each input's bytes; the JSON's length."""
    inputs = [{"name": n, "shape": list(a.shape), "datatype": datatype, "parameters": {"binary_data_size": a.nbytes}}
              for n, a in arrays.items()]
    head = json.dumps({"inputs": inputs, **extra}).encode()
    return head + b"".join(a.tobytes() for a in arrays.values()), str(len(head))


def _parse(body: bytes, signature, header=None, limit=LIMIT) -> v2.InferRequest:
    return v2.parse_request(body, header, signature, limit)


def _refused(body: bytes, signature, says: str, header=None, status=400, limit=LIMIT) -> None:
    with pytest.raises(v2.ProtocolError) as caught:
        _parse(body, signature, header, limit)
    assert caught.value.status == status and says in caught.value.message, caught.value.message


def decode(content: bytes, header_length: int | None) -> dict[str, np.ndarray]:
    """What tritonclient's InferResult does with a response."""
    if header_length is None:
        answer = json.loads(content)
        return {o["name"]: np.array(o["data"], dtype=v2.NUMPY[o["datatype"]]).reshape(o["shape"])
                for o in answer["outputs"]}
    answer, buffer, at, out = json.loads(content[:header_length]), content[header_length:], 0, {}
    for o in answer["outputs"]:
        size = o["parameters"]["binary_data_size"]
        out[o["name"]] = np.frombuffer(buffer[at : at + size], dtype=v2.NUMPY[o["datatype"]]).reshape(o["shape"])
        at += size
    assert at == len(buffer)
    return out


# -- signatures --------------------------------------------------------------------------------------------


def test_the_classifier_offers_its_graphs_uint8_nhwc_input_and_both_outputs(classifier):
    assert [t.metadata() for t in classifier.inputs] == [{"name": "image", "datatype": "UINT8", "shape": [-1, 224, 224, 3]}]
    assert [t.metadata() for t in classifier.outputs] == [
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 1000]},
        {"name": "embedding", "datatype": "FP32", "shape": [-1, 1280]}]
    assert classifier.filled == () and classifier.sampled == frozenset()
    meta = classifier.metadata("classifier", 1)
    assert meta["versions"] == ["1"] and meta["platform"] == "onnxruntime_onnx" and meta["name"] == "classifier"


def test_the_config_has_live_batching_and_dims_without_the_batch_axis(classifier, digits):
    config = classifier.config("classifier", 1, max_batch_size=8, batch_wait_timeout_s=0.002)
    assert config["max_batch_size"] == 8 and config["platform"] == "onnxruntime_onnx"
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 2000
    (image,) = config["input"]
    assert (image["name"], image["data_type"], image["dims"]) == ("image", "TYPE_UINT8", [224, 224, 3])
    assert image["is_shape_tensor"] is False and image["optional"] is False  # what perf_analyzer reads
    assert [(o["name"], o["data_type"], o["dims"]) for o in config["output"]] == [
        ("probabilities", "TYPE_FP32", [1000]), ("embedding", "TYPE_FP32", [1280])]
    energy = next(o for o in digits.config("digits", 1, 16, 0.0)["output"] if o["name"] == "energy")
    assert energy["dims"] == [1] and energy["reshape"] == {"shape": []}  # a tensor of the batch axis only, as Triton


def test_digits_takes_the_image_only_and_answers_the_deterministic_pass(digits):
    assert [t.metadata() for t in digits.inputs] == [{"name": "image", "datatype": "UINT8", "shape": [-1, 28, 28, 1]}]
    assert [f.name for f in digits.filled] == ["mask1", "mask2"]
    assert digits.filled[0].make(3).shape == (1, 3, 1024) and (digits.filled[0].make(3) == 1).all()
    assert [t.metadata() for t in digits.outputs] == [
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]},
        {"name": "energy", "datatype": "FP32", "shape": [-1]}, {"name": "distance", "datatype": "FP32", "shape": [-1]}]
    assert digits.sampled == frozenset({"probabilities"})


def test_a_card_without_a_batch_axis_first_is_refused_with_the_reason():
    card = {"name": "odd", "inputs": [{"name": "x", "dtype": "float32", "shape": [3, 224]}],
            "outputs": [{"name": "y", "dtype": "float32", "shape": ["batch", 2]}]}
    with pytest.raises(v2.ProtocolError, match="no batch axis first"):
        v2.Signature.from_card(card)
    card["inputs"][0]["shape"] = ["batch", "height", 3]
    assert v2.Signature.from_card(card).inputs[0].shape == (-1, -1, 3)


# -- requests ----------------------------------------------------------------------------------------------


def test_json_data_flat_or_nested_and_binary_data_give_the_same_tensor(digits):
    image = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28, 1)
    flat = _parse(_json_request([{"name": "image", "shape": [2, 28, 28, 1], "datatype": "UINT8",
                                  "data": image.ravel().tolist()}], id="r-1"), digits)
    nested = _parse(_json_request([{"name": "image", "shape": [2, 28, 28, 1], "datatype": "UINT8",
                                    "data": image.tolist()}]), digits)
    body, header = _binary_request({"image": image}, "UINT8", parameters={"binary_data_output": True})
    binary = _parse(body, digits, header)
    for parsed in (flat, nested, binary):
        assert parsed.rows == 2 and parsed.inputs["image"].dtype == np.uint8
        np.testing.assert_array_equal(parsed.inputs["image"], image)
    assert flat.id == "r-1" and nested.id is None
    assert [(o.name, o.binary) for o in flat.outputs] == [("probabilities", False), ("energy", False), ("distance", False)]
    assert all(o.binary for o in binary.outputs), "binary_data_output: every output binary unless it says otherwise"


def test_outputs_can_be_chosen_each_binary_or_not(classifier):
    body = _json_request([{"name": "image", "shape": [1, 224, 224, 3], "datatype": "UINT8", "data": [0] * 150528}],
                         outputs=[{"name": "probabilities", "parameters": {"binary_data": True}}, {"name": "embedding"}],
                         parameters={"binary_data_output": False})
    parsed = _parse(body, classifier)
    assert [(o.name, o.binary) for o in parsed.outputs] == [("probabilities", True), ("embedding", False)]


@pytest.mark.parametrize("inputs, says", [
    ([{"name": "image", "shape": [1, 28, 28], "datatype": "UINT8", "data": [0] * 784}], "has shape [1, 28, 28]"),
    ([{"name": "image", "shape": [1, 32, 32, 1], "datatype": "UINT8", "data": [0] * 1024}], "the model takes [-1, 28, 28, 1]"),
    ([{"name": "image", "shape": [0, 28, 28, 1], "datatype": "UINT8", "data": []}], "has shape [0, 28, 28, 1]"),
    ([{"name": "image", "shape": [1, 28, 28, 1], "datatype": "FP32", "data": [0.0] * 784}], "is UINT8, not 'FP32'"),
    ([{"name": "pixels", "shape": [1, 28, 28, 1], "datatype": "UINT8", "data": [0] * 784}], "unknown input 'pixels'"),
    ([{"name": "mask1", "shape": [1, 1, 1024], "datatype": "FP32", "data": [1.0] * 1024}], "unknown input 'mask1'"),
    ([{"name": "image", "shape": [1, 28, 28, 1], "datatype": "UINT8", "data": [0] * 783}], "holds 783 values"),
    ([{"name": "image", "shape": [1, 28, 28, 1], "datatype": "UINT8", "data": [256] + [0] * 783}], "outside 0..255"),
    ([{"name": "image", "shape": [1, 28, 28, 1], "datatype": "UINT8", "data": [-1] + [0] * 783}], "outside 0..255"),
    ([{"name": "image", "shape": [1, 28, 28, 1], "datatype": "UINT8", "data": [0.5] * 784}], "not UINT8 numbers"),
    ([{"name": "image", "shape": [1, 28, 28, 1], "datatype": "UINT8", "data": [True] * 784}], "not UINT8 numbers"),
    ([{"name": "image", "shape": [1, 28, 28, 1], "datatype": "UINT8", "data": ["a"] * 784}], "not UINT8 numbers"),
    ([{"name": "image", "shape": [1, 28, 28, 1], "datatype": "UINT8", "data": [[0, 0], [0]]}], "not a regular array"),
    ([{"name": "image", "shape": [1, 28, 28, 1], "datatype": "UINT8", "data": [[0] * 28] * 28}], "nested 'data' of shape"),
    ([{"name": "image", "shape": [1, 28, 28, 1], "datatype": "UINT8", "data": 7}], "'data' must be an array"),
    ([{"name": "image", "shape": [1, 28, 28, 1], "datatype": "UINT8"}], "neither 'data' nor"),
    ([{"name": "image", "shape": [1, 28, 28, True], "datatype": "UINT8", "data": [0]}], "array of integers"),
    ([{"name": "image", "shape": "1x28x28", "datatype": "UINT8", "data": [0]}], "array of integers"),
    ([], "non-empty array"),
    (["image"], "each of 'inputs'"),
    ([{"name": "image", "shape": [1, 28, 28, 1], "datatype": "UINT8", "data": [0] * 784}] * 2, "given twice"),
])
def test_a_wrong_tensor_is_a_400_that_says_what_was_wrong(digits, inputs, says):
    _refused(_json_request(inputs), digits, says)


def test_shared_memory_classification_and_a_bad_request_object_are_refused(digits):
    image = {"name": "image", "shape": [1, 28, 28, 1], "datatype": "UINT8", "data": [0] * 784}
    shm = {**image, "parameters": {"shared_memory_region": "r", "shared_memory_byte_size": 784}}
    _refused(_json_request([shm]), digits, "shared memory is not supported")
    _refused(_json_request([image], outputs=[{"name": "probabilities", "parameters": {"classification": 3}}]),
             digits, "classification extension is not supported")
    _refused(_json_request([image], outputs=[{"name": "logits"}]), digits, "unknown output 'logits'")
    _refused(_json_request([image], outputs=[{"name": "energy"}, {"name": "energy"}]), digits, "requested twice")
    _refused(_json_request([image], outputs=[{"name": "energy", "parameters": {"binary_data": "yes"}}]), digits,
             "must be true or false")
    _refused(_json_request([image], id=7), digits, "'id' must be a string")
    _refused(_json_request([image], parameters=[1]), digits, "must be a JSON object")
    _refused(b"not json", digits, "not valid JSON")
    _refused(b"[" * 100_000 + b"]" * 100_000, digits, "nested too deeply")
    _refused(b'{"inputs": 3}', digits, "non-empty array")
    _refused(b"[1, 2]", digits, "must be a JSON object")


def test_binary_sizes_and_the_header_length_are_checked(digits):
    image = np.zeros((1, 28, 28, 1), np.uint8)
    body, header = _binary_request({"image": image}, "UINT8")
    _refused(body[: int(header)], digits, "binary_data_size but the request has no Inference-Header-Content-Length")
    _refused(body + b"\0", digits, "785 bytes of binary data follow", header)
    _refused(body[:-1], digits, "only 783 bytes follow", header)
    wrong = body.replace(b'"binary_data_size": 784', b'"binary_data_size": 783')
    assert wrong != body
    _refused(wrong, digits, "binary_data_size is 783 bytes, but shape [1, 28, 28, 1] of UINT8 is 784 bytes", header)
    for bad in ("0", "-3", "x", str(len(body) + 1)):
        _refused(body, digits, "Inference-Header-Content-Length must be", bad)
    both = json.dumps({"inputs": [{"name": "image", "shape": [1, 28, 28, 1], "datatype": "UINT8", "data": [0] * 784,
                                   "parameters": {"binary_data_size": 784}}]}).encode()
    _refused(both + bytes(784), digits, "both 'data' and binary_data_size", str(len(both)))


def test_inputs_over_the_byte_limit_are_a_413(classifier):
    shape = [64, 224, 224, 3]
    body = _json_request([{"name": "image", "shape": shape, "datatype": "UINT8", "parameters": {
        "binary_data_size": int(np.prod(shape))}}])
    _refused(body, classifier, "more than the 1000000 bytes", header=str(len(body)), status=413, limit=1_000_000)
    huge = _json_request([{"name": "image", "shape": [10**12, 224, 224, 3], "datatype": "UINT8", "data": [0]}])
    _refused(huge, classifier, "more than the", status=413)


def test_the_batch_limit_is_a_400_with_the_live_setting():
    v2.check_batch(8, 8, "classifier")
    with pytest.raises(v2.ProtocolError, match="batch of 9 is more than the max_batch_size of 8 of model 'classifier'"):
        v2.check_batch(9, 8, "classifier")


def test_check_arrays_catches_what_changed_under_the_ingress(digits):
    assert digits.check_arrays({"image": np.zeros((3, 28, 28, 1), np.uint8)}) == 3
    for arrays in ({"image": np.zeros((3, 28, 28, 1), np.float32)}, {"image": np.zeros((3, 32, 32, 1), np.uint8)},
                   {"pixels": np.zeros((1, 28, 28, 1), np.uint8)}):
        with pytest.raises(v2.ProtocolError):
            digits.check_arrays(arrays)


# -- responses ---------------------------------------------------------------------------------------------


def test_responses_in_json_and_binary_as_tritonclient_reads_them(digits):
    arrays = {"probabilities": np.full((2, 10), 0.1, np.float32), "energy": np.array([-5.0, 1.5], np.float32),
              "distance": np.array([0.25, 0.5], np.float32)}
    image = {"name": "image", "shape": [2, 28, 28, 1], "datatype": "UINT8", "data": [0] * 1568}
    plain = _parse(_json_request([image], id="abc"), digits)
    content, length = v2.encode_response("digits", 1, plain, arrays, digits)
    assert length is None
    answer = json.loads(content)
    assert answer["model_name"] == "digits" and answer["model_version"] == "1" and answer["id"] == "abc"
    for name, array in decode(content, None).items():
        np.testing.assert_array_equal(array, arrays[name])
    mixed = _parse(_json_request([image], outputs=[{"name": "energy", "parameters": {"binary_data": True}},
                                                   {"name": "distance"}]), digits)
    content, length = v2.encode_response("digits", 1, mixed, arrays, digits)
    head = json.loads(content[:length])
    assert [o["name"] for o in head["outputs"]] == ["energy", "distance"] and "id" not in head
    assert head["outputs"][0]["parameters"] == {"binary_data_size": 8} and "data" not in head["outputs"][0]
    assert head["outputs"][1]["data"] == [0.25, 0.5]
    np.testing.assert_array_equal(np.frombuffer(content[length:], np.float32), arrays["energy"])


# -- the model deployment's rows ---------------------------------------------------------------------------


def test_rows_of_several_requests_run_in_one_session_call_as_the_deterministic_pass(digits_entry, digits):
    from lensgraph.inference.digits import DigitRunner

    runner = DigitRunner(digits_entry)
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8) for n in (2, 3))
    calls = []

    class Counting:
        def run(self, names, feed):
            calls.append({k: v.shape for k, v in feed.items()})
            return runner.session.run(names, feed)

    rows = v2.split_rows({"image": a}, 2) + v2.split_rows({"image": b}, 3)
    results, spent = v2.run_rows(Counting(), digits, rows)
    assert calls == [{"image": (5, 28, 28, 1), "mask1": (1, 5, 1024), "mask2": (1, 5, 128)}]
    assert all(isinstance(ns, int) and ns >= 0 for ns in spent)
    joined = v2.join_rows(results[2:], digits.output_names())
    expected = runner.run_session(b)  # the runner's own deterministic pass: T=1, all-ones masks
    np.testing.assert_allclose(joined["probabilities"], expected[0][0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(joined["energy"], expected[1], rtol=1e-5)
    assert joined["probabilities"].shape == (3, 10) and joined["energy"].shape == (3,)


def test_rows_of_different_sizes_run_in_one_call_per_size():
    signature = v2.Signature.from_card({"name": "any", "inputs": [{"name": "x", "dtype": "float32",
                                                                   "shape": ["batch", "width"]}],
                                        "outputs": [{"name": "y", "dtype": "float32", "shape": ["batch"]}]})

    class Summing:
        calls = 0

        def run(self, names, feed):
            Summing.calls += 1
            return [feed["x"].sum(axis=1)]

    rows = [{"x": np.ones(3, np.float32)}, {"x": np.ones(5, np.float32)}, {"x": np.full(3, 2, np.float32)}]
    results, _ = v2.run_rows(Summing(), signature, rows)
    assert Summing.calls == 2 and [float(r["y"]) for r in results] == [3.0, 5.0, 6.0]


# -- statistics --------------------------------------------------------------------------------------------


def test_statistics_count_per_batch_what_perf_analyzer_reads():
    stats = protocol_stats.InferenceStats()
    # a batch of 4 rows ending 2 requests that arrived at 100 and 300; started at 1000, ended at 1600
    stats.batch(4, 2, 400, 1000, 1600, input_ns=50, infer_ns=500, output_ns=20)
    stats.batch(1, 1, 2000, 2100, 2200)
    stats.failed(1, 3000, 3500)
    stat = protocol_stats.model_stat("classifier", 1, stats.snapshot())
    assert stat["name"] == "classifier" and stat["version"] == "1"  # perf_analyzer: GetString()
    assert stat["inference_count"] == 5 and stat["execution_count"] == 2
    inference = stat["inference_stats"]
    assert set(inference) >= {"success", "queue", "compute_input", "compute_infer", "compute_output", "cache_hit",
                              "cache_miss", "fail"}
    assert inference["success"] == {"count": 3, "ns": (1600 - 100) + (1600 - 300) + (2200 - 2000)}
    assert inference["queue"] == {"count": 3, "ns": (1000 - 100) + (1000 - 300) + (2100 - 2000)}
    assert inference["compute_infer"] == {"count": 3, "ns": 2 * 500 + 100}
    assert inference["compute_input"] == {"count": 3, "ns": 2 * 50}
    assert inference["fail"] == {"count": 1, "ns": 500}
    assert inference["cache_hit"] == {"count": 0, "ns": 0}
    assert [b["batch_size"] for b in stat["batch_stats"]] == [1, 4]
    assert stat["batch_stats"][1]["compute_infer"] == {"count": 1, "ns": 500}
    assert all(type(v) is int for d in inference.values() for v in d.values())  # perf_analyzer: GetUint64()
    json.dumps(stat)


# -- the ASGI layers on /v2 --------------------------------------------------------------------------------


def _call(app, method: str, path: str, headers: dict | None = None) -> httpx.Response:
    async def go():
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            return await http.request(method, path, headers=headers)

    return asyncio.run(go())


def test_errors_under_v2_take_the_protocols_form_and_v1_keeps_its_own():
    app = FastAPI()
    errors.install(app)

    @app.get("/v2/models/{name}")
    async def model(name: str):
        raise UnknownModel(f"unknown model {name!r}")

    @app.get("/v1/models/{name}")
    async def v1_model(name: str):
        raise UnknownModel(f"unknown model {name!r}")

    @app.get("/v2/boom")
    async def boom():
        raise v2.ProtocolError("input 'image' is UINT8, not 'FP32'")

    assert _call(app, "GET", "/v2/models/x").json() == {"error": "unknown model 'x'"}
    assert _call(app, "GET", "/v2/boom").json() == {"error": "input 'image' is UINT8, not 'FP32'"}
    missing = _call(app, "GET", "/v2/nothing")
    assert missing.status_code == 404 and set(missing.json()) == {"error"}
    assert _call(app, "POST", "/v2/models/x").status_code == 405
    assert set(_call(app, "POST", "/v2/models/x").json()) == {"error"}
    v1 = _call(app, "GET", "/v1/models/x").json()
    assert v1["error"] == "unknown_model" and v1["message"] == "unknown model 'x'"


def test_v2_probes_stay_open_with_api_keys_and_the_rest_needs_a_key(tmp_path):
    from lensgraph.security import keys

    path = tmp_path / "api_keys"
    keys.append(path, "test")
    guard = Guard()
    guard.configure(types.SimpleNamespace(rate_limit_per_s=0.0, rate_limit_burst=0, rate_limit_client_header=None),
                    environ={keys.ENV: str(path)})

    async def ok(request):
        return JSONResponse({"ok": True})

    paths = ("/v2/health/live", "/v2/health/ready", "/v2", "/v2/models/classifier", "/v2/models/classifier/infer")
    app = Starlette(routes=[Route(p, ok, methods=["GET", "POST"]) for p in paths])
    app.add_middleware(GuardMiddleware, guard=guard)
    for open_path in paths[:2]:
        assert _call(app, "GET", open_path).status_code == 200, open_path
    for closed in paths[2:]:
        refused = _call(app, "GET", closed)
        assert refused.status_code == 401 and set(refused.json()) == {"error"}, closed
        assert "Authorization: Bearer" in refused.json()["error"]


def test_admission_bounds_v2_infer_and_refuses_in_the_protocols_form():
    assert is_model_request("/v2/models/classifier/infer") and is_model_request("/v2/models/digits/versions/1/infer")
    assert is_model_request("/v1/classify")
    for path in ("/v2/models/classifier", "/v2/models/classifier/config", "/v2/health/ready", "/v2/models/stats"):
        assert not is_model_request(path), path
    admission = Admission(limit=0)

    async def ok(request):
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/v2/models/{name}/infer", ok, methods=["POST"]),
                            Route("/v2/models/{name}", ok), Route("/v1/classify", ok, methods=["POST"])])
    app.add_middleware(AdmissionMiddleware, admission=admission)
    refused = _call(app, "POST", "/v2/models/digits/infer")
    assert refused.status_code == 503 and set(refused.json()) == {"error"} and refused.headers["retry-after"] == "1"
    assert "limit of 0 requests" in refused.json()["error"]
    assert _call(app, "POST", "/v1/classify").json()["error"] == "overloaded"
    assert _call(app, "GET", "/v2/models/digits").status_code == 200, "descriptions are not model requests"
    assert admission.refused == 2
