"""The in-process pipelines (the benchmark's floor and the baseline's core) on real models and images."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from lensgraph.inference.local import LocalPipelines


@pytest.fixture(scope="module")
def local(repository):
    return LocalPipelines(repository, threads=1)


def test_classify_batch_reads_both_sample_photos(local, assets):
    photos = [(assets / f"imagenet/{name}").read_bytes() for name in ("n01440764_tench.JPEG", "n01667114_mud_turtle.JPEG")]
    results = local.classify(photos, top_k=3)
    assert [r["predictions"][0]["class_id"] for r in results] == [0, 35]
    assert all(r["embedding_stats"]["dim"] == 1280 for r in results)
    assert all(r["model"] == {"name": "classifier", "version": 1, "weights_real": True} for r in results)
    # batching must not change an answer
    alone = local.classify(photos[1:], top_k=3)[0]
    assert alone["predictions"][0]["confidence"] == pytest.approx(results[1]["predictions"][0]["confidence"], abs=1e-5)


def test_faces_batch_keeps_each_image_with_its_own_faces(local, assets):
    photos = [(assets / name).read_bytes() for name in ("face_detector/linzaer_imgs_2.jpg", "faces/obama.jpg",
                                                         "face_detector/linzaer_imgs_13.jpg")]
    results = local.faces(photos)
    assert [len(r["faces"]) for r in results] == [4, 1, 2]
    for r in results:
        for face in r["faces"]:
            assert len(face["landmarks"]) == 15
            xs = [m["x"] for m in face["landmarks"]]
            box = face["box"]
            width = box["x2"] - box["x1"]
            assert box["x1"] - 0.15 * width <= min(xs) and max(xs) <= box["x2"] + 0.15 * width


def test_digits_batch_reads_mnist_and_reports_blank(local):
    from lensgraph.datasets.mnist import load_split

    test = load_split("test")
    uploads = []
    for k in range(20):
        buffer = io.BytesIO()
        Image.fromarray(test.images[k]).save(buffer, format="PNG")
        uploads.append(buffer.getvalue())
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(buffer, format="PNG")
    results = local.digits(uploads + [buffer.getvalue()], samples=30, seed=0)
    assert sum(r["digit"] == int(test.labels[k]) for k, r in enumerate(results[:20])) >= 19
    assert results[-1]["blank"] is True and results[-1]["digit"] is None
    assert all(r["uncertainty"]["samples"] == 30 for r in results[:20])
