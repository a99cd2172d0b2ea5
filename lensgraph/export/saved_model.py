"""``lensgraph export --saved-model DIR``: a TensorFlow SavedModel as a served model, without TensorFlow here.

TensorFlow never enters this process, the main venv or the runtime image. The conversion runs in the
TensorFlow environment (``make tf-env`` creates ``.venv-tf``; ``$LENSGRAPH_TF_PYTHON`` names another
interpreter) as a subprocess: ``lensgraph/export/tf_convert.py`` converts one signature with tf2onnx,
puts the project's uint8 NHWC input in front, and measures TensorFlow-vs-ONNX Runtime parity on seeded
random images and on 1,000 real MNIST test digits (digits models). This side then calibrates ``reliable``
with ONNX Runtime when asked (``--calibrate digits``), writes the card, and moves the folder into place
whole: ``<repository>/<name>/<version>/{model.onnx, model.yaml, calibration.yaml}``, the layout
lensgraph.repository.store reads, or the files into ``--output``.

Why an imported model is served deterministically: a Keras SavedModel's serving signature runs the
model in inference mode, where Dropout is the identity, so the converted graph has no dropout left to
sample. Its answers say ``samples: 1`` (the MC fields are those of one pass: mutual information and
variation ratio 0), ``reliable`` comes from the softmax entropy against a threshold calibrated on
held-out digits; docs/uncertainty.md, "Imported models".
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from lensgraph import __version__, settings
from lensgraph.errors import LensgraphError, WeightsNotFound
from lensgraph.repository import store
from lensgraph.repository.build import replace_dir
from lensgraph.repository.fingerprint import fingerprint
from lensgraph.repository.weights import sha256_file

TF_PYTHON_ENV = "LENSGRAPH_TF_PYTHON"
TF_VENV = ".venv-tf"
CONVERTER = Path(__file__).with_name("tf_convert.py")
CALIBRATION_FILE = "calibration.yaml"
PARITY_DIGITS = 1000
TASKS = ("digits", "generic")
DIGITS_OUTPUT = "probabilities"


class SavedModelError(LensgraphError):
    """What went wrong importing a SavedModel, in one line (the CLI prints it, exit status 2)."""

    status, code = 422, "saved_model_import"


def tf_python() -> Path:
    """The TensorFlow environment's interpreter: ``$LENSGRAPH_TF_PYTHON``, else ``<checkout>/.venv-tf/bin/python``."""
    value = os.environ.get(TF_PYTHON_ENV, "").strip()
    if value:
        path = Path(value).expanduser()
        if not path.is_file() or not os.access(path, os.X_OK):
            raise SavedModelError(f"${TF_PYTHON_ENV} names {path}, which is not an executable Python; "
                                  f"unset it to use {TF_VENV} (make tf-env)")
        return path
    path = settings.project_root() / TF_VENV / "bin" / "python"
    if not path.is_file():
        raise SavedModelError(f"TensorFlow is not installed: SavedModels are converted in their own environment "
                              f"({path.parent.parent}); create it with `make tf-env` (or set ${TF_PYTHON_ENV} to a "
                              "Python that has tensorflow and tf2onnx)")
    return path


def check_saved_model(path: Path) -> None:
    """A folder with saved_model.pb (or .pbtxt): checked here, before a TensorFlow process starts."""
    if not path.exists():
        raise SavedModelError(f"{path} does not exist")
    if not path.is_dir() or not any((path / f).is_file() for f in ("saved_model.pb", "saved_model.pbtxt")):
        raise SavedModelError(f"{path} is not a TensorFlow SavedModel (no saved_model.pb in it)")


