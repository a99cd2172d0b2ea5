"""TensorFlow for the tests: the ``tf`` marker's rule and the SavedModels the tests import.

TensorFlow lives in .venv-tf (``make tf-env``), never in the main venv: tests marked ``tf`` are
skipped when that environment is absent, and fail when CI=true (``make test`` creates it, so in CI
its absence is a broken setup, not a reason to skip). The fixtures make the SavedModels once per
session in .venv-tf (tests/tf_models.py: a Keras CNN with Dropout trained on real MNIST digits, and
two small ones for the error cases) and import the trained one with the real ``lensgraph export``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
TF_MODELS = ROOT / "tests" / "tf_models.py"
IMPORTED_NAME = "mnist_model"


def tf_python_or_none() -> Path | None:
    from lensgraph.errors import LensgraphError
    from lensgraph.export.saved_model import tf_python

    try:
        return tf_python()
    except LensgraphError:
        return None


def require_tf(item: pytest.Item) -> None:
    """``pytest_runtest_setup`` for the ``tf`` marker: skip without .venv-tf, fail in CI."""
    if item.get_closest_marker("tf") is None or tf_python_or_none() is not None:
        return
    message = "needs TensorFlow in .venv-tf: run `make tf-env` (make test does)"
    if os.environ.get("CI"):
        pytest.fail(f"CI=true and {message}", pytrace=False)
    pytest.skip(message)


def run_tf(*args: str, timeout: float = 300) -> dict[str, Any]:
    """tests/tf_models.py in .venv-tf (isolated: nothing of the main venv leaks in); its JSON line."""
    python = tf_python_or_none()
    assert python is not None
    proc = subprocess.run([str(python), "-I", str(TF_MODELS), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def lensgraph(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """The real CLI in a fresh process of the main venv."""
    return subprocess.run([sys.executable, "-m", "lensgraph.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})


@dataclass
class SavedModels:
    folder: Path
    mnist_model: Path  # trained Keras CNN with Dropout, softmax out, float32 [N, 28, 28] in 0..1
    logits_model: Path  # untrained, [N, 28, 28, 1] in, logits out
    lgamma_model: Path  # uses tf.math.lgamma, which tf2onnx cannot convert
    info: dict[str, Any]


@dataclass
class Imported:
    root: Path  # a model repository holding only the import
    name: str
    directory: Path
    card: dict[str, Any]
    stdout: str
    seconds: float


@pytest.fixture(scope="session")
def tf_saved_models(assets: Path, tmp_path_factory) -> SavedModels:
    """Made once per session in .venv-tf from the real MNIST training digits (about 25 s on 2 cores)."""
    import numpy as np

    from lensgraph.datasets.mnist import load_split

    folder = tmp_path_factory.mktemp("saved_models")
    train, test = load_split("train"), load_split("test")
    np.savez(folder / "mnist.npz", train_images=train.images, train_labels=train.labels,
             test_images=test.images[:1000], test_labels=test.labels[:1000])
    started = time.perf_counter()
    info = run_tf("build", "--data", str(folder / "mnist.npz"), "--out", str(folder))
    info["seconds"] = round(time.perf_counter() - started, 1)
    (folder / "mnist.npz").unlink()
    return SavedModels(folder, folder / "mnist_model", folder / "logits_model", folder / "lgamma_model", info)


@pytest.fixture(scope="session")
def imported_digits(tf_saved_models: SavedModels, tmp_path_factory) -> Imported:
    """``lensgraph export --saved-model ... --task digits --repository ROOT --calibrate digits``, once."""
    root = tmp_path_factory.mktemp("imported_repository")
    started = time.perf_counter()
    proc = lensgraph("export", "--saved-model", str(tf_saved_models.mnist_model), "--task", "digits",
                     "--repository", str(root), "--calibrate", "digits")
    seconds = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr
    directory = root / IMPORTED_NAME / "1"
    card = yaml.safe_load((directory / "model.yaml").read_text())
    return Imported(root, IMPORTED_NAME, directory, card, proc.stdout, seconds)
