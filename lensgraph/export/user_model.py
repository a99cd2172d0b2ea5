"""Load a user's own model class from a Python file, the way they trained it.

This is how someone brings a network they already have (``--model-file model.py --class UNet``):
the file is imported as a module under a private name, so it cannot shadow installed packages.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from lensgraph.errors import WeightsError


def load_class(model_file: Path, class_name: str) -> type:
    model_file = Path(model_file).resolve()
    if not model_file.is_file():
        raise WeightsError(f"model file {model_file} does not exist")
    module_name = f"lensgraph_user_model_{abs(hash(str(model_file)))}"
    spec = importlib.util.spec_from_file_location(module_name, model_file)
    if spec is None or spec.loader is None:
        raise WeightsError(f"cannot import {model_file} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise WeightsError(f"importing {model_file} failed: {exc!r}") from exc
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        available = sorted(n for n, v in vars(module).items() if isinstance(v, type) and v.__module__ == module_name)
        raise WeightsError(f"{model_file} has no class {class_name!r}; classes defined there: {available}")
    return cls


def instantiate(model_file: Path, class_name: str, init_args: dict[str, Any] | None = None):
    cls = load_class(model_file, class_name)
    try:
        return cls(**(init_args or {}))
    except TypeError as exc:
        raise WeightsError(f"{class_name}(**{init_args or {}}) failed: {exc}; pass constructor arguments") from exc
