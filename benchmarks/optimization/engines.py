"""Section 6: the same EfficientNet-Lite0 in PyTorch eager, TorchScript, torch.compile and ONNX Runtime.

The torch module is built exactly as ``lensgraph models build`` builds the served one: the card's
architecture, its weight source resolved and sha256-checked, loaded strictly, wrapped in
``ClassifierServing`` with the card's in-graph normalisation; so all engines take the same uint8
NHWC batch and return softmax probabilities. torch.compile runs in a child process
(``python -m benchmarks.optimization.engines``) so that a compilation over the limit can be stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from benchmarks.optimization import inputs
from benchmarks.optimization.sections import Context, _image_runner
from benchmarks.optimization.sessions import session
from benchmarks.optimization.timing import Budget, latency_and_throughput
from lensgraph.repository.store import find_model

COMPILE_LIMIT_S = 120.0


def torch_classifier(repository: Path):
    """The served classifier as a torch module (uint8 NHWC in, probabilities and embedding out)."""
    from lensgraph.export.torch_models import instantiate, load_weights
    from lensgraph.export.wrappers import ClassifierServing
    from lensgraph.repository.weights import WeightSource, resolve

    card = find_model(repository, "classifier").card
    source = WeightSource.parse(card["weights"]["source"], card["weights"]["sha256"])
    module = instantiate(card["architecture"], card.get("architecture_args") or {}, None, None, {}, seed=source.seed)
    load_weights(module, resolve(source), source.describe())
    norm = card["preprocessing"]["in_graph"]
    return ClassifierServing(module.eval(), norm["mean"], norm["std"]).eval()


def _torch_runner(module, images: np.ndarray):
    import torch

    def run(batch: int):
        x = torch.from_numpy(inputs.tile(images, batch))

        def call():
            with torch.inference_mode():
                return module(x)

        return call

    return run


def _probabilities(module, batch: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return module(torch.from_numpy(batch))[0].numpy()


def _warnings_of(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn()
    return result, sorted({f"{w.category.__name__}: {w.message}" for w in caught})


def study(ctx: Context, compile_: bool = True) -> dict:
    import torch

    torch.set_num_threads(ctx.threads)
    photos = inputs.classifier_images(ctx.assets)
    check = inputs.tile(photos, 16)
    started = time.perf_counter()
    eager = torch_classifier(ctx.repository)
    build_s = time.perf_counter() - started
    reference = _probabilities(eager, check)
    rows = [{"engine": "PyTorch eager (inference_mode)", "setup_s": round(build_s, 2), "max_abs_prob_diff": 0.0,
             **latency_and_throughput(_torch_runner(eager, photos), ctx.budget)}]
    torch.set_num_threads(1)  # torch's OpenMP pool is the part most sensitive to a busy machine
    rows.append({"engine": "PyTorch eager, torch.set_num_threads(1)", "setup_s": 0.0, "max_abs_prob_diff": 0.0,
                 **latency_and_throughput(_torch_runner(eager, photos), ctx.budget)})
    torch.set_num_threads(ctx.threads)

    def trace():
        return torch.jit.trace(eager, torch.from_numpy(check[:1]), check_trace=False)

    started = time.perf_counter()
    traced, caught = _warnings_of(trace)
    rows.append({"engine": "TorchScript (torch.jit.trace)", "setup_s": round(time.perf_counter() - started, 2),
                 "warnings": caught, "max_abs_prob_diff": float(np.abs(_probabilities(traced, check) - reference).max()),
                 **latency_and_throughput(_torch_runner(traced, photos), ctx.budget)})

    started = time.perf_counter()
    sess = session(find_model(ctx.repository, "classifier").onnx_path, ctx.threads)
    ort_probs = sess.run(None, {"image": check})[0]
    rows.append({"engine": f"ONNX Runtime (served graph, intra-op {ctx.threads})",
                 "setup_s": round(time.perf_counter() - started, 2),
                 "max_abs_prob_diff": float(np.abs(ort_probs - reference).max()),
                 **latency_and_throughput(_image_runner(sess, photos), ctx.budget)})
    if compile_:
        rows.append(compiled_in_child(ctx))
    return {"torch_threads": torch.get_num_threads(), "ort_intra_op_threads": ctx.threads,
            "agreement_inputs": "16 uint8 crops (the assets' photos through the served transform), "
                                "max |probability difference| against eager",
            "rows": rows}


def compiled_in_child(ctx: Context) -> dict:
    """torch.compile in a child process, stopped when compiling and measuring outrun the limit."""
    b = ctx.budget
    limit = COMPILE_LIMIT_S + 60 + 2 * (b.warmup_s + b.measure_s) * 3
    command = [sys.executable, "-m", "benchmarks.optimization.engines", "--repository", str(ctx.repository),
               "--assets", str(ctx.assets), "--threads", str(ctx.threads),
               "--warmup", str(b.warmup_s), "--seconds", str(b.measure_s)]
    row = {"engine": "torch.compile (inductor, default mode)"}
    try:
        with tempfile.TemporaryDirectory() as cache:  # a cold compile: no kernels cached by an earlier run
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
            done = subprocess.run(command, capture_output=True, text=True, timeout=limit, env=env)
    except subprocess.TimeoutExpired:
        return {**row, "skipped": f"did not finish within {limit:.0f} s (compile limit {COMPILE_LIMIT_S:.0f} s "
                                  "plus loading and measuring): stopped"}
    if done.returncode != 0:
        return {**row, "skipped": f"failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}"}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["setup_s"] > COMPILE_LIMIT_S:
        result["note"] += f"; over the {COMPILE_LIMIT_S:.0f} s limit, so not an option here"
    return {**row, **result}


def _compile_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repository", type=Path, required=True)
    parser.add_argument("--assets", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    photos = inputs.classifier_images(args.assets)
    check = inputs.tile(photos, 16)
    eager = torch_classifier(args.repository)
    reference = _probabilities(eager, check)
    compiled = torch.compile(eager)
    started = time.perf_counter()
    _probabilities(compiled, check[:1])  # one compilation per input shape
    probs = _probabilities(compiled, check)
    setup_s = time.perf_counter() - started
    speed = latency_and_throughput(_torch_runner(compiled, photos), Budget(args.warmup, args.seconds))
    print(json.dumps({"setup_s": round(setup_s, 2), "max_abs_prob_diff": float(np.abs(probs - reference).max()),
                      "note": "setup s: compiling for batch 1 and batch 16 (cold inductor cache)", **speed}))


if __name__ == "__main__":
    _compile_main()
