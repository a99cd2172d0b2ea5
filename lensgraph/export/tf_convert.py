"""TensorFlow SavedModel -> a served ONNX artefact. Runs INSIDE .venv-tf only (``make tf-env``).

``lensgraph export --saved-model`` (lensgraph.export.saved_model) runs this file as a script with the
TensorFlow environment's interpreter, in isolated mode (``python -I``): the main process and the
runtime image never import TensorFlow. It imports nothing from lensgraph, only TensorFlow, tf2onnx,
onnx, ONNX Runtime and numpy, so it needs no install of this project in that environment.

What it does, for one signature of the SavedModel:

1. checks the folder is a SavedModel and that the signature exists (listing the ones there are);
2. converts the signature with tf2onnx (``tf_loader.from_saved_model`` + tf2onnx's conversion, the
   same two steps as ``python -m tf2onnx.convert --saved-model DIR --signature_def NAME``) at opset 18,
   the project's export opset; a TensorFlow op tf2onnx cannot map is named in the error;
3. puts the project's serving input in front (uint8 NHWC ``image``, ``(x - mean) / std`` and the
   layout change to what the signature takes, inside the graph) and names the output
   (``probabilities`` for digits; a softmax is appended when the signature returns logits);
4. measures parity, TensorFlow (the signature itself) against ONNX Runtime on the final artefact, on
   seeded random images and on real MNIST digits when given; more than 1e-4 max |diff| is refused.

It writes the ONNX file and a JSON report: ``{"ok": true, ...}`` or ``{"ok": false, "error": "<one line>"}``.
Exit status 0, or 2 for an error it explains (anything else is a crash: the caller shows the log).
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

try:
    import numpy as np
except ImportError:  # a Python without the TensorFlow environment: main() says so
    np = None

OPSET = 18
PARITY_ATOL = 1e-4
INPUT_NAME = "image"
DIGITS_OUTPUT = "probabilities"
# ONNX ops that draw random numbers: a serving graph with any is not deterministic.
RANDOM_OPS = {"RandomUniform", "RandomUniformLike", "RandomNormal", "RandomNormalLike", "Bernoulli", "Multinomial"}


class ConvertError(Exception):
    """An error the user can act on; its message is one line."""


def one_line(text: object, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


# ------------------------------------------------------------------------------------------------
# SavedModel and signature


def load_signature(saved_model: Path, signature: str):
    import tensorflow as tf

    if not saved_model.is_dir() or not tf.saved_model.contains_saved_model(str(saved_model)):
        raise ConvertError(f"{saved_model} is not a TensorFlow SavedModel (no saved_model.pb in it)")
    try:
        imported = tf.saved_model.load(str(saved_model))
    except Exception as exc:  # a damaged or foreign file: say what TensorFlow said, in one line
        raise ConvertError(f"TensorFlow cannot load the SavedModel {saved_model}: {one_line(exc)}") from exc
    names = sorted(imported.signatures.keys())
    if signature not in names:
        if not names:
            raise ConvertError(f"the SavedModel {saved_model} has no signatures; save it with one "
                               "(Keras: model.export(DIR); TensorFlow: tf.saved_model.save(obj, DIR, signatures=...))")
        raise ConvertError(f"the SavedModel has no signature {signature!r}; it has: {', '.join(names)} (--signature NAME)")
    return imported, imported.signatures[signature]


def describe_signature(function) -> tuple[tuple[str, object], dict[str, object]]:
    """((input key, TensorSpec), {output key: TensorSpec}) of a signature with one image input."""
    args, kwargs = function.structured_input_signature
    inputs = dict(kwargs or {})
    if args:
        inputs.update({f"arg_{i}": spec for i, spec in enumerate(args)})
    if len(inputs) != 1:
        raise ConvertError(f"the signature takes {len(inputs)} inputs ({', '.join(sorted(inputs)) or 'none'}); "
                           "lensgraph serves models of one image input")
    outputs = function.structured_outputs
    if not isinstance(outputs, dict):
        outputs = {f"output_{i}": o for i, o in enumerate(outputs if isinstance(outputs, (list, tuple)) else [outputs])}
    return next(iter(inputs.items())), dict(outputs)


def image_layout(spec) -> dict:
    """How the signature's input holds an image: its rank, H, W, C and where the channels are."""
    import tensorflow as tf

    if spec.dtype != tf.float32:
        raise ConvertError(f"the signature's input {spec.name!r} is {spec.dtype.name}; lensgraph imports float32 image inputs")
    dims = list(spec.shape.as_list()) if spec.shape.rank is not None else None
    if dims is None or len(dims) not in (3, 4):
        raise ConvertError(f"the signature's input {spec.name!r} has shape {dims}; an image input is [N, H, W] or [N, H, W, C]")
    if len(dims) == 3:
        layout = {"rank": 3, "height": dims[1], "width": dims[2], "channels": 1, "order": "NHW"}
    elif dims[3] in (1, 3):
        layout = {"rank": 4, "height": dims[1], "width": dims[2], "channels": dims[3], "order": "NHWC"}
    elif dims[1] in (1, 3):
        layout = {"rank": 4, "height": dims[2], "width": dims[3], "channels": dims[1], "order": "NCHW"}
    else:
        raise ConvertError(f"the signature's input {spec.name!r} has shape {dims}: no channel axis of 1 or 3")
    if not isinstance(layout["height"], int) or not isinstance(layout["width"], int):
        raise ConvertError(f"the signature's input {spec.name!r} has shape {dims}; lensgraph needs a fixed height and width")
    layout["shape"] = dims
    return layout


