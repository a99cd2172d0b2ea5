"""The GitHub workflow, read as data: it runs on every push, tests, and builds both image variants
from paths, targets and build contexts that exist. (GitHub itself cannot be run here.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.unit.test_deploy_files import parse_dockerfile

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def _on(workflow: dict) -> dict:
    # YAML 1.1 (PyYAML) reads the bare key `on` as the boolean True; GitHub reads it as "on".
    triggers = workflow.get("on", workflow.get(True))
    return {t: None for t in triggers} if isinstance(triggers, list) else triggers


def _checkout_paths(job: dict) -> dict[str, str]:
    """checkout path -> repository ('' for this one)."""
    paths = {}
    for step in job["steps"]:
        if str(step.get("uses", "")).startswith("actions/checkout@"):
            args = step.get("with") or {}
            paths[args.get("path", ".")] = args.get("repository", "")
    return paths


def _build_step(job: dict) -> dict | None:
    return next((s for s in job["steps"] if str(s.get("uses", "")).startswith("docker/build-push-action@")), None)


def test_runs_on_every_push(workflow):
    triggers = _on(workflow)
    assert "push" in triggers
    push = triggers["push"] or {}
    assert not push.get("branches") and not push.get("paths"), "every push, not a filtered subset"


def test_every_action_is_pinned_to_a_version(workflow):
    for name, job in workflow["jobs"].items():
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", step["uses"]), f"{name}: {step['uses']}"


def test_layout_main_beside_shared(workflow):
    """Both jobs check this repository out as main/ and the shared data beside it as shared/, which is
    where the Makefile and the tests look (../shared/assets, ../shared/schemas)."""
    for name, job in workflow["jobs"].items():
        paths = _checkout_paths(job)
        assert paths.get("main") == "", name
        assert "SHARED_REPOSITORY" in paths.get("shared", ""), name
    makefile = (ROOT / "Makefile").read_text()
    assert "../shared/assets" in makefile


def test_test_job_runs_make_test(workflow):
    job = workflow["jobs"]["test"]
    run = [s for s in job["steps"] if "run" in s]
    assert any(s["run"].strip() == "make test" and s.get("working-directory") == "main" for s in run)
    assert re.search(r"^test:", (ROOT / "Makefile").read_text(), re.M)
    assert str(job["steps"][-1].get("env", {}).get("CI")) == "true", "CI=true: missing assets fail instead of skipping"
    python = next(s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/setup-python@"))
    assert python["with"]["python-version"] == "3.11"


def test_image_job_builds_both_variants(workflow):
    builds = {name: job for name, job in workflow["jobs"].items() if _build_step(job)}
    assert len(builds) == 1
    job = next(iter(builds.values()))
    assert job["strategy"]["matrix"]["variant"] == ["cpu", "gpu"]
    assert job["strategy"].get("fail-fast") is False, "a GPU failure must not hide the CPU result"
    step = _build_step(job)["with"]
    assert step["build-args"] == "VARIANT=${{ matrix.variant }}"
    assert step["push"] is False and step["load"] is True


def test_build_paths_and_target_exist(workflow):
    job = next(j for j in workflow["jobs"].values() if _build_step(j))
    step = _build_step(job)["with"]
    assert step["context"] == "main"
    dockerfile = ROOT / Path(step["file"]).relative_to("main")
    assert dockerfile == ROOT / "Dockerfile" and dockerfile.is_file()
    preamble, stages = parse_dockerfile(dockerfile.read_text())
    names = {s.name for s in stages}
    assert step["target"] in names and stages[-1].name == step["target"]
    # named build contexts replace stages of the same name: each must exist, and point into shared/
    for context in step["build-contexts"].split():
        name, _, path = context.partition("=")
        assert name in names, f"no stage {name!r} for the build context to replace"
        assert path.startswith("shared/")
    args = {i.args.partition("=")[0] for i in preamble if i.keyword == "ARG"}
    assert "VARIANT" in args


def test_smoke_steps_use_the_built_tag_and_real_files(workflow, assets):
    job = next(j for j in workflow["jobs"].values() if _build_step(j))
    tag = _build_step(job)["with"]["tags"]
    assert tag == "lensgraph:ci-${{ matrix.variant }}"
    runs = "\n".join(s["run"] for s in job["steps"] if "run" in s)
    assert "lensgraph:ci-" in runs
    references = re.findall(r"@shared/assets/(\S+?)'?\s", runs)
    assert references, "the CPU smoke test sends a real image"
    for reference in references:
        assert (assets / reference).is_file(), reference
