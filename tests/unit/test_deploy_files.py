"""The container files, checked without Docker (there is no Docker daemon where the tests run).

hadolint lints the Dockerfile; a small parser reads its stages to pin down what the image must be
(torch only in the build stage, the assets only bind-mounted, a non-root user, configs/serve.env in
the environment); `.dockerignore` is evaluated with Docker's own matching rules against the real
tree. `docker build` itself runs in the GitHub workflow (.github/workflows/ci.yml).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lensgraph import serve_env

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
HADOLINT = Path(sys.executable).with_name("hadolint")


# --------------------------------------------------------------------------------------------
# A Dockerfile reader: enough of the format for the checks below (continuations, comments,
# parser directives, JSON and shell forms).


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int

    def flags(self) -> dict[str, str]:
        """`--name=value` options at the start of the arguments (COPY --from=..., RUN --mount=...)."""
        out = {}
        for word in shlex.split(self.args, posix=True):
            if not word.startswith("--"):
                break
            name, _, value = word[2:].partition("=")
            out[name] = out[name] + "," + value if name in out else value
        return out

    def words(self) -> list[str]:
        """The arguments without the leading options."""
        words = shlex.split(self.args, posix=True)
        while words and words[0].startswith("--"):
            words.pop(0)
        return words


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for ins in self.all("ENV"):
            for word in shlex.split(ins.args, posix=True):
                key, _, value = word.partition("=")
                values[key] = value
        return values


def parse_dockerfile(text: str) -> tuple[list[Instruction], list[Stage]]:
    """Global instructions (before the first FROM) and the stages."""
    logical: list[tuple[int, str]] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue  # comment lines inside a continuation are dropped by Docker too
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer += stripped[:-1] + " "
            continue
        logical.append((start, buffer + stripped))
        buffer = ""
    assert not buffer, "the Dockerfile ends inside a line continuation"
    preamble: list[Instruction] = []
    stages: list[Stage] = []
    for number, line in logical:
        keyword, _, args = line.partition(" ")
        ins = Instruction(keyword.upper(), args.strip(), number)
        if ins.keyword == "FROM":
            words = ins.words()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif stages:
            stages[-1].instructions.append(ins)
        else:
            preamble.append(ins)
    return preamble, stages


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], dict[str, Stage], list[Stage]]:
    preamble, stages = parse_dockerfile(DOCKERFILE.read_text())
    args = {}
    for ins in preamble:
        assert ins.keyword == "ARG", f"line {ins.line}: only ARG may come before the first FROM"
        key, _, value = ins.args.partition("=")
        args[key] = value
    by_name = {s.name: s for s in stages if s.name}
    return args, by_name, stages


# --------------------------------------------------------------------------------------------
# hadolint


def _hadolint(path: Path) -> tuple[int, list[dict]]:
    assert HADOLINT.exists(), f"{HADOLINT} is missing: it comes with the dev extra (make setup)"
    result = subprocess.run(
        [str(HADOLINT), "--config", str(ROOT / ".hadolint.yaml"), "--format", "json", str(path)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    return result.returncode, json.loads(result.stdout or "[]")


def test_hadolint_finds_nothing():
    code, findings = _hadolint(DOCKERFILE)
    assert findings == [], "\n".join(f"Dockerfile:{f['line']} {f['code']} {f['level']}: {f['message']}" for f in findings)
    assert code == 0


def test_hadolint_does_fail_on_a_bad_dockerfile(tmp_path):
    """The check above means something: the same call fails on the usual mistakes."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install requests\nUSER root\n")
    code, findings = _hadolint(bad)
    assert code != 0
    assert {"DL3006", "DL3013", "DL3002"} <= {f["code"] for f in findings}


def test_every_inline_ignore_has_a_reason():
    lines = DOCKERFILE.read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore=" in line:
            assert i > 0 and lines[i - 1].startswith("#") and "hadolint" not in lines[i - 1], (
                f"line {i + 1}: say why on the line above the ignore pragma"
            )


# --------------------------------------------------------------------------------------------
# What the image is


def test_variants_and_python(dockerfile):
    args, stages, _ = dockerfile
    assert args["VARIANT"] == "cpu", "the CPU image is the default"
    assert re.fullmatch(r"3\.11\.\d+", args["PYTHON_VERSION"]), "Ray-compatible Python 3.11, one patch release"
    assert stages["python-cpu"].base == "python:${PYTHON_VERSION}-slim-bookworm"
    gpu = stages["python-gpu"]
    assert gpu.base.startswith("nvidia/cuda:") and "cudnn-runtime" in gpu.base
    # the GPU base installs the very same Python release as the CPU base
    assert any('uv python install "${PYTHON_VERSION}"' in r.args for r in gpu.all("RUN"))
    assert stages["runtime-base"].base == "python-${VARIANT}"
    assert {"python-cpu", "python-gpu"} == {n for n in stages if n.startswith("python-")}
    assert stages["models"].base == "models-${MODELS}" and args["MODELS"] == "build"
    assert {"models-build", "models-mount"} <= set(stages)