# ------------------------------------------------------------------------------------------------
# Conversion


class _Unsupported(logging.Handler):
    """Collects the TensorFlow ops tf2onnx reports it cannot map (it logs them and carries on)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.ops: collections.Counter[str] = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "Tensorflow op [%s: %s] is not supported" and len(record.args or ()) == 2:
            self.ops[str(record.args[1])] += 1


def _quiet_tf2onnx() -> None:
    for name in ("tf2onnx", "tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger("tf2onnx").propagate = False


def convert(saved_model: Path, signature: str, opset: int):
    """tf2onnx's own saved-model path for one signature; returns the ONNX ModelProto."""
    import onnx
    import tensorflow as tf
    from tf2onnx import convert as tf2onnx_convert
    from tf2onnx import tf_loader

    _quiet_tf2onnx()
    unsupported = _Unsupported()
    logging.getLogger("tf2onnx").addHandler(unsupported)
    try:
        graph_def, inputs, outputs, tables, renames = tf_loader.from_saved_model(
            str(saved_model), None, None, None, [signature], None, False,
            return_initialized_tables=True, return_tensors_to_rename=True)
        with tf.device("/cpu:0"):
            model, _ = tf2onnx_convert._convert_common(  # what `python -m tf2onnx.convert --saved-model` calls
                graph_def, name=str(saved_model), opset=opset, input_names=inputs, output_names=outputs,
                tensors_to_rename=renames, initialized_tables=tables)
    except ConvertError:
        raise
    except Exception as exc:
        if unsupported.ops:
            raise ConvertError(_unsupported_message(unsupported.ops)) from exc
        raise ConvertError(f"tf2onnx could not convert signature {signature!r}: {one_line(exc)}") from exc
    finally:
        logging.getLogger("tf2onnx").removeHandler(unsupported)
    # tf2onnx leaves an op it cannot map in the graph under its TensorFlow name; no runtime has it.
    leftover = collections.Counter(n.op_type for n in _all_nodes(model.graph)
                                   if n.domain in ("", "ai.onnx") and not onnx.defs.has(n.op_type))
    if unsupported.ops or leftover:
        raise ConvertError(_unsupported_message(unsupported.ops or leftover))
    return model


def _unsupported_message(ops: collections.Counter) -> str:
    listed = ", ".join(f"{op} ({n} node{'s' if n > 1 else ''})" for op, n in sorted(ops.items()))
    return (f"tf2onnx {_tf2onnx_version()} cannot convert the TensorFlow op{'s' if len(ops) > 1 else ''} {listed}; "
            "replace the op in the model or export it without it")


def _tf2onnx_version() -> str:
    import tf2onnx

    return tf2onnx.__version__


def _all_nodes(graph):
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.g is not None and attribute.g.node:
                yield from _all_nodes(attribute.g)
            for sub in attribute.graphs:
                yield from _all_nodes(sub)


