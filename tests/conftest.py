"""Shared fixtures: where the assets and schemas are, and a model repository built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.tf_support import imported_digits, require_tf, tf_saved_models  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parent.parent


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``tf``: TensorFlow in .venv-tf; skipped without it, a failure when CI=true (tests/tf_support.py)."""
    require_tf(item)


def _assets() -> Path | None:
    value = os.environ.get("LENSGRAPH_ASSETS") or str(ROOT.parent / "shared" / "assets")
    path = Path(value)
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def assets() -> Path:
    """The real assets folder. Skips locally when absent; in CI (CI=true) its absence is a failure."""
    path = _assets()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("LENSGRAPH_ASSETS is not set to an existing folder in CI")
        pytest.skip("assets folder not available (set LENSGRAPH_ASSETS)")
    os.environ["LENSGRAPH_ASSETS"] = str(path)
    return path


def _schemas() -> Path | None:
    value = os.environ.get("LENSGRAPH_SCHEMAS") or str(ROOT.parent / "shared" / "schemas")
    path = Path(value)
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def schemas() -> Path:
    """The schemas folder (KubeRay CRDs). Skips locally when absent; in CI (CI=true) its absence is a failure."""
    path = _schemas()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("LENSGRAPH_SCHEMAS is not set to an existing folder in CI (nor is ../shared/schemas there)")
        pytest.skip("schemas folder not available (set LENSGRAPH_SCHEMAS)")
    return path


@pytest.fixture(scope="session")
def repository(assets: Path) -> Path:
    """The model repository `make models` built; built here into a temp folder when missing."""
    from lensgraph.repository.build import build_all
    from lensgraph.repository.spec import load_models_config
    from lensgraph.repository.store import versions

    root = Path(os.environ.get("LENSGRAPH_MODEL_REPOSITORY") or ROOT / "model_repository")
    specs = load_models_config(ROOT / "configs" / "models.yaml")
    if all(versions(root, name) for name in specs):
        return root
    results = build_all(specs, root, ROOT / "configs")
    failed = [r for r in results if r.status == "failed"]
    assert not failed, failed
    return root


def read_asset(assets: Path, relative: str) -> bytes:
    return (assets / relative).read_bytes()