def test_each_variant_serves_its_own_config(dockerfile):
    _, stages, _ = dockerfile
    assert stages["python-cpu"].env()["LENSGRAPH_SERVE_CONFIG"] == "serve_config.yaml"
    assert stages["python-gpu"].env()["LENSGRAPH_SERVE_CONFIG"] == "configs/profiles/gpu.yaml"
    for stage in ("python-cpu", "python-gpu"):
        assert (ROOT / stages[stage].env()["LENSGRAPH_SERVE_CONFIG"]).is_file()


def test_gpu_variant_installs_onnxruntime_gpu_of_the_pinned_version(dockerfile):
    _, stages, _ = dockerfile
    run = " ".join(r.args for r in stages["venv"].all("RUN"))
    assert '"${VARIANT}" = gpu' in run
    assert "pip uninstall --yes onnxruntime" in run and 'onnxruntime-gpu==${ort_version}' in run
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'"onnxruntime==[0-9.]+"', pyproject), "the GPU build takes its version from this pin"


def test_torch_only_in_the_build_stage(dockerfile):
    _, stages, ordered = dockerfile
    for stage in ordered:
        text = " ".join(i.args for i in stage.instructions if i.keyword == "RUN")
        if stage.name == "models-build":
            assert ".[build]" in text and "download.pytorch.org/whl/cpu" in text
        else:
            assert ".[build]" not in text and "pip install torch" not in text, stage.name
    # the runtime venv refuses torch outright, and the final image takes files only from venv and models
    assert "pip show torch" in " ".join(r.args for r in stages["venv"].all("RUN"))
    runtime = ordered[-1]
    assert runtime.name == "runtime", "the last stage is the image"
    sources = {c.flags().get("from") for c in runtime.all("COPY")} - {None}
    assert sources == {"venv", "models"}
    models_copy = next(c for c in runtime.all("COPY") if c.flags().get("from") == "models")
    assert models_copy.words() == ["/opt/lensgraph/model_repository", "/opt/lensgraph/model_repository"]


def test_assets_are_bind_mounted_never_copied(dockerfile):
    _, stages, ordered = dockerfile
    assert stages["assets"].base == "scratch" and not stages["assets"].instructions
    for stage in ordered:
        assert not stage.all("ADD"), "ADD is not used (it can fetch and unpack): COPY only"
        for copy in stage.all("COPY"):
            assert copy.flags().get("from") != "assets", f"line {copy.line} copies the assets"
            assert not any("assets" in w for w in copy.words()), f"line {copy.line}"
    mounts = [r for s in ordered for r in s.all("RUN") if "from=assets" in r.flags().get("mount", "")]
    assert len(mounts) == 1
    assert "type=bind" in mounts[0].flags()["mount"] and "rw" not in mounts[0].flags()["mount"].split(",")
    assert "lensgraph models build --strict" in mounts[0].args
    assert mounts[0] in stages["models-build"].instructions


def test_runtime_user_entry_and_environment(dockerfile):
    _, _, ordered = dockerfile
    runtime = ordered[-1]
    user = runtime.all("USER")[-1].args
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user), "numeric and non-root, so Kubernetes runAsNonRoot can verify it"
    assert not runtime.all("ENTRYPOINT"), "KubeRay replaces the command with `ray start`; no entrypoint in its way"
    cmd = json.loads(runtime.all("CMD")[-1].args)
    # `lensgraph run`: serve run under the supervisor that drains on `docker stop`'s SIGTERM
    assert "exec lensgraph run" in cmd[-1] and "${LENSGRAPH_SERVE_CONFIG}" in cmd[-1]
    env = runtime.env()
    assert env["LENSGRAPH_MODEL_REPOSITORY"] == "/opt/lensgraph/model_repository"
    assert env["PATH"].startswith("/opt/venv/bin:")
    for key, value in serve_env.load().items():
        assert env.get(key) == value, f"configs/serve.env sets {key}={value}; the image has {env.get(key)!r}"
    assert "/etc/profile.d/" in " ".join(r.args for r in runtime.all("RUN")), "login shells (KubeRay) keep the venv"


