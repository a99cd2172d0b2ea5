"""Section 4: INT8 quantisation of the classifier and the digits model, speed and accuracy against fp32.

Calibration never sees what accuracy is measured on: the classifier calibrates on random crops
with seed 1 and is compared on crops with seed 2 (the same seven photos: say so when reading the
numbers) and on the two sample photos; digits calibrate on the held-out MNIST validation split
(the last 5,000 training images) and are scored on the MNIST test set.
"""

from __future__ import annotations

import traceback
from pathlib import Path

import numpy as np

from benchmarks.optimization import inputs
from benchmarks.optimization.quantize import (
    classifier_probabilities,
    compare_classifier,
    digit_probabilities,
    quantize_dynamic_model,
    quantize_static_model,
)
from benchmarks.optimization.sections import MC_SAMPLES, Context, _call, _image_runner
from benchmarks.optimization.sessions import runtime_ops, session
from benchmarks.optimization.timing import latency_and_throughput
from lensgraph.postprocess.classification import load_labels
from lensgraph.repository.store import find_model
from lensgraph.uncertainty.calibration import threshold_for_samples
from lensgraph.uncertainty.mc_dropout import summarize

MC_SEED = 2024


def _variants(src: Path, work: Path, name: str, static_feeds: list[dict]) -> dict[str, dict]:
    """fp32 and the int8 files; a variant that fails to quantise carries its error."""
    out: dict[str, dict] = {"fp32": {"method": "the served model", "path": str(src), "bytes": src.stat().st_size}}
    jobs = {
        "dynamic QInt8": lambda: quantize_dynamic_model(src, work / f"{name}_dynamic_qint8.onnx", "QInt8"),
        "dynamic QUInt8": lambda: quantize_dynamic_model(src, work / f"{name}_dynamic_quint8.onnx", "QUInt8"),
        "static QDQ U8S8": lambda: quantize_static_model(src, work / f"{name}_static_u8s8.onnx", static_feeds),
        "static QDQ U8S8 reduce_range": lambda: quantize_static_model(
            src, work / f"{name}_static_u8s8_rr.onnx", static_feeds, reduce_range=True),
        "static QDQ U8U8": lambda: quantize_static_model(
            src, work / f"{name}_static_u8u8.onnx", static_feeds, weight_type="QUInt8"),
    }
    for label, job in jobs.items():
        try:
            out[label] = job()
        except Exception as exc:  # noqa: BLE001 - reported in the results
            out[label] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=3)}
    return out


def _load(variant: dict, ctx: Context):
    """The variant's session and its runtime ops, or None with the error recorded in ``variant``."""
    if "error" in variant:
        return None
    try:
        sess = session(Path(variant["path"]), ctx.threads)
        variant["runtime_ops"] = runtime_ops(Path(variant["path"]))
        return sess
    except Exception as exc:  # noqa: BLE001
        variant["error"] = f"failed to load: {type(exc).__name__}: {exc}"
        return None


def classifier(ctx: Context) -> dict:
    entry = find_model(ctx.repository, "classifier")
    labels = load_labels(entry.labels_path)
    count = 24 if ctx.quick else 96
    calib, calib_names = inputs.random_crops(ctx.assets, count, seed=1)
    feeds = [{"image": calib[i : i + 8]} for i in range(0, count, 8)]
    crops, _ = inputs.random_crops(ctx.assets, 48 if ctx.quick else 200, seed=2)
    samples = inputs.sample_photos(ctx.assets)
    sample_batch = np.stack([img for _, img in samples])
    photos = inputs.classifier_images(ctx.assets)
    variants = _variants(entry.onnx_path, ctx.work, "classifier", feeds)
    reference = None
    for label, variant in variants.items():
        sess = _load(variant, ctx)
        if sess is None:
            continue
        try:
            on_crops = classifier_probabilities(sess, crops)
            on_samples = classifier_probabilities(sess, sample_batch)
            if reference is None:
                reference = (on_crops, on_samples)
            variant["samples"] = [
                {"photo": name, "top1": labels[int(p.argmax())], "probability": round(float(p.max()), 4),
                 "max_abs_prob_diff": round(float(np.abs(p - ref).max()), 4)}
                for (name, _), p, ref in zip(samples, on_samples, reference[1])
            ]
            variant["crops_vs_fp32"] = compare_classifier(reference[0], on_crops)
            variant["speed"] = latency_and_throughput(_image_runner(sess, photos), ctx.budget)
        except Exception as exc:  # noqa: BLE001
            variant["error"] = f"failed to run: {type(exc).__name__}: {exc}"
    photos_used = sorted({n.split("@")[0] for n in calib_names})
    return {
        "calibration": f"{count} random square crops (seed 1; side 30/50/70/100% of the shorter side, uniform "
                       f"position, half mirrored, resized to 224) of the {len(photos_used)} photos "
                       f"{', '.join(photos_used)}, in batches of 8",
        "evaluation": f"{len(crops)} crops drawn the same way with seed 2 (same photos, other crops), and the two "
                      "sample photos through the served transform",
        "variants": variants,
    }


