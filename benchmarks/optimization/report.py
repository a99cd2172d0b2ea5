"""The study's results as markdown: one table per question, each naming the command that made it."""

from __future__ import annotations


def _ops(counts: dict | None) -> str:
    return ", ".join(f"{op} x{n}" for op, n in (counts or {}).items()) or "-"


def _int8_runtime_ops(counts: dict | None) -> str:
    wanted = {op: n for op, n in (counts or {}).items()
              if op.startswith(("QLinear", "QGemm", "Dynamic")) or op.endswith("Integer")}
    return _ops(wanted)


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _ratio(value: float, base: float) -> str:
    return f"{value:.1f} ({value / base:.2f}x)" if base else f"{value:.1f}"


def _speed_cells(speed: dict) -> str:
    b1, b16 = speed["batch1"], speed["batch16"]
    return f"{b1['median_ms']:.2f} | {b1['p90_ms']:.2f} | {b16['images_per_s']:.1f} | {b16['median_ms']:.1f}"


SPEED_HEAD = "batch 1 median ms | batch 1 p90 ms | batch 16 images/s | batch 16 median ms per batch"


def _table(head: str, rows: list[str]) -> list[str]:
    cells = head.count("|") + 1
    return ["", f"| {head} |", "|" + "---|" * cells, *rows, ""]


def graph_levels(rows: list[dict]) -> list[str]:
    out = _table(f"model | level | session creation ms | nodes run | {SPEED_HEAD}", [
        f"| {r['model']} | {r['level']} | {r['create_ms']:.0f} | {r['nodes']} | {_speed_cells(r)} |" for r in rows])
    return out + ["Session creation: median of {} creations. *Nodes run*: the graph ONNX Runtime executes after "
                  "its optimisations at that level (saved with `optimized_model_filepath`).".format(rows[0]["create_runs"])]


def threads(result: dict) -> list[str]:
    out = _table(f"setting | created with | {SPEED_HEAD}", [
        f"| {r['setting']} | {r['via']} | {_speed_cells(r)} |" for r in result["settings"]])
    out += ["`SessionConfig` has no execution-mode field (create_session always runs sequentially, where inter-op "
            "threads are unused) and always turns spinning off, so those rows build `ort.SessionOptions` directly "
            "with otherwise the same options.", "",
            "Replicas x threads on this machine (the classifier; each session looped by its own Python thread, "
            "ONNX Runtime releases the GIL):"]
    out += _table("layout | batch | images/s (all callers) | per call median ms | per call p90 ms", [
        f"| {r['layout']} | {r['batch']} | {r['images_per_s']:.1f} | {r['median_ms']:.1f} | {r['p90_ms']:.1f} |"
        for r in result["replicas"]])
    return out


def batch_sizes(rows: list[dict]) -> list[str]:
    return _table("model | batch | median ms per batch | p90 ms per batch | ms per image | images/s", [
        f"| {r['model']} | {r['batch']} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} | {r['ms_per_image']:.3f} | "
        f"{r['images_per_s']:.1f} |" for r in rows]) + [
        "Digits: the served Monte-Carlo graph at T = 30 with random masks made once per batch size (mask "
        "generation not included); images/s counts images, not samples."]


def _speed_vs(speed: dict | None, base: dict | None) -> str:
    if not speed:
        return "- | -"
    b1, b16 = speed["batch1"]["median_ms"], speed["batch16"]["images_per_s"]
    if not base:
        return f"{b1:.2f} | {b16:.1f}"
    return f"{b1:.2f} ({b1 / base['batch1']['median_ms']:.2f}x) | {b16:.1f} ({b16 / base['batch16']['images_per_s']:.2f}x)"


