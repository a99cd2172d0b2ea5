"""Sections 1, 2, 3 and 5 of the study: ONNX Runtime settings, batch size, and the uint8 transport."""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from benchmarks.optimization import inputs
from benchmarks.optimization.sessions import runtime_ops, session
from benchmarks.optimization.timing import Budget, latency_and_throughput, measure, parallel_throughput
from lensgraph.repository.store import find_model
from lensgraph.runtime.session import GRAPH_LEVELS

BATCHES = (1, 2, 4, 8, 16, 32, 64)
MC_SAMPLES = 30


@dataclass(frozen=True)
class Context:
    repository: Path
    assets: Path
    work: Path  # scratch folder for derived models (gitignored .bench/ or a temp dir)
    budget: Budget
    threads: int = 2
    creations: int = 5  # session creations timed per graph level
    quick: bool = False

    def model(self, name: str) -> Path:
        return find_model(self.repository, name).onnx_path


def _call(sess, feeds: dict[str, np.ndarray]):
    return lambda: sess.run(None, feeds)


def _image_runner(sess, images: np.ndarray):
    """``run(batch)`` for latency_and_throughput: a call on ``batch`` images tiled from ``images``."""
    return lambda batch: _call(sess, {"image": inputs.tile(images, batch)})


# -- 1. graph optimisation levels -------------------------------------------------------------------


def graph_levels(ctx: Context) -> list[dict]:
    rows = []
    models = {"classifier": inputs.classifier_images(ctx.assets), "face_detector": inputs.detector_images(ctx.assets)}
    for name, images in models.items():
        path = ctx.model(name)
        for level in GRAPH_LEVELS:
            created = []
            for _ in range(ctx.creations):
                t0 = time.perf_counter()
                sess = session(path, ctx.threads, level=level)
                created.append(time.perf_counter() - t0)
            ops = runtime_ops(path, level)
            rows.append({
                "model": name, "level": level,
                "create_ms": round(1e3 * float(np.median(created)), 1), "create_runs": len(created),
                "nodes": sum(ops.values()), "ops": ops,
                **latency_and_throughput(_image_runner(sess, images), ctx.budget),
            })
    return rows


# -- 2. threads ----------------------------------------------------------------------------------


THREAD_SETTINGS = (
    ("intra 1, inter 1, sequential", {"threads": 1}),
    ("intra 2, inter 1, sequential (as served)", {"threads": 2}),
    ("intra 1, inter 2, parallel", {"threads": 1, "inter": 2, "parallel": True}),
    ("intra 2, inter 2, parallel", {"threads": 2, "inter": 2, "parallel": True}),
    ("intra 2, inter 1, sequential, spinning on (ORT's default)", {"threads": 2, "spinning": True}),
)


def threads(ctx: Context) -> dict:
    path, images = ctx.model("classifier"), inputs.classifier_images(ctx.assets)
    settings = []
    for label, kwargs in THREAD_SETTINGS:
        direct = bool(kwargs.get("parallel") or kwargs.get("spinning"))
        settings.append({"setting": label, "via": "ort.SessionOptions" if direct else "SessionConfig/create_session",
                         **latency_and_throughput(_image_runner(session(path, **kwargs), images), ctx.budget)})
    layouts = (
        ("1 session x 2 threads, 1 caller", 1, 2),
        ("2 sessions x 1 thread, 2 Python threads", 2, 1),
        ("2 sessions x 2 threads, 2 Python threads (oversubscribed)", 2, 2),
    )
    replicas = []
    for label, sessions, intra in layouts:
        made = [session(path, intra) for _ in range(sessions)]
        for batch in (1, 16):
            feeds = {"image": inputs.tile(images, batch)}
            replicas.append({"layout": label, "sessions": sessions, "intra_op_threads": intra,
                             **parallel_throughput([_call(s, feeds) for s in made], batch, ctx.budget)})
    return {"settings": settings, "replicas": replicas}


# -- 3. batch size -------------------------------------------------------------------------------


def batch_sizes(ctx: Context) -> list[dict]:
    rows = []
    classifier = session(ctx.model("classifier"), ctx.threads)
    photos = inputs.classifier_images(ctx.assets)
    digits = session(ctx.model("digits"), ctx.threads)
    mnist, _ = inputs.mnist("val")
    for batch in BATCHES:
        cases = (
            ("classifier", classifier, {"image": inputs.tile(photos, batch)}),
            (f"digits T={MC_SAMPLES}", digits,
             inputs.digit_feeds(mnist[:batch], MC_SAMPLES, np.random.default_rng(batch))),
        )
        for model, sess, feeds in cases:
            result = measure(_call(sess, feeds), batch, ctx.budget)
            rows.append({"model": model, **result, "ms_per_image": round(result["median_ms"] / batch, 3)})
    return rows


