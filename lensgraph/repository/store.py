"""Reading the built repository: ``<root>/<name>/<version>/{model.onnx, model.yaml, labels.txt}``.

Serving code only ever reads from here, never from configs or weights, so what is served is
exactly what was built, checked and described.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lensgraph.errors import ModelUnavailable

MODEL_FILE = "model.onnx"
CARD_FILE = "model.yaml"
LABELS_FILE = "labels.txt"


@dataclass(frozen=True)
class ModelEntry:
    """A built model version: where its files are and what its card says."""

    name: str
    version: int
    directory: Path
    card: dict[str, Any]

    @property
    def onnx_path(self) -> Path:
        return self.directory / MODEL_FILE

    @property
    def labels_path(self) -> Path | None:
        path = self.directory / LABELS_FILE
        return path if path.is_file() else None

    @property
    def weights_real(self) -> bool:
        return bool(self.card.get("weights", {}).get("real", False))

    def input_spec(self, index: int = 0) -> dict[str, Any]:
        return self.card["inputs"][index]


def versions(root: Path, name: str) -> list[int]:
    folder = root / name
    if not folder.is_dir():
        return []
    found = [int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit() and (p / CARD_FILE).is_file()]
    return sorted(found)


def read_card(directory: Path) -> dict[str, Any]:
    return yaml.safe_load((directory / CARD_FILE).read_text()) or {}


def find_model(root: Path, name: str, version: int | None = None) -> ModelEntry:
    """The requested version (latest when None); ModelUnavailable says how to build a missing one."""
    available = versions(root, name)
    if not available:
        raise ModelUnavailable(
            f"model {name!r} is not in the repository at {root}; build it with 'lensgraph models build --only {name}'"
        )
    chosen = available[-1] if version is None else version
    if chosen not in available:
        raise ModelUnavailable(f"model {name!r} has versions {available}, not {chosen}")
    directory = root / name / str(chosen)
    if not (directory / MODEL_FILE).is_file():
        raise ModelUnavailable(f"model {name!r} version {chosen} at {directory} has a card but no {MODEL_FILE}; rebuild it")
    return ModelEntry(name=name, version=chosen, directory=directory, card=read_card(directory))


def list_models(root: Path) -> list[ModelEntry]:
    if not root.is_dir():
        return []
    entries = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for version in versions(root, folder.name):
            directory = folder / str(version)
            entries.append(ModelEntry(folder.name, version, directory, read_card(directory)))
    return entries