def saved_model_sha256(path: Path) -> str:
    """One digest of every file of the SavedModel (names and contents), in a fixed order."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(file.relative_to(path).as_posix().encode() + b"\0" + sha256_file(file).encode() + b"\n")
    return digest.hexdigest()


def default_name(saved_model: Path) -> str:
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in saved_model.resolve().name).strip("_")
    return name or "saved_model"


def next_version(root: Path, name: str) -> int:
    existing = store.versions(root, name)
    return existing[-1] + 1 if existing else 1


def convert(saved_model: Path, signature: str, task: str, out_onnx: Path, workdir: Path,
            mean: list[float], std: list[float]) -> dict[str, Any]:
    """Run the converter in the TensorFlow environment; its JSON report, or SavedModelError in one line."""
    python = tf_python()
    command = [str(python), "-I", str(CONVERTER), "--saved-model", str(saved_model), "--signature", signature,
               "--task", task, "--mean", ",".join(map(str, mean)), "--std", ",".join(map(str, std)),
               "--output", str(out_onnx), "--report", str(workdir / "report.json")]
    if task == "digits":
        command += ["--digits", str(_parity_digits(workdir / "parity_digits.npz"))]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0", "CUDA_VISIBLE_DEVICES": ""}
    log = workdir / "convert.log"
    with open(log, "wb") as handle:
        proc = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=env, check=False)
    report_path = workdir / "report.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else None
    if report is not None and not report.get("ok"):
        raise SavedModelError(str(report.get("error") or "the converter failed"))
    if proc.returncode != 0 or report is None:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        last = lines[-1] if lines else "no output"
        raise SavedModelError(f"the TensorFlow converter ({python}) failed with exit status {proc.returncode}: {last[:300]}")
    return report


def _parity_digits(path: Path) -> Path:
    """The first MNIST test digits, for the converter's parity and accuracy figures."""
    from lensgraph.datasets.mnist import IDXError, load_split

    try:
        test = load_split("test")
    except (WeightsNotFound, IDXError, FileNotFoundError) as exc:
        message = exc.message if isinstance(exc, LensgraphError) else str(exc)
        raise SavedModelError(f"a digits import checks parity on real MNIST digits: {message}") from exc
    np.savez(path, images=test.images[:PARITY_DIGITS], labels=test.labels[:PARITY_DIGITS])
    return path


def onnx_predict(onnx_path: Path, chunk: int = 500) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 [N, 28, 28] -> the artefact's probabilities [N, 10], with the serving runtime."""
    from lensgraph.runtime.session import SessionConfig, create_session

    session = create_session(onnx_path, SessionConfig(intra_op_threads=2))
    name = session.get_inputs()[0].name

    def predict(images: np.ndarray) -> np.ndarray:
        return np.concatenate([session.run(None, {name: images[i : i + chunk, ..., None]})[0]
                               for i in range(0, len(images), chunk)])

    return predict


def calibrate_digits(onnx_path: Path, out_dir: Path, target_accuracy: float | None = None,
                     log=print) -> dict[str, Any]:
    """Calibrate ``reliable`` for the artefact at ``onnx_path``; writes ``calibration.yaml`` beside it."""
    from lensgraph.datasets.mnist import IDXError
    from lensgraph.training.calibrate_digits import DEFAULT_TARGET, calibrate_deterministic

    try:
        record = calibrate_deterministic(onnx_predict(onnx_path), sha256_file(onnx_path),
                                         target_accuracy=target_accuracy or DEFAULT_TARGET, log=log)
    except (WeightsNotFound, IDXError) as exc:
        message = exc.message if isinstance(exc, LensgraphError) else str(exc)
        raise SavedModelError(f"--calibrate digits needs the MNIST validation split: {message}") from exc
    (out_dir / CALIBRATION_FILE).write_text(yaml.safe_dump(record, sort_keys=False, width=120))
    return record


def digits_options(record: dict[str, Any] | None, calibration_file: Path | None) -> dict[str, Any]:
    """The card's ``options`` for a deterministic digits model (the keys the MC-dropout card has)."""
    options: dict[str, Any] = {
        "uncertainty_method": "deterministic",
        "mc_samples": 1,
        "dropout_p": None,
        "calibrated": False,
        "uncertainty_score": None,
        "reliability_threshold": None,
        "thresholds": {},
        "energy_threshold": None,
        "distance_threshold": None,
    }
    if record is None:
        return options
    threshold = (record.get("thresholds") or {}).get(1)
    options.update(
        calibrated=threshold is not None,
        uncertainty_score=record["score"],
        target_accuracy=record.get("target_accuracy"),
        reliability_threshold=threshold,
        thresholds={1: threshold} if threshold is not None else {},
        calibration={
            "file": CALIBRATION_FILE,
            "sha256": sha256_file(calibration_file) if calibration_file else None,
            "model_sha256": record["weights_sha256"],
            "split": record.get("split"),
            "confidence": record.get("confidence"),
            "at_default_samples": (record.get("details") or {}).get(1),
        },
    )
    return options


