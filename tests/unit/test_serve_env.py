"""configs/serve.env means the same to the Python loader, to make (`make run`) and to a shell that sources it
(docs/serving.md gives `set -a; . configs/serve.env; set +a` for plain `serve run`)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from lensgraph import serve_env

ROOT = Path(__file__).resolve().parents[2]


def _child_env(command: list[str]) -> dict[str, str]:
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}).stdout
    return dict(line.split("=", 1) for line in out.split("\0") if "=" in line)


def test_every_variable_has_the_same_value_for_python_make_and_a_shell():
    expected = serve_env.load()
    assert expected["RAY_SERVE_HAPROXY_RETRY_ON"] == "conn-failure empty-response"  # a value with a space
    assert expected["FORWARDED_ALLOW_IPS"] == ""  # an empty value
    assert any(k != k.upper() for k in expected)  # Ray's own lower-case names (RAY_raylet_...) are there too
    shell = _child_env(["bash", "-c", "set -a; . configs/serve.env; set +a; env -0"])
    make = _child_env(["make", "--no-print-directory", "--eval", "serve-env-dump: ; @env -0", "serve-env-dump"])
    for key, value in expected.items():
        assert shell.get(key) == value, f"a shell sourcing the file gets {key}={shell.get(key)!r}"
        assert make.get(key) == value, f"make exports {key}={make.get(key)!r}"


def test_quotes_are_stripped_only_when_they_wrap_the_value(tmp_path):
    f = tmp_path / "serve.env"
    f.write_text('# comment\nA="x y"\nB=plain\nC=\nD="\n')
    assert serve_env.load(f) == {"A": "x y", "B": "plain", "C": "", "D": '"'}