def int8(result: dict) -> list[str]:
    out = ["", "### Classifier (EfficientNet-Lite0)", "",
           f"Calibration: {result['classifier']['calibration']}. Compared on: {result['classifier']['evaluation']}."]
    variants = result["classifier"]["variants"]
    base = variants["fp32"].get("speed")
    rows, errors = [], []
    for name, v in variants.items():
        if "error" in v and "speed" not in v:
            errors.append(f"- **{name}**: {v['error']}")
            rows.append(f"| {name} | {v.get('bytes', 0) / 2**20:.2f} | {_ops(v.get('integer_ops') or v.get('qdq_ops'))} "
                        f"| - | - | - | failed | - | - | - | - |")
            continue
        crops = v["crops_vs_fp32"]
        samples = "; ".join(f"{s['top1']} {s['probability']:.3f} (Δ {s['max_abs_prob_diff']:.3f})" for s in v["samples"])
        rows.append(
            f"| {name} | {v['bytes'] / 2**20:.2f} | {_ops(v.get('integer_ops') or v.get('qdq_ops'))} | "
            f"{_int8_runtime_ops(v.get('runtime_ops'))} | {_speed_vs(v.get('speed'), base if name != 'fp32' else None)} | "
            f"{_pct(crops['top1_agreement'])} | {_pct(crops['top1_agreement_confident'])} | {crops['top5_overlap']:.3f} "
            f"| {crops['max_abs_prob_diff']:.3f} | {samples} |")
    crops = variants["fp32"].get("crops_vs_fp32") or {}
    out += [f"On these crops fp32's mean top-1 probability is {crops.get('fp32_mean_top1_prob', float('nan')):.2f} "
            f"(many show faces or parts of scenes, not an ImageNet class), so its top-1 is often a near tie; "
            f"*confident* counts only the {crops.get('confident_images')} crops where fp32's top-1 probability is "
            ">= 0.5."]
    out += _table("variant | MiB | quantised in the file | int8 kernels ONNX Runtime runs | batch 1 median ms (vs fp32) "
                  "| batch 16 images/s (vs fp32) | top-1 agreement on crops | on confident crops | top-5 overlap "
                  "| max abs Δprob on crops | sample photos: top-1, p (max Δprob)", rows) + errors
    out += ["", "### Digits (MNIST CNN, Monte-Carlo dropout graph)", "",
            f"Calibration: {result['digits']['calibration']}. Scored on {result['digits']['evaluation']}; "
            f"MC: {result['digits']['mc']}. Speed: the MC graph at T = 30."]
    variants = result["digits"]["variants"]
    base = variants["fp32"].get("speed")
    rows, errors = [], []
    for name, v in variants.items():
        if "deterministic" not in v:
            errors.append(f"- **{name}**: {v.get('error')}")
            continue
        d, m = v["deterministic"], v["mc"]
        rows.append(
            f"| {name} | {v['bytes'] / 2**20:.3f} | {_ops(v.get('integer_ops') or v.get('qdq_ops'))} | "
            f"{_int8_runtime_ops(v.get('runtime_ops'))} | {_pct(d['accuracy'])} | {_pct(d['agreement_with_fp32'])} | "
            f"{d['max_abs_prob_diff']:.4f} | {_pct(m['accuracy'])} | {_pct(m['coverage_at_card_threshold'])} | "
            f"{_pct(m['accuracy_accepted'])} | {_speed_vs(v.get('speed'), base if name != 'fp32' else None)} |")
    out += _table("variant | MiB | quantised in the file | int8 kernels ONNX Runtime runs | test accuracy (deterministic) "
                  "| agreement with fp32 | max abs Δprob | MC T=30 accuracy | reliable coverage at the card threshold "
                  "| accuracy of reliable | batch 1 median ms (vs fp32) | batch 16 images/s (vs fp32)", rows) + errors
    pre = {f"{model} {name}": v.get("preprocess_error") for model in ("classifier", "digits")
           for name, v in result[model]["variants"].items() if v.get("preprocess_error")}
    out += ["", "`quant_pre_process` ran before every quantisation" + (
        "." if not pre else "; it failed for: " + "; ".join(f"{k}: {e}" for k, e in pre.items()) + " (quantised as is)."),
        "Static quantisation quantises only " + ", ".join(f"`{op}`" for op in ("Conv", "Gemm", "MatMul", "Add", "Clip",
                                                                             "Relu", "MaxPool"))
        + ": the in-graph normalisation, the dropout-mask products and the softmax stay float32.",
        "",
        "*U8S8* (uint8 activations, int8 weights) is the tool's default and ONNX Runtime's fastest x86 path, but "
        "on CPUs without VNNI (`avx512_vnni`/`avx_vnni` absent from the flags in the header) its AVX2 kernels add "
        "pairs of uint8 x int8 products in 16 bits, which can saturate; 7-bit weights (`reduce_range`) or uint8 "
        "weights (*U8U8*, a slower kernel) avoid that. The accuracy columns show what it costs on this machine."]
    return out


def transport(result: dict) -> list[str]:
    sizes, pickled, rt = result["bytes_per_image"], result["pickled_bytes_batch16"], result["pickle_roundtrip_batch16"]
    out = _table("tensor | bytes per image | pickled batch of 16 (bytes) | pickle.dumps + loads, batch 16, median ms | p90 ms", [
        f"| {k} | {sizes[k]:,} | {pickled[k]:,} | {rt[k]['median_ms']:.3f} | {rt[k]['p90_ms']:.3f} |" for k in sizes])
    norm = result["numpy_normalise"]
    out += [f"numpy normalisation outside the graph (uint8 NHWC -> float32 NCHW, (x - mean) / std, contiguous): "
            f"batch 1 {norm['batch1']['median_ms']:.3f} ms, batch 16 {norm['batch16']['median_ms']:.3f} ms (median).", ""]
    g = result["in_graph"]
    out += [f"In-graph cost: {g['float_variant']}; outputs agree to {g['max_abs_prob_diff_vs_uint8_graph']:.2g}."]
    out += _table(f"graph | {SPEED_HEAD}", [f"| {k} | {_speed_cells(g[k])} |" for k in ("uint8 graph", "float32 graph")])
    u, f = g["uint8 graph"], g["float32 graph"]
    out += [f"Difference (uint8 graph - float32 graph): batch 1 {u['batch1']['median_ms'] - f['batch1']['median_ms']:+.3f} ms, "
            f"batch 16 {u['batch16']['median_ms'] - f['batch16']['median_ms']:+.3f} ms per batch; the float32 graph's "
            "times do not include the numpy normalisation above."]
    return out


