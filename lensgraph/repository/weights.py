"""Where a model's weights come from, and how we make sure they are the ones we expect.

A weight source is one string in ``configs/models.yaml``:

* ``assets:<relative path>``  a file under ``$LENSGRAPH_ASSETS``
* ``path:<path>`` or a bare path  a local file (relative to the config file)
* ``https://...``  downloaded once into a cache, always with a sha256 check
* ``random:<seed>``  seeded random weights: allowed for tests and demos, marked not real everywhere
* ``darknet:<file name>``  a file of Debian's darknet package (cfg, voc.names): lensgraph.architectures.darknet_files
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from lensgraph import settings
from lensgraph.errors import ChecksumMismatch, WeightsError, WeightsNotFound

CACHE_ENV = "LENSGRAPH_CACHE"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "lensgraph").expanduser()


@dataclass(frozen=True)
class WeightSource:
    """A parsed weight location plus the checksum it must have (full hex or a prefix of 8+)."""

    kind: str  # "assets" | "path" | "url" | "random" | "darknet"
    location: str
    sha256: str | None = None

    @classmethod
    def parse(cls, spec: str, sha256: str | None = None) -> "WeightSource":
        spec = spec.strip()
        if sha256 is not None:
            sha256 = sha256.strip().lower()
            if len(sha256) < 8 or any(c not in "0123456789abcdef" for c in sha256):
                raise WeightsError(f"sha256 {sha256!r} must be hex, at least 8 characters")
        if spec.startswith("random:"):
            seed = spec.split(":", 1)[1]
            if not seed.isdigit():
                raise WeightsError(f"random weights need an integer seed, e.g. random:0 (got {spec!r})")
            return cls("random", seed, None)
        if spec.startswith("assets:"):
            return cls("assets", spec.split(":", 1)[1].lstrip("/"), sha256)
        if spec.startswith("darknet:"):
            return cls("darknet", spec.split(":", 1)[1], sha256)
        if spec.startswith(("https://", "http://")):
            if not sha256:
                raise WeightsError(f"a URL weight source needs a sha256 to check it against: {spec}")
            return cls("url", spec, sha256)
        if spec.startswith("path:"):
            spec = spec.split(":", 1)[1]
        return cls("path", spec, sha256)

    @property
    def is_real(self) -> bool:
        return self.kind != "random"

    @property
    def seed(self) -> int | None:
        return int(self.location) if self.kind == "random" else None

    def describe(self) -> str:
        return f"random:{self.location}" if self.kind == "random" else f"{self.kind}:{self.location}"


def resolve(source: WeightSource, base_dir: Path | None = None) -> Path | None:
    """Return the local file for a source (None for random weights), checked against its sha256."""
    if source.kind == "random":
        return None
    if source.kind == "assets":
        root = settings.assets_dir()
        if root is None:
            raise WeightsNotFound(
                f"needs assets:{source.location}, but ${settings.ASSETS_ENV} is not set to an existing folder; "
                f"point it at the assets folder (make does this when ../shared/assets exists)"
            )
        path = root / source.location
    elif source.kind == "url":
        path = _download(source)
    elif source.kind == "darknet":
        from lensgraph.architectures import darknet_files

        path = darknet_files.find(source.location)
    else:
        path = Path(source.location).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = (base_dir / path).resolve()
    if not path.is_file():
        raise WeightsNotFound(f"weights file {path} does not exist; provide it or change the source")
    verify_sha256(path, source.sha256)
    return path


def verify_sha256(path: Path, expected: str | None) -> str:
    actual = sha256_file(path)
    if expected and not actual.startswith(expected.lower()):
        raise ChecksumMismatch(f"{path} has sha256 {actual}, expected {expected}: wrong or corrupted file")
    return actual


def _download(source: WeightSource) -> Path:
    """Download into the cache once; a cached file with the right checksum is reused."""
    name = source.location.rstrip("/").rsplit("/", 1)[-1] or "weights"
    target = cache_dir() / "weights" / name
    if target.is_file():
        try:
            verify_sha256(target, source.sha256)
            return target
        except ChecksumMismatch:
            target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(source.location, timeout=60) as response:  # noqa: S310 - https URL from config
            with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
                shutil.copyfileobj(response, tmp)
    except OSError as exc:
        raise WeightsNotFound(
            f"could not download {source.location} ({exc}); download it elsewhere, check its sha256 "
            f"({source.sha256}) and use 'path:<file>' as the weight source, or place it at {target}"
        ) from exc
    tmp_path = Path(tmp.name)
    try:
        verify_sha256(tmp_path, source.sha256)
    except ChecksumMismatch:
        tmp_path.unlink(missing_ok=True)
        raise
    tmp_path.replace(target)
    return target