# ------------------------------------------------------------------------------------------------
# Serving adapter: uint8 NHWC ``image`` in, named outputs


def adapt(model, layout: dict, mean: list[float], std: list[float], output_keys: list[str],
          task: str, softmax: bool):
    """Prepend the uint8 NHWC input with normalisation and layout change; name (and softmax) the outputs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    # Names the adapter adds must be new: a signature whose input is already called "image" keeps it under another name.
    for taken in (INPUT_NAME, DIGITS_OUTPUT):
        _rename_tensor(graph, taken, "tf_" + taken)
    initializers = {i.name for i in graph.initializer}
    (original,) = [i for i in graph.input if i.name not in initializers]
    channels, height, width = layout["channels"], layout["height"], layout["width"]
    if len(mean) == 1 and channels > 1:
        mean, std = mean * channels, std * channels
    if len(mean) != channels or len(std) != channels:
        raise ConvertError(f"--mean/--std need 1 or {channels} values for a {channels}-channel input")
    prefix = "lensgraph_pre_"
    mean_t = numpy_helper.from_array(np.asarray(mean, np.float32).reshape(1, 1, 1, channels), prefix + "mean")
    scale_t = numpy_helper.from_array((1.0 / np.asarray(std, np.float32)).reshape(1, 1, 1, channels), prefix + "scale")
    nodes = [
        helper.make_node("Cast", [INPUT_NAME], [prefix + "f32"], to=TensorProto.FLOAT, name=prefix + "cast"),
        helper.make_node("Sub", [prefix + "f32", prefix + "mean"], [prefix + "centred"], name=prefix + "sub"),
    ]
    last = prefix + "scaled"
    nodes.append(helper.make_node("Mul", [prefix + "centred", prefix + "scale"], [last], name=prefix + "scale"))
    extra = [mean_t, scale_t]
    if layout["order"] == "NCHW":
        nodes.append(helper.make_node("Transpose", [last], [prefix + "nchw"], perm=[0, 3, 1, 2], name=prefix + "nchw"))
        last = prefix + "nchw"
    elif layout["order"] == "NHW":
        extra.append(numpy_helper.from_array(np.asarray([3], np.int64), prefix + "channel_axis"))
        nodes.append(helper.make_node("Squeeze", [last, prefix + "channel_axis"], [prefix + "nhw"], name=prefix + "nhw"))
        last = prefix + "nhw"
    nodes.append(helper.make_node("Identity", [last], [original.name], name=prefix + "to_model"))
    graph.initializer.extend(extra)
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + existing)
    new_input = helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["batch", height, width, channels])
    del graph.input[:]
    graph.input.extend([new_input])

    old_outputs = list(graph.output)
    if len(old_outputs) != len(output_keys):
        raise ConvertError(f"tf2onnx made {len(old_outputs)} outputs for the signature's {len(output_keys)} "
                           f"({', '.join(output_keys)})")
    by_name = {o.name: o for o in old_outputs}  # tf2onnx names the outputs by the signature's keys
    if len(old_outputs) == len(output_keys) and all(k in by_name for k in output_keys):
        old_outputs = [by_name[k] for k in output_keys]  # the order the parity check reads TensorFlow's in
    if task == "digits":
        (produced,) = old_outputs
        op = "Softmax" if softmax else "Identity"
        kwargs = {"axis": -1} if softmax else {}
        graph.node.append(helper.make_node(op, [produced.name], [DIGITS_OUTPUT], name="lensgraph_post_" + op.lower(), **kwargs))
        names = [DIGITS_OUTPUT]
    else:
        names = [_clean(k) for k in output_keys]
        for produced, name in zip(old_outputs, names):
            if produced.name != name:
                graph.node.append(helper.make_node("Identity", [produced.name], [name], name="lensgraph_post_" + name))
    del graph.output[:]
    for produced, name in zip(old_outputs, names):
        dims = produced.type.tensor_type.shape.dim
        shape = ["batch"] + [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims[1:]]
        graph.output.append(helper.make_tensor_value_info(name, produced.type.tensor_type.elem_type, shape))
    del graph.value_info[:]
    model.producer_name = "lensgraph (tf2onnx)"
    onnx.checker.check_model(model, full_check=True)
    return model


def _rename_tensor(graph, old: str, new: str) -> None:
    """Rename a tensor everywhere it appears (graph inputs, outputs, initializers, node inputs and outputs)."""
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        if value.name == old:
            value.name = new
    for tensor in graph.initializer:
        if tensor.name == old:
            tensor.name = new
    for node in _all_nodes(graph):
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]


def _clean(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in name) or "output"


# ------------------------------------------------------------------------------------------------
# Parity


def to_signature_input(images: np.ndarray, layout: dict, mean: list[float], std: list[float]) -> np.ndarray:
    """uint8 NHWC -> what the signature takes, with the graph's float32 arithmetic."""
    channels = layout["channels"]
    m = np.asarray(mean * channels if len(mean) == 1 else mean, np.float32).reshape(1, 1, 1, channels)
    s = (1.0 / np.asarray(std * channels if len(std) == 1 else std, np.float32)).reshape(1, 1, 1, channels)
    x = (images.astype(np.float32) - m) * s
    if layout["order"] == "NCHW":
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    if layout["order"] == "NHW":
        return x[..., 0]
    return x


