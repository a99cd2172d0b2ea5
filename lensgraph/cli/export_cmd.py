"""``lensgraph export``: one model to ONNX (plus its card), outside the repository.

For a user's own network: ``lensgraph export --model-file model.py --class UNet
--weights simple_unet.pth --input-shape 1,96,96 --output unet/``. Also takes our architectures
(``--architecture resnet18``), existing ONNX files (``--onnx detector.onnx --mean ... --std ...``) and
TensorFlow SavedModels (``--saved-model mnist_model --task digits --repository model_repository
--calibrate digits``: converted in .venv-tf, made by ``make tf-env``; this process never imports TensorFlow).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from lensgraph.repository.spec import ModelSpec


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export one model to ONNX with its card", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--architecture", help="a lensgraph architecture (see 'lensgraph export --list')")
    src.add_argument("--model-file", help="a Python file defining your model class")
    src.add_argument("--onnx", help="an existing ONNX file to validate and adapt")
    src.add_argument("--saved-model", metavar="DIR",
                     help="a TensorFlow SavedModel folder, converted with tf2onnx in .venv-tf (make tf-env)")
    src.add_argument("--list", action="store_true", help="list the built-in architectures")
    p.add_argument("--class", dest="class_name", help="class name inside --model-file")
    p.add_argument("--init-args", default="{}", help="JSON keyword arguments for the class constructor")
    p.add_argument("--weights", help="state dict: a path, assets:..., https://... (with --sha256), or random:SEED")
    p.add_argument("--sha256", help="expected sha256 (or a prefix of 8+ hex digits) of the weights")
    p.add_argument("--task", default=None, help="classification | landmark_heatmaps | digits | landmarks | face_detection | generic")
    p.add_argument("--input-shape", type=_ints, help="C,H,W of one image, e.g. 1,96,96")
    p.add_argument("--mean", type=_floats, help="per-channel mean in 0..255 pixel units, baked into the graph")
    p.add_argument("--std", type=_floats, help="per-channel std in 0..255 pixel units, baked into the graph")
    p.add_argument("--bake-resize", action="store_true", help="classifiers: resize any HxW inside the graph")
    p.add_argument("--labels", help="labels file to place beside the model")
    p.add_argument("--output", "--out", dest="output", default=None,
                   help="output folder (model.onnx + model.yaml; default: exported)")
    sm = p.add_argument_group("--saved-model", "TensorFlow SavedModels (docs/models.md, 'Import a TensorFlow SavedModel')")
    sm.add_argument("--signature", default="serving_default", help="the signature to convert (default serving_default)")
    sm.add_argument("--name", help="model name in the repository (default: the SavedModel folder's name)")
    sm.add_argument("--repository", metavar="ROOT",
                    help="write <ROOT>/<name>/<version>/ (the model repository layout) instead of --output")
    sm.add_argument("--version", type=int, help="repository version (default: one above the newest there; "
                                                   "an existing version is replaced)")
    sm.add_argument("--calibrate", choices=("digits",),
                    help="digits: calibrate 'reliable' on the MNIST validation split into the card")
    sm.add_argument("--target-accuracy", type=float, default=None,
                    help="accuracy among reliable answers the calibration aims for (default 0.997, as lensgraph train digits)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from lensgraph.architectures import ARCHITECTURES
    from lensgraph.repository.build import resolve_spec_inputs, write_artifact
    from lensgraph.repository.fingerprint import fingerprint

    if args.list:
        for name, info in ARCHITECTURES.items():
            print(f"{name:<20} {info.kind:<18} input {tuple(info.input_shape)}  {info.description}")
        return 0
    if args.saved_model:
        return run_saved_model(args)
    for option in ("repository", "version", "calibrate", "name", "target_accuracy"):
        if getattr(args, option) is not None:
            raise SystemExit(f"--{option.replace('_', '-')} applies to --saved-model only")
    args.output = args.output or "exported"
    task = args.task or (_default_task(args.architecture) if args.architecture else "generic")
    fields: dict = {"name": Path(args.output).name or "model", "task": task, "bake_resize": args.bake_resize}
    if args.architecture:
        fields["architecture"] = args.architecture
    if args.model_file:
        fields.update(model_file=str(Path(args.model_file).resolve()), class_name=args.class_name,
                      init_args=json.loads(args.init_args))
    if args.onnx:
        fields["onnx"] = str(Path(args.onnx).resolve())
    else:
        fields["weights"] = args.weights
    for key in ("sha256", "labels"):
        if getattr(args, key):
            fields[key] = getattr(args, key)
    if args.input_shape:
        fields["input_shape"] = args.input_shape
    if args.mean or args.std:
        fields["input_normalization"] = {"mean": args.mean or [0.0], "std": args.std or [255.0]}
    spec = ModelSpec.model_validate(fields)
    source, weights, labels, checksums = resolve_spec_inputs(spec, Path.cwd())
    out = Path(args.output).resolve()
    command = "lensgraph " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    card = write_artifact(spec, source, weights, labels, checksums, out,
                          fingerprint(spec.model_dump(mode="json"), checksums), command)
    print(f"wrote {out / 'model.onnx'} and {out / 'model.yaml'}")
    for io in ("inputs", "outputs"):
        for spec_ in card[io]:
            print(f"  {io[:-1]:<6} {spec_['name']:<14} {spec_['dtype']:<8} {spec_['shape']}")
    print(f"  parity max |onnx - torch| = {card['parity']['max_abs_diff']:.2e} (tolerance 1e-4)")
    if not card["weights"]["real"]:
        print("  note: random weights, predictions are meaningless")
    return 0


def _default_task(architecture: str) -> str:
    from lensgraph.architectures import ARCHITECTURES

    info = ARCHITECTURES.get(architecture)
    if info is None:
        raise SystemExit(f"unknown architecture {architecture!r}; known: {sorted(ARCHITECTURES)}")
    return {"classifier": "classification", "heatmap_landmarks": "landmark_heatmaps", "digits": "digits"}[info.kind]


def run_saved_model(args: argparse.Namespace) -> int:
    """``--saved-model DIR``: convert in the TensorFlow environment, check, calibrate, write card and folder."""
    from lensgraph.export.saved_model import SavedModelError, default_name, import_saved_model, next_version

    saved_model = Path(args.saved_model)
    name = args.name or default_name(saved_model)
    if not name.replace("_", "").replace("-", "").isalnum():
        raise SavedModelError(f"--name {name!r} may only hold letters, digits, '-' and '_'")
    task = args.task or "generic"
    if args.repository and args.output:
        raise SavedModelError("give --repository ROOT or --output DIR, not both")
    if args.repository:
        root = Path(args.repository).expanduser().resolve()
        version = args.version or next_version(root, name)
        target = root / name / str(version)
    else:
        if args.version is not None:
            raise SavedModelError("--version applies to --repository")
        target, version = Path(args.output or "exported").expanduser().resolve(), 1
    command = "lensgraph " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    card = import_saved_model(saved_model, target, name, version, signature=args.signature, task=task,
                              mean=args.mean, std=args.std, calibrate=args.calibrate,
                              target_accuracy=args.target_accuracy, command=command,
                              replace=bool(args.repository))
    print(f"wrote {target / 'model.onnx'} and {target / 'model.yaml'}")
    for io in ("inputs", "outputs"):
        for spec_ in card[io]:
            print(f"  {io[:-1]:<6} {spec_['name']:<14} {spec_['dtype']:<8} {spec_['shape']}")
    print(f"  parity max |onnx - tensorflow| = {card['parity']['max_abs_diff']:.2e} (tolerance 1e-4) on "
          f"{card['parity']['inputs'].split(':')[0]}")
    if card.get("accuracy"):
        acc = card["accuracy"]
        print(f"  accuracy on {acc['digits']} MNIST test digits: {acc['onnx']:.2%} (tensorflow {acc['tensorflow']:.2%})")
    options = card.get("options") or {}
    if task == "digits":
        print("  uncertainty: deterministic (no dropout in the serving graph), samples = 1")
        at = (options.get("calibration") or {}).get("at_default_samples") or {}
        if options.get("calibrated"):
            print(f"  reliable when {options['uncertainty_score']} <= {options['reliability_threshold']:.4g} "
                  f"(target {options['target_accuracy']:.2%}; held-out coverage {at.get('coverage', 0):.2%}, "
                  f"accuracy {at.get('accuracy_accepted') or 0:.2%})")
        elif args.calibrate:
            print("  calibration: no threshold reaches the target on held-out digits: every answer is reliable: false")
        else:
            print("  not calibrated: every answer is reliable: false (add --calibrate digits)")
    if args.repository and task == "digits":
        print(f"  serve it as the digits model: args: {{models: {{digits: {name}}}}} in serve_config.yaml (docs/models.md)")
    return 0