def import_saved_model(
    saved_model: Path,
    target: Path,
    name: str,
    version: int,
    signature: str = "serving_default",
    task: str = "generic",
    mean: list[float] | None = None,
    std: list[float] | None = None,
    calibrate: str | None = None,
    target_accuracy: float | None = None,
    command: str = "",
    replace: bool = True,
    log=print,
) -> dict[str, Any]:
    """Convert, check, (calibrate,) write the card; returns the card.

    ``replace``: ``target`` is a repository version folder, moved into place whole (a failed import never
    leaves half a model there); else the files are written into the folder ``target``, beside what it holds."""
    saved_model = saved_model.expanduser().resolve()
    if task not in TASKS:
        raise SavedModelError(f"--task {task!r}: a SavedModel imports as one of {', '.join(TASKS)}")
    if calibrate not in (None, "digits"):
        raise SavedModelError(f"--calibrate {calibrate!r}: only 'digits' is known")
    if calibrate and task != "digits":
        raise SavedModelError("--calibrate digits needs --task digits")
    check_saved_model(saved_model)
    tf_python()  # fails with `make tf-env` before anything is written
    mean, std = list(mean or [0.0]), list(std or [255.0])
    if len(mean) != len(std) or any(s == 0 for s in std):
        raise SavedModelError("--mean and --std need the same number of values, std non-zero")

    target = target.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".import-{name}-", dir=target.parent))
    scratch.chmod(0o755)  # mkdtemp's 0700 would become the model folder's
    try:
        with tempfile.TemporaryDirectory(prefix="lensgraph-tf-") as work:
            log(f"converting {saved_model} (signature {signature!r}) in the TensorFlow environment ...")
            report = convert(saved_model, signature, task, scratch / store.MODEL_FILE, Path(work), mean, std)
        options: dict[str, Any] = {}
        record = None
        if task == "digits":
            if calibrate:
                log("calibrating reliable on the MNIST validation split (5,000 digits, half as uploads) ...")
                record = calibrate_digits(scratch / store.MODEL_FILE, scratch, target_accuracy, log=log)
            options = digits_options(record, scratch / CALIBRATION_FILE if record else None)
        source_sha = saved_model_sha256(saved_model)
        card = _card(saved_model, source_sha, name, version, signature, task, mean, std, report, options, command)
        (scratch / store.CARD_FILE).write_text(yaml.safe_dump(card, sort_keys=False, width=120))
        if replace:
            replace_dir(scratch, target)
        else:
            target.mkdir(parents=True, exist_ok=True)
            (target / CALIBRATION_FILE).unlink(missing_ok=True)  # a stale one would describe other weights
            for file in (store.MODEL_FILE, CALIBRATION_FILE, store.CARD_FILE):  # the card last
                if (scratch / file).is_file():
                    shutil.copyfile(scratch / file, target / file)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return card


def _card(saved_model: Path, source_sha: str, name: str, version: int, signature: str, task: str,
          mean: list[float], std: list[float], report: dict[str, Any], options: dict[str, Any],
          command: str) -> dict[str, Any]:
    """The model card, with the keys build.py's cards have (store, /v1/models and the routes read them)."""
    spec = {"saved_model": str(saved_model), "signature": signature, "task": task, "mean": list(mean), "std": list(std),
            "calibrate": bool(options.get("calibration"))}
    report = copy.deepcopy(report)  # no shared objects in the card: YAML would write them as anchors
    grayscale = report["inputs"][0]["shape"][-1] == 1
    deterministic = task == "digits"
    return {
        "name": name,
        "version": version,
        "task": task,
        "description": f"TensorFlow SavedModel {saved_model.name} (signature {signature}), converted with tf2onnx",
        "architecture": "tensorflow_saved_model",
        "architecture_args": {},
        "weights": {"source": f"saved_model:{saved_model}", "sha256": source_sha, "real": True, "note": ""},
        "inputs": report["inputs"],
        "outputs": report["outputs"],
        "preprocessing": {
            "in_graph": {"mean": list(mean), "std": list(std)},
            "resize_in_graph": False,
            "layout": "NHWC uint8 grayscale" if grayscale else "NHWC uint8 RGB",
            "signature_input": copy.deepcopy(report["signature"]["input"]),
        },
        "labels": None,
        "options": options,
        "uncertainty": {
            "method": "deterministic",
            "why": "the SavedModel's serving signature runs the model in inference mode (Keras Dropout is the "
                   "identity there), so the converted graph has no dropout to sample: one pass, T = 1",
            "random_ops_in_graph": report.get("random_ops", []),
        } if deterministic else None,
        "export": {
            "exporter": f"tf2onnx {report['versions']['tf2onnx']} (from_saved_model, signature {signature}) "
                        "in the TensorFlow environment (lensgraph/export/tf_convert.py)",
            "opset": report["opset"],
            "tensorflow": report["versions"]["tensorflow"],
            "tf2onnx": report["versions"]["tf2onnx"],
            "onnx": report["versions"]["onnx"],
            "dynamic_axes": ["batch"],
            "signature": report["signature"],
            "softmax_in_graph": report["softmax_in_graph"],
            "seconds": report.get("seconds"),
        },
        "parity": {"max_abs_diff": report["parity"]["max_abs_diff"], "tolerance": report["parity"]["tolerance"],
                   "inputs": report["parity"]["inputs"]},
        "accuracy": report.get("accuracy"),
        "build": {
            "command": command,
            "fingerprint": fingerprint(spec, {"saved_model": source_sha}),
            "lensgraph": __version__,
            "built_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "spec": spec,
            "python": sys.version.split()[0],
        },
    }