def digits(ctx: Context) -> dict:
    entry = find_model(ctx.repository, "digits")
    options = entry.card.get("options") or {}
    score = options.get("uncertainty_score") or "predictive_entropy"
    threshold = threshold_for_samples({int(k): v for k, v in (options.get("thresholds") or {}).items()}, MC_SAMPLES)
    val, _ = inputs.mnist("val")
    calib = val[:500]
    rng = np.random.default_rng(1)
    feeds = [inputs.digit_feeds(calib[i : i + 50], 1, None) for i in range(0, 250, 50)]
    feeds += [inputs.digit_feeds(calib[i : i + 50], 4, rng) for i in range(250, 500, 50)]
    test, labels = inputs.mnist("test")
    if ctx.quick:
        test, labels = test[:2000], labels[:2000]
    timing_images = val[:64]
    variants = _variants(entry.onnx_path, ctx.work, "digits", feeds)
    reference = None
    for label, variant in variants.items():
        sess = _load(variant, ctx)
        if sess is None:
            continue
        try:
            det = digit_probabilities(sess, test)[0]
            mc = summarize(digit_probabilities(sess, test, MC_SAMPLES, seed=MC_SEED))
            if reference is None:
                reference = (det, mc)
            accepted = mc.score(score) <= threshold if threshold is not None else np.zeros(len(labels), bool)
            mc_ok = mc.prediction == labels
            variant["deterministic"] = {
                "accuracy": float(np.mean(det.argmax(1) == labels)),
                "agreement_with_fp32": float(np.mean(det.argmax(1) == reference[0].argmax(1))),
                "max_abs_prob_diff": float(np.abs(det - reference[0]).max()),
            }
            variant["mc"] = {
                "accuracy": float(mc_ok.mean()),
                "coverage_at_card_threshold": float(accepted.mean()),
                "accuracy_accepted": float(mc_ok[accepted].mean()) if accepted.any() else None,
                "mean_abs_score_diff": float(np.abs(mc.score(score) - reference[1].score(score)).mean()),
            }
            variant["speed"] = latency_and_throughput(
                lambda b: _call(sess, inputs.digit_feeds(inputs.tile(timing_images, b), MC_SAMPLES,
                                                         np.random.default_rng(b))), ctx.budget)
        except Exception as exc:  # noqa: BLE001
            variant["error"] = f"failed to run: {type(exc).__name__}: {exc}"
    return {
        "calibration": "500 MNIST validation images (the first 500 of the held-out last 5,000 training images): "
                       "250 with the deterministic pass (T=1, all-ones masks) and 250 with T=4 random dropout masks "
                       "(p=0.5), so the ranges cover both, in batches of 50",
        "evaluation": f"the first {len(labels)} MNIST test images" if ctx.quick else "all 10,000 MNIST test images",
        "mc": f"T={MC_SAMPLES}, masks seeded per chunk (the same for every variant); score {score}, "
              f"card threshold {threshold}",
        "variants": variants,
    }


def study(ctx: Context) -> dict:
    return {"classifier": classifier(ctx), "digits": digits(ctx)}
