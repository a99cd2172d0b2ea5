"""The load-test tooling without a server: shapes, shape selection, the body checks, the summary.

Locust monkey-patches the standard library with gevent when imported, so everything that imports
it runs in a subprocess and reports back as JSON; this process never imports locust.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOADTESTS = ROOT / "loadtests"


def _run(script: str, env: dict[str, str] | None = None) -> object:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# Ticks of a shape at chosen elapsed times, under real locust options (its own argument parser).
SHAPE_TICKS = """
    import json, os, sys, time
    sys.path.insert(0, "loadtests")
    from locust.argument_parser import parse_options
    from locust.env import Environment
    import shapes

    def ticks(cls, args, times, **env):
        for key in [k for k in os.environ if k.startswith("LOADTEST_")]:
            del os.environ[key]
        os.environ.update(env)
        concrete = type("Concrete", (cls,), {})
        shape = concrete()
        Environment(user_classes=[], shape_class=shape, parsed_options=parse_options(["-f", "x.py", *args])) \\
            .create_local_runner()
        out = []
        for t in times:
            shape.start_time = time.perf_counter() - t  # as if the test had been running for t seconds
            tick = shape.tick()
            out.append(None if tick is None else [tick[0], tick[1]])
        return out

    print(json.dumps({
        "step_fills_run_time": ticks(shapes.StepLoadShape, ["-u", "8", "-t", "70s"],
                                     [0, 9.9, 10, 25, 35, 45, 55, 65, 69.9, 70], LOADTEST_STEP_USERS="2"),
        "step_default_steps": ticks(shapes.StepLoadShape, ["-u", "8", "-r", "3", "-t", "70s"], [0, 10, 30, 40, 60]),
        "step_explicit_seconds": ticks(shapes.StepLoadShape, [], [0, 5, 10, 14.9, 15],
                                       LOADTEST_MAX_USERS="2", LOADTEST_STEP_USERS="1", LOADTEST_STEP_SECONDS="5"),
        "step_capped_by_run_time": ticks(shapes.StepLoadShape, ["-u", "8", "-t", "30s"], [0, 29, 30],
                                         LOADTEST_STEP_USERS="2", LOADTEST_STEP_SECONDS="10"),
        "step_one_user": ticks(shapes.StepLoadShape, ["-u", "1", "-t", "4s"], [0, 3.9, 4]),
        "ramp": ticks(shapes.RampLoadShape, ["-u", "6", "-t", "30s"], [0, 5, 9.9, 10, 19.9, 20.5, 25, 29.9, 30]),
        "ramp_explicit": ticks(shapes.RampLoadShape, ["-u", "4"], [0, 2.5, 4, 5, 6.5, 7],
                               LOADTEST_RAMP_UP="4", LOADTEST_HOLD="2", LOADTEST_RAMP_DOWN="1"),
    }))
"""


@pytest.fixture(scope="module")
def shape_ticks() -> dict:
    return _run(SHAPE_TICKS)


def test_step_shape_climbs_to_the_peak_and_back_filling_the_run_time(shape_ticks):
    users = [t and t[0] for t in shape_ticks["step_fills_run_time"]]
    # levels 2, 4, 6, 8, 6, 4, 2, ten seconds each (70 s / 7 levels), then stop
    assert users == [2, 2, 4, 6, 8, 6, 4, 2, 2, None]
    # -r absent: the spawn rate is the peak, so every level is reached within a second
    assert {t[1] for t in shape_ticks["step_fills_run_time"] if t} == {8}


def test_step_shape_default_step_is_a_quarter_of_the_peak_and_uses_the_spawn_rate(shape_ticks):
    assert shape_ticks["step_default_steps"] == [[2, 3], [4, 3], [8, 3], [6, 3], [2, 3]]


def test_step_shape_with_explicit_step_seconds_and_no_run_time(shape_ticks):
    assert [t and t[0] for t in shape_ticks["step_explicit_seconds"]] == [1, 2, 1, 1, None]


def test_step_shape_stops_at_the_run_time_even_mid_shape(shape_ticks):
    assert [t and t[0] for t in shape_ticks["step_capped_by_run_time"]] == [2, 6, None]


def test_step_shape_with_a_single_user(shape_ticks):
    assert [t and t[0] for t in shape_ticks["step_one_user"]] == [1, 1, None]


def test_ramp_shape_thirds_of_the_run_time(shape_ticks):
    users = [t and t[0] for t in shape_ticks["ramp"]]
    # a climb from 1 to 6 over 10 s, 10 s at 6, a descent over 10 s, then stop
    assert users == [1, 3, 5, 6, 6, 6, 4, 2, None]


def test_ramp_shape_explicit_phases(shape_ticks):
    assert [t and t[0] for t in shape_ticks["ramp_explicit"]] == [1, 2, 4, 4, 3, None]


SELECTION = """
    import json, os
    from locust.util.load_locustfile import load_locustfile
    found = {}
    for shape in ("none", "step", "ramp", ""):
        os.environ["LOADTEST_SHAPE"] = shape
        users, shapes = load_locustfile("loadtests/locustfile.py")
        found[shape] = [sorted(users), [type(s).__name__ for s in shapes]]
    print(json.dumps(found))
