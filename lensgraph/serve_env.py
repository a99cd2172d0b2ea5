"""``configs/serve.env``: the one list of environment variables Ray Serve's processes run with."""

from __future__ import annotations

from pathlib import Path

from lensgraph.settings import project_root


def load(path: Path | None = None) -> dict[str, str]:
    path = path or project_root() / "configs" / "serve.env"
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ValueError(f"{path}: not KEY=VALUE: {line!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':  # quoted for a shell that sources the file
            value = value[1:-1]
        values[key.strip()] = value
    return values
