"""``lensgraph models build``: turn ``configs/models.yaml`` into a model repository.

Each model is built on its own: missing weights are reported with what to provide and the other
models still build. A model is rebuilt only when its fingerprint (spec + weight checksums) changed.
Every artefact is written to a scratch folder and moved into place whole, so a failed build never
leaves a half-written model that serving could pick up.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lensgraph import __version__
from lensgraph.errors import LensgraphError, WeightsError, WeightsNotFound
from lensgraph.repository import store
from lensgraph.repository.fingerprint import fingerprint
from lensgraph.repository.spec import ModelSpec
from lensgraph.repository.weights import WeightSource, resolve, sha256_file


DARKNET = "darknet"  # architecture built from a darknet cfg (lensgraph.export.darknet_export)
DIGITS_CALIBRATION = "calibration.yaml"
DIGITS_DEFAULT_SAMPLES = 30


@dataclass
class BuildResult:
    name: str
    status: str  # built | up-to-date | missing | failed
    message: str = ""
    directory: Path | None = None


def build_all(
    specs: dict[str, ModelSpec],
    root: Path,
    config_dir: Path,
    only: list[str] | None = None,
    force: bool = False,
    command: str = "lensgraph models build",
) -> list[BuildResult]:
    unknown = sorted(set(only or []) - set(specs))
    results = [BuildResult(n, "failed", f"no model {n!r} in the config; known: {sorted(specs)}") for n in unknown]
    for name, spec in specs.items():
        if only and name not in only:
            continue
        results.append(build_one(spec, root, config_dir, force=force, command=command))
    return results


def build_one(spec: ModelSpec, root: Path, config_dir: Path, force: bool = False, command: str = "") -> BuildResult:
    try:
        weight_source, weight_path, labels_path, checksums = resolve_spec_inputs(spec, config_dir)
    except WeightsNotFound as exc:
        hint = f"; {spec.weights_hint}" if spec.weights_hint else ""
        return BuildResult(spec.name, "missing", exc.message + hint)
    except LensgraphError as exc:
        return BuildResult(spec.name, "failed", exc.message)

    target = root / spec.name / str(spec.version)
    spec_dict = spec.model_dump(mode="json")
    print_ = fingerprint(spec_dict, checksums)
    if not force and (target / store.MODEL_FILE).is_file():
        try:
            if store.read_card(target).get("build", {}).get("fingerprint") == print_:
                return BuildResult(spec.name, "up-to-date", "", target)
        except (OSError, yaml.YAMLError):
            pass

    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".build-{spec.name}-", dir=root))
    try:
        write_artifact(spec, weight_source, weight_path, labels_path, checksums, scratch, print_, command,
                       config_dir=config_dir)
        replace_dir(scratch, target)
    except LensgraphError as exc:
        return BuildResult(spec.name, "failed", exc.message)
    except Exception as exc:  # an export can fail in many ways; report it, build the rest
        return BuildResult(spec.name, "failed", f"{type(exc).__name__}: {exc}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return BuildResult(spec.name, "built", "", target)


def write_artifact(
    spec: ModelSpec,
    source: WeightSource,
    weights: Path | None,
    labels: Path | None,
    checksums: dict[str, str | None],
    out_dir: Path,
    fingerprint_: str,
    command: str,
    config_dir: Path | None = None,
) -> dict[str, Any]:
    """model.onnx, labels.txt and the model.yaml card into ``out_dir``; returns the card."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = _produce(spec, source, weights, out_dir / store.MODEL_FILE, config_dir)
    if labels is not None:
        shutil.copyfile(labels, out_dir / store.LABELS_FILE)
    card = _card(spec, source, checksums, report, fingerprint_, command)
    (out_dir / store.CARD_FILE).write_text(yaml.safe_dump(card, sort_keys=False, width=120))
    return card


def resolve_spec_inputs(spec: ModelSpec, config_dir: Path):
    """Weight source, local weight file, labels file and checksums for a spec (may raise WeightsNotFound)."""
    source, path, checksums = _resolve_inputs(spec, config_dir)
    labels = _resolve_labels(spec, config_dir)
    if labels is not None:
        checksums["labels"] = sha256_file(labels)
    return source, path, labels, checksums


