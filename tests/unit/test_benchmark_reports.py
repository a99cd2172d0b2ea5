"""The benchmark reports render from their JSON without Ray: CPU accounting (labels side by side)
and cost growth (tables, fits)."""

from __future__ import annotations

import json

from benchmarks import cost_growth, cpu_accounting


def _accounting_run(ms: float, rps: float) -> dict:
    client = {"concurrency": 32, "requests": 100, "failures": 0, "throughput_rps": rps, "p50_ms": 40.0,
              "p90_ms": 60.0, "p99_ms": 90.0, "client_cpu_share": 0.05}
    roles = {"replica: Preprocessor": {"processes": 1, "cores": 0.8, "cpu_ms_per_request": ms * 0.4},
             "replica: Classifier": {"processes": 2, "cores": 1.0, "cpu_ms_per_request": ms * 0.6}}
    return {"command": "python -m benchmarks.cpu_accounting --label x", "date": "2026-12-01T00:00:00+00:00",
            "machine": "x86_64, 2 CPUs", "settings": {"concurrency": 32, "seconds": 15, "override": None},
            "ingress": "Preprocessor", "ingress_source": "Serve REST API",
            "idle": {"seconds": 20, "settle_seconds": 20, "total_cores": 0.25, "total_pss_mb": 1800.0,
                     "machine_cores": 0.3,
                     "roles": {"Ray dashboard": {"processes": 1, "cores": 0.1, "pss_mb": 300.0},
                               "replica: Classifier": {"processes": 2, "cores": 0.15, "pss_mb": 1500.0}}},
            "pipelines": {"classify": {"client": client, "statuses": {"200": 100}, "roles": roles, "total_cores": 1.8,
                                       "total_cpu_ms_per_request": ms, "machine_cores": 1.9}},
            "flame": {"Preprocessor": "flame_ingress.svg", "Classifier": "failed: no replica"}}


def test_cpu_accounting_report_keeps_labels_side_by_side(tmp_path):
    path = tmp_path / "cpu_accounting.json"
    cpu_accounting.save_run(path, "before", _accounting_run(52.0, 35.0))
    cpu_accounting.save_run(path, "after", _accounting_run(40.0, 45.0))
    runs = cpu_accounting.save_run(path, "before", _accounting_run(50.0, 36.0))  # a rerun replaces its label
    assert list(json.loads(path.read_text())) == ["before", "after"]
    text = cpu_accounting.render(runs)
    assert "| before | 0.250 | 1800 | 50.0 | 36.0 |" in text
    assert "| after | 0.250 | 1800 | 40.0 | 45.0 |" in text
    assert "## before" in text and "## after" in text
    assert "| replica: Classifier | 2 | 30.00 | 1.000 | 55.6% |" in text
    assert "the load generator 0.05, everything else 0.05" in text
    assert "[Preprocessor](flame_ingress.svg)" in text and "Classifier: failed: no replica" in text


def test_linear_fit_is_exact_on_a_line_and_skips_missing_points():
    fit = cost_growth.linear_fit([0.1, 1, 4, 12, 20], [11.0, 20.0, 50.0, 130.0, None])
    assert fit == {"intercept": 10.0, "slope": 10.0, "r2": 1.0}
    assert cost_growth.linear_fit([1, 2], [1.0, 2.0]) is None


def test_cost_growth_report_shows_faces_found_beside_placed():
    point = {"throughput_rps": 5.0, "p50_ms": 100.0, "p99_ms": 200.0, "failures": 0, "cpu_ms_per_request": 300.0}
    result = {"command": "python -m benchmarks.cost_growth", "seconds": 8, "concurrency": 8, "date": "d", "machine": "m",
              "megapixels": [{"route": "faces", "megapixels": 12, "sizes": ["3099x3872"], "bytes": [1262248],
                              "jpeg_quality": [90], "faces_found": [1], **point}],
              "faces": [{"faces_placed": 64, "tile_px": 200, "faces_found": 21, "bytes": 900000, **point}],
              "tiles": 9, "fits": {"faces: CPU ms per face found": None}, "plots": ["a.png", "b.png"]}
    text = cost_growth.render(result)
    assert "| 64 | 200 | 21 | 0.90 MB | 300.0 |" in text
    assert "| /v1/faces | 12 | 3099x3872 | 1.26 MB | 90 | 1 | 300.0 |" in text