def engines(result: dict) -> list[str]:
    rows, notes = [], []
    for r in result["rows"]:
        if "skipped" in r:
            rows.append(f"| {r['engine']} | - | - | - | - | - | - |")
            notes.append(f"- {r['engine']}: {r['skipped']}")
            continue
        rows.append(f"| {r['engine']} | {r['setup_s']:.1f} | {_speed_cells(r)} | {r['max_abs_prob_diff']:.2g} |")
        notes += [f"- {r['engine']}: {w}" for w in r.get("warnings", [])]
        if r.get("note"):
            notes.append(f"- {r['engine']}: {r['note']}")
    out = [f"torch.set_num_threads({result['torch_threads']}); ONNX Runtime intra-op {result['ort_intra_op_threads']}. "
           f"Agreement: {result['agreement_inputs']}. *Setup*: building the module from the card's weights (eager), "
           "tracing, session creation, or compiling (torch.compile, timed for batch 1 and 16)."]
    return out + _table(f"engine | setup s | {SPEED_HEAD} | max abs Δprob vs eager", rows) + notes


def memory(rows: list[dict]) -> list[str]:
    body = []
    for r in rows:
        if "error" in r:
            body.append(f"| {r['model']} | - | failed: {r['error']} | | | | | |")
            continue
        b, s, a = r["baseline"], r["session_delta"], r["after_first_batch16_delta"]
        body.append(f"| {r['model']} | {r['file_mib']:.2f} | {b['rss_mib']:.0f} | {b['pss_mib']:.0f} | "
                    f"{s['rss_mib']:+.1f} | {s['pss_mib']:+.1f} | {a['rss_mib']:+.1f} | {a['pss_mib']:+.1f} |")
    return _table("model | file MiB | process RSS before (MiB) | PSS before | session: +RSS | +PSS "
                  "| session and one batch of 16: +RSS | +PSS", body) + [
        "One fresh process per model (`python -m benchmarks.optimization.memory MODEL.onnx THREADS`): numpy and ONNX "
        "Runtime imported before the first reading; digits run at T = 30."]


SECTIONS = {
    "graph_levels": ("1. ONNX Runtime graph optimisation levels", graph_levels),
    "threads": ("2. Threads, and replicas x threads on this machine", threads),
    "batch_sizes": ("3. Batch size", batch_sizes),
    "int8": ("4. INT8 quantisation (onnxruntime.quantization)", int8),
    "transport": ("5. uint8 transport vs float32", transport),
    "engines": ("6. PyTorch eager vs TorchScript vs torch.compile vs ONNX Runtime (the classifier)", engines),
    "memory": ("7. Memory per loaded model", memory),
}


def to_markdown(results: dict) -> str:
    meta, m = results["meta"], results["meta"]["machine"]
    lines = [
        "# Optimisation study: ONNX Runtime settings, batching, INT8, transport, engines, memory",
        "",
        f"Reproduce: `{meta['command']}` (writes this file and `optimization.json`; "
        f"{meta['elapsed_s'] / 60:.1f} minutes here).",
        "",
        f"Measured {meta['measured_at']} on {m['cpu']} ({m['usable_cores']} usable of {m['logical_cores']} logical cores, "
        f"{m['memory_gib']} GiB; int8-relevant CPU flags: {', '.join(m['cpu_flags']) or 'none'}), Python {m['python']}, "
        f"ONNX Runtime {m['onnxruntime']}, onnx {m.get('onnx')}, torch {m.get('torch')}, numpy {m['numpy']}.",
        "",
        f"Each figure: warm-up (at least 2 calls and {meta['budget']['warmup_s']} s), then at least "
        f"{meta['budget']['measure_s']} s of timed calls (at least 5): **median and p90 latency in ms** of one call, "
        "**throughput in images/s** = images / seconds over the window. Unless a row says otherwise: ONNX Runtime on "
        f"the CPU, {meta['threads']} intra-op threads, sequential execution, graph optimisation `all`, spinning off "
        "(as `lensgraph.runtime.session.create_session` makes sessions), inputs are the assets' real photos through "
        "the served transforms (MNIST images for digits).",
    ]
    if meta.get("quick"):
        lines += ["", "**Quick run (`--quick`)**: short windows, fewer calibration and test images; a smoke test of "
                      "the script, not numbers to quote."]
    for key, (title, render) in SECTIONS.items():
        if key not in results["sections"]:
            continue
        section = results["sections"][key]
        alone = f"python -m benchmarks.optimization --only {key}" + (" --quick" if meta.get("quick") else "")
        lines += ["", f"## {title}", "",
                  f"From `{meta['command']}`; this section alone: `{alone}`. Load average before / after: "
                  f"{section['load_before']} / {section['load_after']}; {section['elapsed_s']:.0f} s."]
        if "error" in section:
            lines += ["", f"**Failed**: `{section['error']}`"]
            continue
        lines += render(results[key])
    return "\n".join(lines) + "\n"