def tf_outputs(function, key: str, x: np.ndarray, output_keys: list[str], chunk: int = 256) -> list[np.ndarray]:
    import tensorflow as tf

    parts: list[list[np.ndarray]] = [[] for _ in output_keys]
    for i in range(0, len(x), chunk):
        result = function(**{key: tf.constant(x[i : i + chunk])})
        for j, name in enumerate(output_keys):
            parts[j].append(np.asarray(result[name].numpy()))
    return [np.concatenate(p) for p in parts]


def softmax(x: np.ndarray) -> np.ndarray:
    z = x.astype(np.float64) - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def is_distribution(x: np.ndarray) -> bool:
    return bool(x.ndim == 2 and np.all(x >= -1e-6) and np.all(x <= 1 + 1e-6) and np.allclose(x.sum(axis=1), 1.0, atol=1e-3))


def run(args: argparse.Namespace) -> dict:
    import onnx
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx

    started = time.perf_counter()
    saved_model = Path(args.saved_model).resolve()
    _, function = load_signature(saved_model, args.signature)
    (input_key, input_spec), output_specs = describe_signature(function)
    layout = image_layout(input_spec)
    output_keys = sorted(output_specs)
    if args.task == "digits":
        if (layout["height"], layout["width"], layout["channels"]) != (28, 28, 1):
            raise ConvertError(f"a digits model takes 28x28 grayscale images; the signature's input is {layout['shape']}")
        if len(output_keys) != 1:
            raise ConvertError(f"a digits model has one output (10 scores); the signature has {', '.join(output_keys)}")
        out_shape = output_specs[output_keys[0]].shape.as_list()
        if len(out_shape) != 2 or out_shape[1] != 10:
            raise ConvertError(f"a digits model outputs [N, 10]; the signature's {output_keys[0]!r} is {out_shape}")

    mean, std = list(args.mean), list(args.std)
    rng = np.random.default_rng(0)
    random_images = [rng.integers(0, 256, size=(n, layout["height"], layout["width"], layout["channels"]), dtype=np.uint8)
                     for n in (1, 3, 16)]
    digits = labels = None
    if args.digits:
        with np.load(args.digits) as data:
            digits, labels = data["images"], data["labels"]
        if args.task != "digits":
            digits = labels = None  # MNIST digits fit digits models only

    # Does the signature return probabilities or logits? Measured on what it will see.
    probe = np.concatenate([random_images[2]] + ([digits[:256, ..., None]] if digits is not None else []))
    probe_out = tf_outputs(function, input_key, to_signature_input(probe, layout, mean, std), output_keys)
    add_softmax = args.task == "digits" and not is_distribution(probe_out[0])

    model = convert(saved_model, args.signature, args.opset)
    model = adapt(model, layout, mean, std, output_keys, args.task, add_softmax)
    random_ops = sorted({n.op_type for n in _all_nodes(model.graph) if n.op_type in RANDOM_OPS})
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(out), options, providers=["CPUExecutionProvider"])

    def reference(images: np.ndarray) -> list[np.ndarray]:
        outs = tf_outputs(function, input_key, to_signature_input(images, layout, mean, std), output_keys)
        return [softmax(outs[0])] if add_softmax else outs

    worst = 0.0
    checked = []
    for images in random_images:
        expected, actual = reference(images), session.run(None, {INPUT_NAME: images})
        worst = max(worst, max(float(np.max(np.abs(e.astype(np.float64) - a))) for e, a in zip(expected, actual)))
    checked.append("random uint8 images (numpy seed 0) at batch sizes " + ", ".join(str(len(i)) for i in random_images))
    accuracy = None
    if digits is not None:
        images = digits[..., None]
        expected = reference(images)
        actual = np.concatenate([session.run(None, {INPUT_NAME: images[i : i + 250]})[0] for i in range(0, len(images), 250)])
        worst = max(worst, float(np.max(np.abs(expected[0].astype(np.float64) - actual))))
        checked.append(f"{len(images)} MNIST test digits")
        accuracy = {
            "digits": int(len(images)),
            "split": "MNIST test, the first digits (parity and this figure only; never used to calibrate)",
            "onnx": round(float(np.mean(actual.argmax(axis=1) == labels)), 6),
            "tensorflow": round(float(np.mean(expected[0].argmax(axis=1) == labels)), 6),
            "same_digit": round(float(np.mean(actual.argmax(axis=1) == expected[0].argmax(axis=1))), 6),
        }
    if not worst <= PARITY_ATOL:
        raise ConvertError(f"ONNX Runtime differs from TensorFlow by {worst:.3g} (> {PARITY_ATOL}) on {'; '.join(checked)}")

    def io(values) -> list[dict]:
        names = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.INT64: "int64"}
        return [{"name": v.name, "dtype": names.get(v.type.tensor_type.elem_type, str(v.type.tensor_type.elem_type)),
                 "shape": [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]} for v in values]

    return {
        "ok": True,
        "inputs": io(model.graph.input),
        "outputs": io(model.graph.output),
        "parity": {"max_abs_diff": worst, "tolerance": PARITY_ATOL,
                   "inputs": "; ".join(checked) + ": TensorFlow (the signature) vs ONNX Runtime (the artefact)"},
        "accuracy": accuracy,
        "signature": {
            "name": args.signature,
            "input": {"key": input_key, "shape": layout["shape"], "dtype": "float32", "layout": layout["order"]},
            "outputs": {k: {"shape": output_specs[k].shape.as_list(), "dtype": output_specs[k].dtype.name} for k in output_keys},
        },
        "softmax_in_graph": add_softmax,
        "random_ops": random_ops,
        "versions": {"tensorflow": tf.__version__, "tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__,
                     "onnxruntime": ort.__version__, "python": sys.version.split()[0]},
        "opset": args.opset,
        "seconds": round(time.perf_counter() - started, 2),
    }


