"""Importing a TensorFlow SavedModel as a served digits model (``lensgraph export --saved-model``).

No mocks: the SavedModels are made by real TensorFlow in .venv-tf (a Keras CNN with two Dropout
layers, trained here on real MNIST training digits), converted by the real CLI (tf2onnx in .venv-tf),
run by the real ONNX Runtime and the real DigitRunner. The main process never imports TensorFlow.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml

from tests.tf_support import ROOT, lensgraph, run_tf


@pytest.fixture(scope="module")
def mnist_test(assets):
    from lensgraph.datasets.mnist import load_split

    return load_split("test")


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    """A clear failure: non-zero exit, one line on stderr, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    return lines[0]


# -- without TensorFlow ----------------------------------------------------------------------------


def test_the_main_venv_has_no_tensorflow_and_the_cli_never_imports_it():
    code = ("import importlib.util, sys; import lensgraph.cli.main, lensgraph.export.saved_model, "
            "lensgraph.inference.digits; assert importlib.util.find_spec('tensorflow') is None, 'tensorflow installed'; "
            "assert not [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf2onnx', 'keras')]")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_a_folder_that_is_not_a_saved_model_is_refused_before_tensorflow_starts(tmp_path):
    (tmp_path / "variables").mkdir()
    message = _one_line_error(lensgraph("export", "--saved-model", str(tmp_path), "--out", str(tmp_path / "out")))
    assert "is not a TensorFlow SavedModel (no saved_model.pb in it)" in message
    message = _one_line_error(lensgraph("export", "--saved-model", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")))
    assert "does not exist" in message
    assert not (tmp_path / "out").exists()


def test_without_the_tensorflow_environment_the_error_says_make_tf_env(tmp_path):
    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "saved_model.pb").write_bytes(b"")
    # A Python that is not the TensorFlow environment: a fresh venv with no packages at all.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    for python in (tmp_path / "bare" / "bin" / "python", tmp_path / "no" / "python"):
        message = _one_line_error(lensgraph("export", "--saved-model", str(tmp_path / "saved"), "--out",
                                            str(tmp_path / "out"), env={"LENSGRAPH_TF_PYTHON": str(python)}))
        assert "make tf-env" in message, message
    assert not (tmp_path / "out").exists()


# -- with TensorFlow (.venv-tf) --------------------------------------------------------------------


@pytest.mark.tf
def test_the_keras_model_is_trained_for_real(tf_saved_models):
    info = tf_saved_models.info
    assert info["tensorflow"] == "2.21.0"
    assert info["test_accuracy"] >= 0.95, info  # on 1,000 MNIST test digits, in TensorFlow
    assert info["train_seconds"] < 60, info


@pytest.mark.tf
def test_import_writes_a_repository_model_with_parity_and_a_calibrated_card(imported_digits):
    from lensgraph.repository.store import find_model
    from lensgraph.repository.weights import sha256_file

    card, directory = imported_digits.card, imported_digits.directory
    assert sorted(p.name for p in directory.iterdir()) == ["calibration.yaml", "model.onnx", "model.yaml"]
    entry = find_model(imported_digits.root, imported_digits.name)  # the layout serving reads
    assert entry.version == 1 and entry.card == card
    assert card["task"] == "digits" and card["weights"]["real"] is True
    assert card["weights"]["source"].startswith("saved_model:")
    assert card["inputs"] == [{"name": "image", "dtype": "uint8", "shape": ["batch", 28, 28, 1]}]
    assert card["outputs"] == [{"name": "probabilities", "dtype": "float32", "shape": ["batch", 10]}]
    assert card["preprocessing"]["in_graph"] == {"mean": [0.0], "std": [255.0]}
    assert card["preprocessing"]["signature_input"]["shape"] == [None, 28, 28]  # what Keras takes: 0..1 floats
    export = card["export"]
    assert (export["tensorflow"], export["tf2onnx"], export["opset"]) == ("2.21.0", "1.17.0", 18)
    assert export["signature"]["name"] == "serving_default" and export["softmax_in_graph"] is False
    # TensorFlow against ONNX Runtime on random images and 1,000 real MNIST test digits, measured by the converter.
    assert card["parity"]["max_abs_diff"] <= 1e-4 and "1000 MNIST test digits" in card["parity"]["inputs"]
    assert card["accuracy"]["onnx"] == card["accuracy"]["tensorflow"] >= 0.95
    assert card["accuracy"]["same_digit"] == 1.0
    # The decision: no dropout in the serving graph, so deterministic, calibrated on held-out digits.
    assert card["uncertainty"]["method"] == "deterministic" and card["uncertainty"]["random_ops_in_graph"] == []
    options = card["options"]
    assert options["uncertainty_method"] == "deterministic" and options["mc_samples"] == 1
    assert options["dropout_p"] is None and options["calibrated"] is True
    assert options["uncertainty_score"] == "predictive_entropy" and options["target_accuracy"] == 0.997
    assert options["thresholds"] == {1: options["reliability_threshold"]} and options["reliability_threshold"] > 0
    assert options["energy_threshold"] is None and options["distance_threshold"] is None
    calibration = options["calibration"]
    assert calibration["model_sha256"] == sha256_file(directory / "model.onnx")
    assert calibration["sha256"] == sha256_file(directory / "calibration.yaml")
    assert calibration["split"].startswith("val: MNIST training images 55000..59999")
    assert calibration["at_default_samples"]["met"] is True
    assert calibration["at_default_samples"]["accuracy_lower_bound"] >= 0.997
    record = yaml.safe_load((directory / "calibration.yaml").read_text())
    assert record["weights_sha256"] == calibration["model_sha256"] and record["method"] == "deterministic"
    out = imported_digits.stdout
    assert "parity max |onnx - tensorflow|" in out and "args: {models: {digits: mnist_model}}" in out


@pytest.mark.tf
def test_onnx_runtime_matches_tensorflow_on_real_digits(imported_digits, tf_saved_models, mnist_test, tmp_path):
    """Checked again from outside the converter: the signature in TensorFlow on uint8 / 255 against the artefact."""
    from lensgraph.runtime.session import create_session

    images = mnist_test.images[1000:1500]
    np.savez(tmp_path / "digits.npz", images=images)
    run_tf("predict", "--saved-model", str(tf_saved_models.mnist_model), "--data", str(tmp_path / "digits.npz"),
           "--out", str(tmp_path / "tf.npy"))
    expected = np.load(tmp_path / "tf.npy")
    session = create_session(imported_digits.directory / "model.onnx")
    actual = session.run(None, {"image": images[..., None]})[0]
    assert actual.shape == expected.shape == (500, 10)
    assert float(np.max(np.abs(actual - expected))) <= 1e-4
    assert np.mean(actual.argmax(axis=1) == mnist_test.labels[1000:1500]) >= 0.95


@pytest.mark.tf
def test_the_digit_runner_serves_it_deterministically(imported_digits, mnist_test):
    from lensgraph.imaging.digits import prepare_array
    from lensgraph.inference.digits import DigitRunner
    from lensgraph.repository.store import find_model

    runner = DigitRunner(find_model(imported_digits.root, imported_digits.name))
    assert runner.deterministic and runner.calibration_refused is None
    info = runner.describe()
    assert info["method"] == "deterministic" and info["default_samples"] == 1 and info["calibrated"] is True
    images = [prepare_array(image).image for image in mnist_test.images[:1000]]  # the route's preprocessing
    answers = []
    for i in range(0, len(images), 16):
        answers += runner.run_batch([(image, 30, 7) for image in images[i : i + 16]])  # T=30 asked: T=1 served
    digits = np.array([a["digit"] for a in answers])
    reliable = np.array([a["reliable"] for a in answers])
    correct = digits == mnist_test.labels[:1000]
    assert correct.mean() >= 0.95
    assert 0.6 <= reliable.mean() < 1.0  # most answers trusted, not all
    assert correct[reliable].mean() >= 0.99  # calibrated for 99.7% on held-out digits
    first = answers[0]["uncertainty"]
    assert first["method"] == "deterministic" and first["samples"] == 1
    assert first["mutual_information"] == 0.0 and first["variation_ratio"] == 0.0
    assert first["predictive_entropy"] == first["expected_entropy"]
    assert first["energy"] is None and first["distance"] is None and first["in_distribution"] is None
    assert first["score"] == "predictive_entropy" and first["threshold"] == imported_digits.card["options"]["reliability_threshold"]
    assert {a["reason"] for a in answers if not a["reliable"]} == {"uncertain"}
    # samples and seed change nothing: the same answer for any request.
    again = runner.run_batch([(images[0], None, None), (images[0], 1, 3)])
    assert again[0] == again[1] == answers[0]
    # The health check's call: the card's input shape and dtype, no masks.
    assert runner.run_session(np.zeros((1, 28, 28, 1), np.uint8))[0].shape == (1, 10)


@pytest.mark.tf
def test_a_calibration_made_for_other_weights_is_refused(imported_digits, tf_saved_models, tmp_path):
    """The card's thresholds name the sha256 of the ONNX file they were measured on; another file gets none."""
    from lensgraph.inference.digits import DigitRunner
    from lensgraph.repository.store import find_model

    # Another model's artefact (the logits model, imported without calibration) under the calibrated card.
    proc = lensgraph("export", "--saved-model", str(tf_saved_models.logits_model), "--task", "digits",
                     "--out", str(tmp_path / "logits"))
    assert proc.returncode == 0, proc.stderr
    logits_card = yaml.safe_load((tmp_path / "logits" / "model.yaml").read_text())
    assert logits_card["export"]["softmax_in_graph"] is True  # logits out: a softmax appended in the graph
    assert logits_card["preprocessing"]["signature_input"]["layout"] == "NHWC"
    assert logits_card["options"]["calibrated"] is False and not (tmp_path / "logits" / "calibration.yaml").exists()

    root = tmp_path / "repo"
    shutil.copytree(imported_digits.directory, root / "swapped" / "1")
    shutil.copyfile(tmp_path / "logits" / "model.onnx", root / "swapped" / "1" / "model.onnx")
    runner = DigitRunner(find_model(root, "swapped"))
    assert runner.calibration_refused and "re-import" in runner.calibration_refused
    assert runner.describe()["calibrated"] is False
    answer = runner.run_batch([(np.zeros((28, 28), np.uint8), None, None)])[0]
    assert answer["reliable"] is False and answer["reason"] == "uncalibrated"
    assert answer["uncertainty"]["threshold"] is None
    assert abs(sum(answer["probabilities"]) - 1.0) < 1e-5


@pytest.mark.tf
def test_a_missing_signature_lists_the_ones_there_are(tf_saved_models, tmp_path):
    message = _one_line_error(lensgraph("export", "--saved-model", str(tf_saved_models.mnist_model),
                                        "--signature", "predict", "--out", str(tmp_path / "out")))
    assert "no signature 'predict'; it has: serve, serving_default" in message
    assert not (tmp_path / "out").exists()


@pytest.mark.tf
def test_an_op_tf2onnx_cannot_convert_is_named(tf_saved_models, tmp_path):
    message = _one_line_error(lensgraph("export", "--saved-model", str(tf_saved_models.lgamma_model),
                                        "--repository", str(tmp_path / "repo")))
    assert "cannot convert the TensorFlow op Lgamma" in message
    assert not any((tmp_path / "repo").rglob("model.onnx"))  # nothing half-written


def test_tf_venv_is_ignored_by_git_and_docker():
    assert ".venv-tf/" in (ROOT / ".gitignore").read_text().split()
    assert ".venv-tf" in (ROOT / ".dockerignore").read_text().split()
    makefile = (ROOT / "Makefile").read_text()
    assert "tf-env: $(TF_VENV)/.stamp-tf" in makefile
    test_line = next(line for line in makefile.splitlines() if line.startswith("test:"))
    assert "tf-env" in test_line.split()
    assert "tensorflow" not in (ROOT / "pyproject.toml").read_text().split("[tool.pytest")[0].lower()
