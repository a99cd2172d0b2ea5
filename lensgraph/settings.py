"""Where lensgraph finds its inputs: the assets folder and the model repository.

Locations always come from the environment (or an explicit argument), never from a path baked
into the code, so the same code runs on a laptop, in CI and inside a container.
"""

from __future__ import annotations

import os
from pathlib import Path

ASSETS_ENV = "LENSGRAPH_ASSETS"
REPOSITORY_ENV = "LENSGRAPH_MODEL_REPOSITORY"
DEFAULT_REPOSITORY = "model_repository"


def assets_dir() -> Path | None:
    """The folder named by ``$LENSGRAPH_ASSETS``, or None when unset or missing."""
    value = os.environ.get(ASSETS_ENV, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    return path if path.is_dir() else None


def model_repository_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The model repository root: the argument, else ``$LENSGRAPH_MODEL_REPOSITORY``, else ./model_repository."""
    if override:
        return Path(override).expanduser().resolve()
    return Path(os.environ.get(REPOSITORY_ENV) or DEFAULT_REPOSITORY).expanduser().resolve()


def project_root() -> Path:
    """The checkout root (where configs/ lives) when running from a source tree."""
    return Path(__file__).resolve().parent.parent