"""


def test_only_the_shape_named_by_loadtest_shape_is_active(assets):
    found = _run(SELECTION, {"LENSGRAPH_ASSETS": str(assets)})
    users = sorted(["ClassifyUser", "FacesUser", "DigitsUser", "LandmarksUser", "MixedUser"])
    assert found == {"none": [users, []], "step": [users, ["StepShape"]], "ramp": [users, ["RampShape"]],
                     "": [users, []]}


@pytest.mark.parametrize("env", [{"LOADTEST_SHAPE": "spike"}, {"LOADTEST_WAIT": "-1"}, {"LOADTEST_WAIT": "2,1"},
                                 {"LENSGRAPH_ASSETS": "/nonexistent/assets"}])
def test_bad_settings_stop_locust_with_a_message(env):
    done = subprocess.run([str(Path(sys.executable).parent / "locust"), "-f", "loadtests/locustfile.py", "--list"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, **env})
    assert done.returncode != 0
    name, value = next(iter(env.items()))
    assert value in done.stderr


# The body checks on the payloads the locustfile loads, against bodies shaped like the API's.
CHECKS = """
    import json, sys
    sys.path.insert(0, "loadtests")
    import locustfile as lf

    up = lf.UPLOADS
    tench = next(u for u in up["classify"] if "tench" in u.name)
    four = next(u for u in up["faces"] if u.expected == 4)
    crop = up["landmarks"][0]
    digit = up["digits"][0]
    marks = [{"name": f"p{i}", "x": 1.0, "y": 2.0} for i in range(15)]
    face = {"box": {"x1": 0, "y1": 0, "x2": 1, "y2": 1}, "score": 0.9, "landmarks": marks}
    good_digit = {"digit": 7, "probability": 0.9, "reliable": True, "uncertainty": {}}
    print(json.dumps({
        "counts": {route: len(items) for route, items in up.items()},
        "polarities": sorted({u.name.split("(")[1] for u in up["digits"]}),
        "crop_sizes": [u.expected for u in up["landmarks"]],
        "classify_ok": lf.check_classify({"predictions": [{"class_id": 0, "label": "tench", "confidence": 0.8}],
                                          "embedding_stats": {}}, tench),
        "classify_wrong_class": lf.check_classify({"predictions": [{"class_id": 1, "label": "goldfish",
                                                   "confidence": 0.8}], "embedding_stats": {}}, tench),
        "classify_no_predictions": lf.check_classify({"error": "x"}, tench),
        "faces_ok": lf.check_faces({"faces": [face] * 4}, four),
        "faces_wrong_count": lf.check_faces({"faces": [face] * 3}, four),
        "faces_14_landmarks": lf.check_faces({"faces": [dict(face, landmarks=marks[:14])] * 4}, four),
        "landmarks_ok": lf.check_landmarks({"landmarks": marks}, crop),
        "landmarks_outside": lf.check_landmarks({"landmarks": marks[:14] + [{"name": "n", "x": 1e4, "y": 0}]}, crop),
        "landmarks_missing": lf.check_landmarks({}, crop),
        "digits_ok": lf.check_digits(good_digit, digit),
        "digits_blank": lf.check_digits(dict(good_digit, digit=None), digit),
        "digits_missing": lf.check_digits({"digit": 3}, digit),
    }))
"""


def test_payloads_and_body_checks(assets):
    result = _run(CHECKS, {"LENSGRAPH_ASSETS": str(assets)})
    assert result["counts"] == {"classify": 2, "faces": 5, "landmarks": 4, "digits": 128}
    assert result["polarities"] == ["dark ink)", "light ink)"]
    assert all(w == h and w >= 64 for w, h in result["crop_sizes"])
    for ok in ("classify_ok", "faces_ok", "landmarks_ok", "digits_ok"):
        assert result[ok] is None, (ok, result[ok])
    assert "top class 1" in result["classify_wrong_class"]
    assert "predictions" in result["classify_no_predictions"]
    assert "3 faces, expected 4" in result["faces_wrong_count"]
    assert "expected 15 landmarks, got 14" in result["faces_14_landmarks"]
    assert "outside" in result["landmarks_outside"]
    assert "got NoneType" in result["landmarks_missing"]
    assert "not 0..9" in result["digits_blank"]
    assert "missing" in result["digits_missing"] and "reliable" in result["digits_missing"]


def test_summarize_refuses_a_missing_or_empty_stats_file(tmp_path):
    script = str(LOADTESTS / "summarize.py")
    missing = subprocess.run([sys.executable, script, "--prefix", str(tmp_path / "none")],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "not found" in missing.stderr
    header = ("Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,"
              "Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,"
              "99.9%,99.99%,100%\n")
    (tmp_path / "empty_stats.csv").write_text(header + ",Aggregated,0,0,0,0.0,0,0,0,0.0,0.0" + ",N/A" * 11 + "\n")
    empty = subprocess.run([sys.executable, script, "--prefix", str(tmp_path / "empty")],
                           capture_output=True, text=True, timeout=60)
    assert empty.returncode == 1 and "no request" in empty.stderr
    assert not (tmp_path / "empty_summary.md").exists()


def test_preflight_refuses_a_host_where_nothing_answers():
    from lensgraph.devcluster import free_port

    host = f"http://127.0.0.1:{free_port()}"
    done = subprocess.run([sys.executable, str(LOADTESTS / "preflight.py"), host],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"no lensgraph server answers at {host}/healthz" in done.stderr and "make run" in done.stderr
    not_url = subprocess.run([sys.executable, str(LOADTESTS / "preflight.py"), "myhost"],
                             capture_output=True, text=True, timeout=60)
    assert not_url.returncode == 2 and "not an http(s) URL" in not_url.stderr