# -- 5. uint8 transport vs float32 ---------------------------------------------------------------


def float_input_variant(src: Path, dst: Path) -> list[str]:
    """The same graph without its in-graph normalisation: everything before the first Conv that
    depends only on the uint8 input is cut off, and its output becomes a float32 NCHW input."""
    model = onnx.load(str(src))
    graph = model.graph
    first_conv = next(n for n in graph.node if n.op_type == "Conv")
    producer = {out: n for n in graph.node for out in n.output}
    prefix, todo = [], [first_conv.input[0]]
    while todo:
        node = producer.get(todo.pop())
        if node is not None and node not in prefix:
            prefix.append(node)
            todo.extend(node.input)
    cut = first_conv.input[0]
    kept = [n for n in graph.node if n not in prefix]
    used = {name for n in kept for name in n.input}
    old_input = graph.input[0]
    batch = old_input.type.tensor_type.shape.dim[0].dim_param or "batch"
    _, height, width, channels = (d.dim_value for d in old_input.type.tensor_type.shape.dim)
    new_input = onnx.helper.make_tensor_value_info(cut, onnx.TensorProto.FLOAT, [batch, channels, height, width])
    initializers = [t for t in graph.initializer if t.name in used]
    del graph.node[:], graph.input[:], graph.initializer[:]
    graph.node.extend(kept)
    graph.input.append(new_input)
    graph.initializer.extend(initializers)
    onnx.checker.check_model(model, full_check=True)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    return [n.op_type for n in reversed(prefix)]


def normalise(images: np.ndarray, mean: np.ndarray, inv_std: np.ndarray) -> np.ndarray:
    """What the graph does first, in numpy: uint8 NHWC -> float32 NCHW, (x - mean) / std."""
    return np.ascontiguousarray(((images.astype(np.float32) - mean) * inv_std).transpose(0, 3, 1, 2))


def transport(ctx: Context) -> dict:
    entry = find_model(ctx.repository, "classifier")
    norm = entry.card["preprocessing"]["in_graph"]
    mean, inv_std = np.float32(norm["mean"]), np.float32(1.0) / np.float32(norm["std"])
    photos = inputs.classifier_images(ctx.assets)
    u8 = inputs.tile(photos, 16)
    f32 = normalise(u8, mean, inv_std)
    result: dict = {
        "bytes_per_image": {"uint8 NHWC": int(u8[0].nbytes), "float32 NCHW": int(f32[0].nbytes)},
        "pickled_bytes_batch16": {"uint8 NHWC": len(pickle.dumps(u8, protocol=5)),
                                  "float32 NCHW": len(pickle.dumps(f32, protocol=5))},
        "pickle_roundtrip_batch16": {
            name: measure(lambda a=array: pickle.loads(pickle.dumps(a, protocol=5)), 16, ctx.budget)
            for name, array in (("uint8 NHWC", u8), ("float32 NCHW", f32))
        },
        "numpy_normalise": {f"batch{b}": measure(lambda b=b: normalise(u8[:b], mean, inv_std), b, ctx.budget)
                            for b in (1, 16)},
    }
    float_path = ctx.work / "classifier_float_input.onnx"
    removed = float_input_variant(entry.onnx_path, float_path)
    graph_u8, graph_f32 = session(entry.onnx_path, ctx.threads), session(float_path, ctx.threads)
    diff = np.abs(graph_u8.run(None, {"image": u8})[0] - graph_f32.run(None, {graph_f32.get_inputs()[0].name: f32})[0])
    float_name = graph_f32.get_inputs()[0].name
    result["in_graph"] = {
        "float_variant": f"the served graph with its first {len(removed)} nodes ({', '.join(removed)}) cut off "
                         f"and a float32 NCHW input in their place (onnx graph surgery, checked with onnx.checker)",
        "max_abs_prob_diff_vs_uint8_graph": float(diff.max()),
        "uint8 graph": latency_and_throughput(_image_runner(graph_u8, photos), ctx.budget),
        "float32 graph": latency_and_throughput(
            lambda b: _call(graph_f32, {float_name: normalise(inputs.tile(photos, b), mean, inv_std)}), ctx.budget),
    }
    return result
