"""A repository that lacks some models: their routes answer 503 with how to build them, the rest serve.

The application starts on a repository holding only the face models (links into the built one), so
the classifier and the digits deployments start without a session.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import Server, running_server

pytestmark = pytest.mark.serve
PRESENT = ("face_detector", "landmarks")


@pytest.fixture(scope="module")
def partial_server(repository: Path, assets: Path, tmp_path_factory) -> Server:
    partial = tmp_path_factory.mktemp("partial_repository")
    for name in PRESENT:
        (partial / name).symlink_to(repository / name, target_is_directory=True)
    with running_server(partial, assets, tmp_path_factory.mktemp("serve_partial")) as running:
        yield running


def _unavailable(response: httpx.Response, model: str) -> None:
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error"] == "model_unavailable"
    assert model in body["message"]


def test_missing_models_answer_503_and_the_face_pipeline_keeps_serving(partial_server, assets):
    url = partial_server.url
    models = partial_server.models()
    assert {name: m["status"] for name, m in models.items()} == {
        "classifier": "unavailable", "face_detector": "available", "landmarks": "available", "digits": "unavailable",
    }
    assert "lensgraph models build --only classifier" in models["classifier"]["reason"]
    assert "lensgraph models build --only digits" in models["digits"]["reason"]

    photo = (assets / "faces/obama.jpg").read_bytes()
    _unavailable(httpx.post(url + "/v1/classify", content=photo, headers={"content-type": "image/jpeg"}), "classifier")
    _unavailable(httpx.post(url + "/v1/digits", content=photo, headers={"content-type": "image/jpeg"}), "digits")

    ready = httpx.get(url + "/readyz")
    assert ready.status_code == 200  # the service is up; /readyz names what is missing
    assert ready.json()["models"]["digits"].startswith("unavailable")
    faces = httpx.post(url + "/v1/faces", files={"file": ("obama.jpg", photo)}, timeout=60)
    assert faces.status_code == 200 and len(faces.json()["faces"]) == 1