def _resolve_inputs(spec: ModelSpec, config_dir: Path) -> tuple[WeightSource, Path | None, dict[str, str | None]]:
    source = WeightSource.parse(spec.onnx or spec.weights or "", spec.sha256)
    path = resolve(source, base_dir=config_dir)
    checksums: dict[str, str | None] = {"weights": sha256_file(path) if path else f"random:{source.seed}"}
    calibration = _digits_calibration_file(spec, path)
    if calibration is not None:
        checksums["calibration"] = sha256_file(calibration)
    if spec.model_file:
        model_file = _local(spec.model_file, config_dir)
        if not model_file.is_file():
            raise WeightsNotFound(f"model_file {model_file} does not exist")
        checksums["model_file"] = sha256_file(model_file)
    if spec.architecture == DARKNET:
        from lensgraph.export.darknet_export import resolve_cfg

        checksums["cfg"] = sha256_file(resolve_cfg(spec.architecture_args.get("cfg"), config_dir))
    return source, path, checksums


def _resolve_labels(spec: ModelSpec, config_dir: Path) -> Path | None:
    if not spec.labels:
        return None
    return resolve(WeightSource.parse(spec.labels), base_dir=config_dir)


def _local(path: str, base: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base / p


def _produce(spec: ModelSpec, source: WeightSource, weights: Path | None, out: Path, config_dir: Path | None = None):
    from lensgraph.export.artifacts import export_torch, import_onnx

    if spec.architecture == DARKNET:  # a darknet cfg + .weights file, not a torch state dict
        from lensgraph.export.darknet_export import export_darknet, resolve_cfg

        extra = sorted(set(spec.architecture_args) - {"cfg"})
        if extra:
            raise WeightsError(f"architecture darknet takes architecture_args.cfg only, not {extra}")
        cfg = resolve_cfg(spec.architecture_args.get("cfg"), config_dir)
        return export_darknet(cfg, weights, source.seed, out, spec.output_names, spec.options, spec.resize)

    normalization = None
    if spec.input_normalization:
        normalization = (spec.input_normalization.mean, spec.input_normalization.std)
    if spec.onnx:
        assert weights is not None and normalization is not None
        report = import_onnx(weights, out, normalization[0], normalization[1], spec.output_names)
        if spec.resize is not None:
            report.settings.setdefault("host_preprocessing", {})["resize"] = dict(spec.resize)
        return report

    from lensgraph.export.torch_models import instantiate, load_weights, serving_input

    module = instantiate(
        spec.architecture,
        spec.architecture_args,
        Path(spec.model_file).expanduser() if spec.model_file else None,
        spec.class_name,
        spec.init_args,
        seed=source.seed,
    )
    load_weights(module, weights, source.describe())
    if spec.task == "digits":
        return _produce_digits(spec, module, weights, out)
    model = serving_input(module, spec.architecture, spec.input_shape, normalization)
    report = export_torch(
        model.module,
        out,
        model.image_shape,
        model.mean,
        model.std,
        spec.output_names,
        classifier=spec.task == "classification",
        bake_resize=spec.bake_resize,
    )
    host = getattr(module, "preprocessing", None)
    if isinstance(host, dict):
        report.settings["host_preprocessing"] = {k: v for k, v in host.items() if k not in ("mean", "std")}
    if spec.resize is not None:
        report.settings.setdefault("host_preprocessing", {})["resize"] = dict(spec.resize)
    return report


def _digits_calibration_file(spec: ModelSpec, weights: Path | None) -> Path | None:
    """The digits model's calibration file: ``options.calibration`` (default calibration.yaml), beside the weights."""
    if spec.task != "digits" or weights is None:
        return None
    name = spec.options.get("calibration", DIGITS_CALIBRATION)
    path = weights.parent / str(name)
    if "calibration" in spec.options and not path.is_file():
        raise WeightsNotFound(f"options.calibration names {path}, which does not exist; "
                              "run 'lensgraph train digits --calibrate-only'")
    return path if path.is_file() else None


def _digits_bank(module, bank: dict[str, Any]):
    """The calibration's nearest-neighbour bank, recomputed from the weights and MNIST's training split."""
    from lensgraph.datasets.mnist import IDXError
    from lensgraph.training.calibrate_digits import feature_bank

    try:
        return feature_bank(module.eval(), int(bank["size"]), int(bank["seed"]))
    except (FileNotFoundError, IDXError) as exc:
        raise WeightsNotFound(f"the digits calibration has a distance rule, whose bank of {bank['size']} training "
                              f"digits comes from MNIST: set LENSGRAPH_ASSETS to the assets folder ({exc})") from exc


def _produce_digits(spec: ModelSpec, module, weights: Path | None, out: Path):
    """Digits: the efficient MC-dropout graph, with the calibrated reliability rule in the card's options."""
    from lensgraph.export.mc_dropout import export_mc_dropout
    from lensgraph.uncertainty.calibration import threshold_for_samples

    options: dict[str, Any] = {
        "mc_samples": int(spec.options.get("mc_samples", DIGITS_DEFAULT_SAMPLES)),
        "dropout_p": float(module.dropout_p),
        "calibrated": False,
        "uncertainty_score": None,
        "reliability_threshold": None,
        "thresholds": {},
        "energy_threshold": None,
        "distance_threshold": None,
    }
    bank = None
    calibration = _digits_calibration_file(spec, weights)
    if calibration is not None:  # checked before the export: a mismatch fails fast
        record = yaml.safe_load(calibration.read_text()) or {}
        weights_sha = sha256_file(weights) if weights is not None else None
        if record.get("weights_sha256") != weights_sha:
            raise WeightsError(f"{calibration} was calibrated for other weights (sha256 {record.get('weights_sha256')}, "
                               f"these are {weights_sha}); run 'lensgraph train digits --calibrate-only'")
        if abs(float(record.get("dropout_p", -1)) - float(module.dropout_p)) > 1e-9:
            raise WeightsError(f"{calibration} assumes dropout p={record.get('dropout_p')}, the model has {module.dropout_p}")
        thresholds = {int(k): v for k, v in (record.get("thresholds") or {}).items()}
        samples = int(spec.options.get("mc_samples", record.get("default_samples", DIGITS_DEFAULT_SAMPLES)))
        options.update(
            mc_samples=samples,
            calibrated=True,
            uncertainty_score=record["score"],
            target_accuracy=record.get("target_accuracy"),
            reliability_threshold=threshold_for_samples(thresholds, samples),
            thresholds=thresholds,
            energy_threshold=(record.get("energy") or {}).get("threshold"),
            distance_threshold=(record.get("distance") or {}).get("threshold"),
            calibration={
                "file": calibration.name,
                "sha256": sha256_file(calibration),
                "split": record.get("split"),
                "confidence": record.get("confidence"),
                "at_default_samples": (record.get("details") or {}).get(samples),
            },
        )
        if record.get("distance"):
            bank = _digits_bank(module, record["distance"]["bank"])
    report = export_mc_dropout(module, out, bank)
    report.settings["options"] = options
    return report


def _card(spec: ModelSpec, source: WeightSource, checksums: dict, report, print_: str, command: str) -> dict[str, Any]:
    """The model card: everything a user needs to trust (or distrust) what is served."""
    return {
        "name": spec.name,
        "version": spec.version,
        "task": spec.task,
        "description": spec.description,
        "architecture": spec.architecture or (f"{spec.model_file}:{spec.class_name}" if spec.model_file else "onnx"),
        "architecture_args": spec.architecture_args or spec.init_args,
        "weights": {
            "source": source.describe(),
            "sha256": checksums.get("weights"),
            "real": source.is_real and spec.weights_real,
            "note": "" if source.is_real and spec.weights_real else (
                "seeded random weights: predictions are meaningless" if not source.is_real
                else "declared not real in configs/models.yaml (weights_real: false)"),
        },
        "inputs": report.inputs,
        "outputs": report.outputs,
        "preprocessing": {
            "in_graph": report.settings.get("normalization_in_graph"),
            "resize_in_graph": report.settings.get("resize_in_graph", False),
            "layout": "NHWC uint8 RGB" if report.inputs[0]["shape"][-1] == 3 else "NHWC uint8 grayscale",
            **({"before_graph": report.settings["host_preprocessing"]} if "host_preprocessing" in report.settings else {}),
        },
        "labels": store.LABELS_FILE if spec.labels else None,
        "options": {**spec.options, **report.settings.get("options", {})},
        "serving": spec.serving.model_dump(exclude_none=True),
        "export": {k: v for k, v in report.settings.items()
                   if k not in ("normalization_in_graph", "host_preprocessing", "options")},
        "parity": {"max_abs_diff": report.parity_max_abs_diff, "tolerance": 1e-4, "inputs": report.parity_inputs},
        "build": {
            "command": command,
            "fingerprint": print_,
            "lensgraph": __version__,
            "built_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "spec": spec.model_dump(mode="json", exclude_defaults=True),
        },
    }


def replace_dir(new: Path, target: Path) -> None:
    """Move ``new`` into place as ``target`` whole (a failed build or import never leaves half a model)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.with_name(f".old-{target.name}")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)