def test_copied_sources_exist_and_are_in_the_context(dockerfile):
    _, _, ordered = dockerfile
    patterns = read_dockerignore(ROOT / ".dockerignore")
    for stage in ordered:
        for copy in stage.all("COPY"):
            if "from" in copy.flags():
                continue
            *sources, _ = copy.words()
            for source in sources:
                assert (ROOT / source).exists(), f"line {copy.line}: {source} does not exist"
                assert not ignored(source.rstrip("/"), patterns), f"line {copy.line}: .dockerignore drops {source}"


# --------------------------------------------------------------------------------------------
# .dockerignore, with Docker's matching rules (moby/patternmatcher): patterns anchored at the
# context root, `*` and `?` within one path element, `**` across elements, `!` re-includes,
# the last matching pattern wins, and a pattern matching a parent folder matches what is under it.


def read_dockerignore(path: Path) -> list[tuple[bool, re.Pattern]]:
    patterns = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclusion = line.startswith("!")
        line = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        patterns.append((exclusion, re.compile(_pattern_regex(line))))
    return patterns


def _pattern_regex(pattern: str) -> str:
    out, i = "^", 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            if pattern[i + 1:i + 2] == "*":
                i += 1
                if pattern[i + 1:i + 2] == "/":
                    i += 1
                out += ".*" if i + 1 >= len(pattern) else "(.*/)?"
            else:
                out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.index("]", i)
            out += pattern[i:end + 1]
            i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(c)
        i += 1
    return out + "$"


def ignored(relative: str, patterns: list[tuple[bool, re.Pattern]]) -> bool:
    parts = relative.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    matched = False
    for exclusion, regex in patterns:
        if exclusion != matched:
            continue
        if any(regex.match(c) for c in candidates):
            matched = not exclusion
    return matched


def context_files(root: Path, patterns) -> list[str]:
    """What `docker build` would send: every file the patterns keep (ignored folders are not walked)."""
    kept = []
    for folder, dirs, files in os.walk(root):
        rel = os.path.relpath(folder, root)
        prefix = "" if rel == "." else rel + "/"
        # A folder may be ignored while something under it is re-included; none of ours is, so prune.
        dirs[:] = [d for d in dirs if not ignored(prefix + d, patterns) or _reincluded_below(prefix + d, patterns)]
        kept += [prefix + f for f in files if not ignored(prefix + f, patterns)]
    return kept


def _reincluded_below(folder: str, patterns) -> bool:
    return any(exclusion and regex.pattern.startswith("^" + re.escape(folder + "/")) for exclusion, regex in patterns)


def test_matcher_follows_docker_rules():
    patterns = [(False, re.compile(_pattern_regex(p))) for p in ("*", "**/__pycache__")]
    patterns.insert(1, (True, re.compile(_pattern_regex("configs"))))
    assert ignored("README.md", patterns)
    assert not ignored("configs/profiles/gpu.yaml", patterns)
    assert ignored("configs/__pycache__/x.pyc", patterns)
    assert ignored("__pycache__", patterns)
    only_top = [(False, re.compile(_pattern_regex("*.pyc")))]
    assert ignored("a.pyc", only_top) and not ignored("pkg/a.pyc", only_top), "unlike .gitignore: anchored"


@pytest.mark.parametrize("path", [
    ".venv/bin/python", ".venv", "model_repository/classifier/1/model.onnx", "reports/run.json",
    ".git/HEAD", "assets/imagenet/x.pth", "tests/conftest.py", "docs/deploy.md",
    "lensgraph/__pycache__/settings.cpython-311.pyc", "lensgraph.egg-info/PKG-INFO",
])
def test_dockerignore_leaves_out(path):
    assert ignored(path, read_dockerignore(ROOT / ".dockerignore"))


def test_dockerignore_names_the_big_folders_explicitly():
    lines = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".venv", "model_repository", "reports", ".git"} <= lines


def test_context_holds_only_sources(assets):
    """Walk the real tree: nothing from the ignored folders, and no asset file under any name."""
    files = context_files(ROOT, read_dockerignore(ROOT / ".dockerignore"))
    assert "pyproject.toml" in files and "lensgraph/settings.py" in files and "weights/digits/digit_cnn.pth" in files
    for path in files:
        assert path.split("/")[0] not in {".venv", "model_repository", "reports", ".git", "tests", "docs"}, path
        assert "__pycache__" not in path, path
    asset_sizes: dict[int, set[str]] = {}
    for asset in assets.rglob("*"):
        if asset.is_file():
            asset_sizes.setdefault(asset.stat().st_size, set()).add(hashlib.sha256(asset.read_bytes()).hexdigest())
    for path in files:
        size = (ROOT / path).stat().st_size
        if size > 1024 and size in asset_sizes:
            digest = hashlib.sha256((ROOT / path).read_bytes()).hexdigest()
            assert digest not in asset_sizes[size], f"{path} is an asset: it would end up in the build context"