def _missing_packages() -> list[str]:
    import importlib.util

    return [name for name in ("numpy", "tensorflow", "tf2onnx", "onnx", "onnxruntime")
            if importlib.util.find_spec(name) is None]


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saved-model", required=True)
    parser.add_argument("--signature", default="serving_default")
    parser.add_argument("--task", choices=("digits", "generic"), default="generic")
    parser.add_argument("--mean", type=_floats, default=[0.0], help="pixel units: the signature gets (x - mean) / std")
    parser.add_argument("--std", type=_floats, default=[255.0])
    parser.add_argument("--opset", type=int, default=OPSET)
    parser.add_argument("--digits", help="npz with uint8 images [N, 28, 28] and labels [N] (MNIST test digits)")
    parser.add_argument("--output", required=True, help="the ONNX file to write")
    parser.add_argument("--report", required=True, help="the JSON report to write")
    args = parser.parse_args(argv)
    try:
        missing = _missing_packages()
        if missing:
            raise ConvertError(f"{sys.executable} has no {', '.join(missing)}: it is not the TensorFlow environment; "
                               "create that with `make tf-env` (or set $LENSGRAPH_TF_PYTHON to its python)")
        report = run(args)
        status = 0
    except ConvertError as exc:
        report, status = {"ok": False, "error": one_line(exc, 600)}, 2
    Path(args.report).write_text(json.dumps(report, indent=1))
    return status


if __name__ == "__main__":
    sys.exit(main())
