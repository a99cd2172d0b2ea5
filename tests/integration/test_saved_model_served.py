"""An imported TensorFlow SavedModel served as the digits model of the live app, by configuration only.

The Keras CNN (with Dropout, trained on real MNIST digits in .venv-tf) is imported by the real
``lensgraph export --saved-model ... --calibrate digits`` into a repository of its own, and one app
(Ray Serve on a private local cluster) serves it with ``args: {models: {digits: mnist_model}}``; the
other built-ins are absent from that repository, so their deployments start without a session.
A real MNIST test digit, sent as a PNG upload, comes back right through ``POST /v1/digits``, with
the deterministic uncertainty the card promises (docs/models.md, "Import a TensorFlow SavedModel").
"""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.integration.conftest import running_server

pytestmark = [pytest.mark.serve, pytest.mark.tf]


@pytest.fixture(scope="module")
def served(imported_digits, assets, tmp_path_factory):
    def edit(config: dict) -> None:
        config["applications"][0]["args"]["models"] = {"digits": imported_digits.name}

    with running_server(imported_digits.root, assets, tmp_path_factory.mktemp("serve_saved_model"), edit=edit) as server:
        yield server


def _png(image: np.ndarray, side: int = 140) -> bytes:
    """An MNIST digit as a user would send it: dark ink on white, enlarged, PNG."""
    buffer = io.BytesIO()
    Image.fromarray(255 - image).resize((side, side), Image.BILINEAR).save(buffer, "PNG")
    return buffer.getvalue()


def test_an_mnist_digit_comes_back_right_with_deterministic_uncertainty(served, imported_digits, assets):
    from lensgraph.datasets.mnist import load_split
    from lensgraph.imaging.decode import decode_image
    from lensgraph.inference.digits import DigitRunner
    from lensgraph.repository.store import find_model
    from lensgraph.routes import digits as route
    from pipelines.schemas import DigitResponse

    test = load_split("test")
    upload = _png(test.images[0])  # a 7
    response = httpx.post(served.url + "/v1/digits", content=upload, headers={"content-type": "image/png"}, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    DigitResponse.model_validate(body)  # the route's schema holds
    assert body["model"] == {"name": imported_digits.name, "version": 1, "weights_real": True}
    assert body["digit"] == int(test.labels[0]) == 7
    assert body["reliable"] is True and body["reason"] is None and body["inverted"] is True
    uncertainty = body["uncertainty"]
    assert uncertainty["method"] == "deterministic" and uncertainty["samples"] == 1
    assert uncertainty["mutual_information"] == 0.0 and uncertainty["variation_ratio"] == 0.0
    assert uncertainty["score"] == "predictive_entropy"
    assert uncertainty["threshold"] == imported_digits.card["options"]["reliability_threshold"]
    assert uncertainty["predictive_entropy"] <= uncertainty["threshold"]
    assert uncertainty["energy"] is None and uncertainty["distance"] is None and uncertainty["in_distribution"] is None

    # The same answer as the route's own code with the DigitRunner in this process: nothing is sampled.
    runner = DigitRunner(find_model(imported_digits.root, imported_digits.name))
    prepared = route.prepare(decode_image(upload))
    local = route.answer(imported_digits.card, prepared, runner.run_batch([(prepared.image, None, None)])[0])
    assert body["digit"] == local["digit"] and body["reliable"] == local["reliable"]
    assert body["probability"] == pytest.approx(local["probability"], abs=1e-6)

    # Asking for 30 samples and a seed changes nothing: the model has no dropout to sample.
    again = httpx.post(served.url + "/v1/digits", params={"samples": 30, "seed": 3, "probabilities": True},
                       content=upload, headers={"content-type": "image/png"}, timeout=60).json()
    assert again["uncertainty"]["samples"] == 1 and again["digit"] == 7
    assert again["probability"] == pytest.approx(body["probability"], abs=1e-6)
    assert sum(again["probabilities"]) == pytest.approx(1.0, abs=1e-5)


def test_models_lists_the_import_as_the_digits_model(served, imported_digits):
    models = served.models()
    digits = models["digits"]
    assert digits["status"] == "available", digits
    info = digits["info"]
    assert info["name"] == imported_digits.name and info["architecture"] == "tensorflow_saved_model"
    assert info["inputs"] == [{"name": "image", "dtype": "uint8", "shape": ["batch", 28, 28, 1]}]
    assert info["uncertainty"]["method"] == "deterministic" and info["uncertainty"]["calibrated"] is True
    assert info["uncertainty"]["calibration_refused"] is None
    assert {models[n]["status"] for n in ("classifier", "face_detector", "landmarks")} == {"unavailable"}
