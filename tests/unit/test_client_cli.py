"""``lensgraph client`` without a server: files and folders expanded into images, where pictures are saved,
the progress bar, the checks' verdicts on given answers, and the drawn digit and letter the check sends,
read by the real digits model."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from lensgraph.cli import client_check, client_cmd
from lensgraph.cli.client_files import PROGRESS_ABOVE, Input, Progress, expand_inputs, extension_for, save_targets
from lensgraph.cli.main import build_parser, main
from lensgraph.imaging.decode import decode_image
from lensgraph.inference.local import LocalPipelines


def _touch(path, data: bytes = b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# -- files and folders ---------------------------------------------------------------------------------------


def test_folders_are_searched_recursively_for_images_only(tmp_path):
    photos = tmp_path / "photos"
    for name in ("b.jpg", "a.PNG", "sub/c.webp", "sub/deeper/d.tiff", "e.gif", "f.bmp", "g.jpeg"):
        _touch(photos / name)
    for name in ("notes.txt", "model.onnx", ".hidden.jpg", ".git/h.png", "sub/README"):
        _touch(photos / name)
    inputs, problems = expand_inputs([photos])
    assert problems == []
    assert [str(i.relative) for i in inputs] == ["a.PNG", "b.jpg", "e.gif", "f.bmp", "g.jpeg", "sub/c.webp",
                                                 "sub/deeper/d.tiff"]
    assert all(i.root == photos for i in inputs)


def test_files_named_directly_are_sent_whatever_their_name_each_once_and_missing_ones_reported(tmp_path):
    scan = _touch(tmp_path / "scan.dat")
    folder = tmp_path / "f"
    one = _touch(folder / "one.jpg")
    empty = tmp_path / "empty"
    _touch(empty / "readme.txt")
    inputs, problems = expand_inputs([scan, one, folder, tmp_path / "nope.jpg", empty])
    assert [i.path for i in inputs] == [scan, one]  # one.jpg again from the folder: not twice
    assert inputs[0].root is None and inputs[0].relative.name == "scan.dat"
    assert problems[0] == f"{tmp_path / 'nope.jpg'}: no such file"
    assert problems[1].startswith(f"{empty}: no image files in this folder")


def test_pictures_are_saved_as_a_file_for_one_image_and_in_a_folder_for_several(tmp_path):
    one = [Input(tmp_path / "in" / "obama.jpg")]
    assert save_targets(one, tmp_path / "out.png", "faces") == ([tmp_path / "out.png"], False)
    existing = tmp_path / "existing"
    existing.mkdir()
    assert save_targets(one, existing, "faces") == ([existing / "obama.faces"], True)
    assert save_targets(one, f"{tmp_path}/new/", "faces") == ([tmp_path / "new" / "obama.faces"], True)
    root = tmp_path / "in"
    several = [Input(root / "a.jpg", root), Input(root / "a.png", root), Input(root / "x" / "a.jpg", root),
               Input(tmp_path / "A.jpg")]
    targets, as_folder = save_targets(several, tmp_path / "pictures", "classify")
    assert as_folder
    assert targets == [tmp_path / "pictures" / "a.classify", tmp_path / "pictures" / "a.classify-2",
                       tmp_path / "pictures" / "x" / "a.classify", tmp_path / "pictures" / "A.classify-3"]
    assert extension_for("image/png") == ".png" and extension_for("image/jpeg; q=1") == ".jpg"
    assert extension_for(None) == ".jpg"


# -- the progress bar ----------------------------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_only_above_three_images():
    assert PROGRESS_ABOVE == 3
    for total, shown in ((1, False), (3, False), (4, True), (500, True)):
        stream = _Terminal()
        bar = Progress(total, stream)
        bar.show()
        for _ in range(total):
            bar.advance()
        bar.close()
        assert bar.enabled is shown
        assert (stream.getvalue() != "") is shown
    stream = _Terminal()
    bar = Progress(10, stream, enabled=False)
    bar.advance()
    assert stream.getvalue() == ""


def test_progress_redraws_one_line_on_a_terminal():
    stream, clock = _Terminal(), _Clock()
    bar = Progress(8, stream, clock=clock, width=8)
    bar.show()
    assert bar.line() == "[........] 0/8   0%"
    clock.now += 2.0
    bar.advance(2)
    assert bar.line() == "[##......] 2/8  25%  1.0/s  eta 6s"
    bar.clear()
    assert stream.getvalue().endswith("\r\x1b[K")
    for _ in range(6):
        bar.advance()
    bar.close()
    text = stream.getvalue()
    assert text.count("\n") == 1 and text.endswith("8/8 100%  4.0/s\n")
    assert "\r\x1b[K[########] 8/8" in text


def test_progress_writes_a_line_a_tenth_of_the_way_in_logs():
    stream = io.StringIO()
    bar = Progress(100, stream, clock=_Clock())
    bar.show()
    for _ in range(100):
        bar.advance()
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 11 and lines[0].startswith("[") and " 100/100 100%" in lines[-1]
    assert "\r" not in stream.getvalue()


# -- the command line ----------------------------------------------------------------------------------------


def test_the_client_parses_many_inputs_save_and_check(tmp_path):
    args = build_parser().parse_args(["client", "faces", str(tmp_path), "a.jpg", "--save", "out", "--format", "png",
                                      "--api-key", "k"])
    assert args.route == "faces" and len(args.images) == 2 and str(args.save) == "out"
    assert client_cmd.picture_format(args) == "png"
    assert client_cmd.auth_headers(args.api_key) == {"Authorization": "Bearer k"}
    assert client_cmd.auth_headers(None) == {}
    args = build_parser().parse_args(["client", "check", "--url", "http://h:1", "--requests", "5", "--json"])
    assert (args.route, args.requests, args.json, args.max_p99_ms) == ("check", 5, True, None)
    args = build_parser().parse_args(["client", "classify", "x.jpg", "--save", "x.PNG"])
    assert client_cmd.picture_format(args) == "png"


def test_missing_files_and_an_unreachable_server_are_exit_status_1(tmp_path, capsys):
    assert main(["client", "classify", str(tmp_path / "nope.jpg"), "--url", "http://127.0.0.1:9"]) == 1
    assert "no such file" in capsys.readouterr().err
    photo = _touch(tmp_path / "p.jpg", b"\xff\xd8\xff")
    assert main(["client", "classify", str(photo), "--url", "http://127.0.0.1:9", "--timeout", "5"]) == 1
    assert "cannot reach http://127.0.0.1:9" in capsys.readouterr().err
    assert main(["client", "classify", str(photo), "--save", str(photo)]) == 2  # would overwrite the input
    assert "input image itself" in capsys.readouterr().err


# -- client check ------------------------------------------------------------------------------------------


def test_check_against_nothing_fails_every_check_at_once(capsys):
    code = main(["client", "check", "--url", "http://127.0.0.1:9", "--json"])
    assert code == 1
    body = json.loads(capsys.readouterr().out)
    assert body["passed"] is False
    assert [c["name"] for c in body["checks"]] == [c.name for c in client_check.CHECKS]
    assert all(c["status"] == "FAIL" for c in body["checks"])


def test_check_names_are_unique_and_cover_the_brief():
    names = [c.name for c in client_check.CHECKS]
    assert len(set(names)) == len(names)
    kinds = {type(c).__name__ for c in client_check.CHECKS}
    assert kinds == {"Ready", "TopClass", "FaceCount", "Digit", "ErrorCase", "RealWeights", "Latency"}
    errors = {c.status: c.code for c in client_check.CHECKS if isinstance(c, client_check.ErrorCase)}
    assert errors == {400: "missing_image", 415: "unsupported_media_type", 413: "image_too_large", 404: "not_found"}


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert client_check.percentile(values, 50) == 50.0
    assert client_check.percentile(values, 99) == 99.0
    assert client_check.percentile([3.0], 99) == 3.0


@pytest.fixture(scope="module")
def digits_model(repository):
    return LocalPipelines(repository, threads=1, pipelines=("digits",))


def test_the_drawn_digit_and_letter_are_read_as_the_check_expects(digits_model):
    """What `client check` sends to /v1/digits, given to the same model and route code."""
    for check in (c for c in client_check.CHECKS if isinstance(c, client_check.Digit)):
        data = check.make()
        assert decode_image(data).pixels.shape == (140, 140, 3)
        assert np.asarray(Image.open(io.BytesIO(data))).min() == 0
        answer = digits_model.digits([data], seed=0)[0]
        assert answer["reliable"] is check.reliable, (check.name, answer)
        if check.digit is not None:
            assert answer["digit"] == check.digit, (check.name, answer)


def test_watch_durations_and_prometheus_text():
    from lensgraph.cli.client_watch import RouteStats, parse_every, prometheus_text

    assert [parse_every(t) for t in ("10s", "500ms", "2m", "1.5", "1h")] == [10.0, 0.5, 120.0, 1.5, 3600.0]
    for bad in ("0s", "-1", "soon", "10 parsecs"):
        with pytest.raises(ValueError, match="--every"):
            parse_every(bad)
    stats = {"classify": RouteStats(window=3), "faces": RouteStats()}
    for seconds in (0.01, 0.02, 0.03, 0.04):
        stats["classify"].add("200", seconds)
    stats["faces"].add("error", None)
    assert list(stats["classify"].latencies) == [0.02, 0.03, 0.04]  # the window
    assert stats["classify"].availability == 1.0 and stats["faces"].availability == 0.0
    text = prometheus_text(stats, 'http://h:1/"x"', 12.5)
    assert 'lensgraph_probe_requests_total{url="http://h:1/\\"x\\"",route="classify",status="200"} 4' in text
    assert 'lensgraph_probe_up{url="http://h:1/\\"x\\"",route="faces"} 0' in text
    assert 'route="faces",quantile' not in text  # no latency without an answer
    assert text.endswith("lensgraph_probe_last_round_timestamp_seconds{url=\"http://h:1/\\\"x\\\"\"} 12.500\n")
