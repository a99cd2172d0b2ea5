"""The KubeRay RayService manifest, generated so that it never drifts from the rest of the repository.

``deploy/kuberay/rayservice.template.yaml`` describes the cluster (groups, sizes, probes). This module
fills in what other files own:

* ``spec.serveConfigV2``: ``serve_config.yaml`` merged with a profile (``configs/profiles/gpu.yaml`` by
  default), see :func:`merge_serve_configs`, with the HTTP options KubeRay expects;
* ``rayClusterConfig.rayVersion``: the ``ray`` pin in ``pyproject.toml``;
* the environment of every Ray container: ``configs/serve.env`` plus ``LENSGRAPH_MODEL_REPOSITORY``,
  the path where the Dockerfile puts the model repository;
* security (docs/security.md): Ray token authentication (``rayClusterConfig.authOptions``, the token in
  the Secret ``lensgraph-secrets`` under ``auth_token``, which KubeRay hands to every Ray container as
  ``RAY_AUTH_TOKEN``), and the API key file from the same Secret (``api_keys``) mounted read-only in
  every Ray container and named by ``LENSGRAPH_API_KEYS_FILE``.

A profile that asks for no GPU drops the worker groups whose Pods request GPUs. No Ray import here:
the CLI runs the strict Serve config check on the result.
"""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

from lensgraph import serve_env
from lensgraph.security import keys as api_keys
from lensgraph.settings import REPOSITORY_ENV, project_root

TEMPLATE = Path("deploy/kuberay/rayservice.template.yaml")
OUTPUT = Path("deploy/kuberay/rayservice.yaml")
SERVE_CONFIG = Path("serve_config.yaml")
PROFILE = Path("configs/profiles/gpu.yaml")
SERVE_ENV = Path("configs/serve.env")
# Where the Dockerfile builds the model repository inside the image (its LENSGRAPH_MODEL_REPOSITORY).
IMAGE_MODEL_REPOSITORY = "/opt/lensgraph/model_repository"
# What KubeRay's serve Service, probes and our container ports assume.
SERVE_HOST, SERVE_PORT, PROXY_LOCATION = "0.0.0.0", 8000, "EveryNode"
GPU_RESOURCE = "nvidia.com/gpu"
# The Secret the manifest references (created by the operator of the cluster, never committed).
SECRET_NAME = "lensgraph-secrets"
RAY_TOKEN_KEY = "auth_token"  # the key KubeRay reads RAY_AUTH_TOKEN from (authOptions.secretName)
API_KEYS_KEY = "api_keys"
SECRETS_VOLUME, SECRETS_MOUNT = "lensgraph-secrets", "/etc/lensgraph/secrets"
API_KEYS_ENV = api_keys.ENV  # where the ingress looks for the key file


def merge_serve_configs(base: dict[str, Any], profile: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``profile`` on top.

    * Top-level keys (``http_options``, ``logging_config``, ...): the profile's value replaces the base's.
    * Applications, matched by name: the profile's keys replace the base's one by one.
    * Deployments, matched by name: the profile's entry replaces the base's entry whole (merging
      ``num_replicas: 1`` from the base with the profile's ``autoscaling_config`` would be a config
      Serve rejects); deployments only in the base are kept, so a new deployment added to
      serve_config.yaml still reaches the cluster.
    """
    merged = copy.deepcopy(base)
    for key, value in profile.items():
        if key != "applications":
            merged[key] = copy.deepcopy(value)
    apps = {app["name"]: app for app in merged.get("applications") or []}
    for app in profile.get("applications") or []:
        target = apps.get(app["name"])
        if target is None:
            merged.setdefault("applications", []).append(copy.deepcopy(app))
            continue
        for key, value in app.items():
            if key != "deployments":
                target[key] = copy.deepcopy(value)
        deployments = target.setdefault("deployments", [])
        index = {d["name"]: i for i, d in enumerate(deployments)}
        for deployment in app.get("deployments") or []:
            if deployment["name"] in index:
                deployments[index[deployment["name"]]] = copy.deepcopy(deployment)
            else:
                deployments.append(copy.deepcopy(deployment))
    return merged


def for_kuberay(config: dict[str, Any]) -> dict[str, Any]:
    """The HTTP settings KubeRay relies on: every node's proxy on 0.0.0.0:8000."""
    config = copy.deepcopy(config)
    config["proxy_location"] = PROXY_LOCATION
    http = config.setdefault("http_options", {})
    http["host"], http["port"] = SERVE_HOST, SERVE_PORT
    return config


def needs_gpu(config: dict[str, Any]) -> bool:
    return any(
        float((d.get("ray_actor_options") or {}).get("num_gpus") or 0) > 0
        for app in config.get("applications") or []
        for d in app.get("deployments") or []
    )


def ray_version(pyproject: Path) -> str:
    """The Ray release the image installs, from the ``ray[...]==X.Y.*`` pin (wildcard -> X.Y.0)."""
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    for dependency in dependencies:
        match = re.fullmatch(r"ray(\[[^\]]*\])?==(\d+)\.(\d+)\.(\d+|\*)", dependency.replace(" ", ""))
        if match:
            patch = "0" if match.group(4) == "*" else match.group(4)
            return f"{match.group(2)}.{match.group(3)}.{patch}"
    raise ValueError(f"{pyproject}: no exact ray==X.Y.Z or ray==X.Y.* pin in project.dependencies")


def _pod_requests_gpu(group: dict[str, Any]) -> bool:
    for container in group["template"]["spec"]["containers"]:
        resources = container.get("resources") or {}
        if any(GPU_RESOURCE in (resources.get(kind) or {}) for kind in ("requests", "limits")):
            return True
    return False


def ray_containers(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The container that runs Ray in the head Pod and in each worker group's Pods (KubeRay: the first)."""
    cluster = manifest["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster.get("workerGroupSpecs", [])]
    return [group["template"]["spec"]["containers"][0] for group in groups]


def ray_pod_specs(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The Pod spec of the head and of each worker group."""
    cluster = manifest["spec"]["rayClusterConfig"]
    return [group["template"]["spec"] for group in [cluster["headGroupSpec"], *cluster.get("workerGroupSpecs", [])]]


def secure(manifest: dict[str, Any]) -> None:
    """Ray token authentication and the API key file, both from the Secret ``SECRET_NAME``."""
    cluster = manifest["spec"]["rayClusterConfig"]
    cluster["authOptions"] = {"mode": "token", "secretName": SECRET_NAME}
    for pod in ray_pod_specs(manifest):
        volumes = [v for v in pod.get("volumes") or [] if v["name"] != SECRETS_VOLUME]
        pod["volumes"] = volumes + [{"name": SECRETS_VOLUME, "secret": {
            "secretName": SECRET_NAME, "items": [{"key": API_KEYS_KEY, "path": API_KEYS_KEY}],
            "defaultMode": 0o440}}]  # read by the Pod's fsGroup; the Ray token stays out of the file system
        container = pod["containers"][0]
        mounts = [m for m in container.get("volumeMounts") or [] if m["name"] != SECRETS_VOLUME]
        container["volumeMounts"] = mounts + [{"name": SECRETS_VOLUME, "mountPath": SECRETS_MOUNT, "readOnly": True}]


def build_manifest(
    root: Path | None = None,
    *,
    template: Path = TEMPLATE,
    serve_config: Path = SERVE_CONFIG,
    profile: Path | None = PROFILE,
    serve_env_file: Path = SERVE_ENV,
) -> dict[str, Any]:
    root = root or project_root()
    manifest = yaml.safe_load((root / template).read_text())
    config = yaml.safe_load((root / serve_config).read_text())
    if profile is not None:
        config = merge_serve_configs(config, yaml.safe_load((root / profile).read_text()))
    config = for_kuberay(config)

    spec = manifest["spec"]
    spec["serveConfigV2"] = yaml.safe_dump(config, sort_keys=False, width=120)
    cluster = spec["rayClusterConfig"]
    cluster["rayVersion"] = ray_version(root / "pyproject.toml")
    if not needs_gpu(config):
        cluster["workerGroupSpecs"] = [g for g in cluster.get("workerGroupSpecs", []) if not _pod_requests_gpu(g)]

    secure(manifest)
    env = {**serve_env.load(root / serve_env_file), REPOSITORY_ENV: IMAGE_MODEL_REPOSITORY,
           API_KEYS_ENV: f"{SECRETS_MOUNT}/{API_KEYS_KEY}"}
    for container in ray_containers(manifest):
        own = [e for e in container.get("env") or [] if e["name"] not in env]
        container["env"] = [{"name": k, "value": v} for k, v in env.items()] + own
    return manifest


class _Dumper(yaml.SafeDumper):
    """Block style everywhere; multi-line strings (serveConfigV2) as readable literal blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _shown(root: Path, path: Path) -> str:
    path = root / path
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def header(root: Path, template: Path, serve_config: Path, profile: Path | None, serve_env_file: Path) -> str:
    sources = [_shown(root, template), _shown(root, serve_config), *([_shown(root, profile)] if profile else []),
               _shown(root, serve_env_file), "pyproject.toml (rayVersion)"]
    return (
        "# GENERATED by `lensgraph deploy kuberay` (`make manifests`); do not edit. Sources:\n"
        + "".join(f"#   {s}\n" for s in sources)
        + "# Edit those and regenerate: tests/unit/test_kuberay_manifest.py fails on a stale copy.\n"
    )


def render(
    root: Path | None = None,
    *,
    template: Path = TEMPLATE,
    serve_config: Path = SERVE_CONFIG,
    profile: Path | None = PROFILE,
    serve_env_file: Path = SERVE_ENV,
) -> str:
    root = root or project_root()
    manifest = build_manifest(root, template=template, serve_config=serve_config, profile=profile,
                              serve_env_file=serve_env_file)
    body = yaml.dump(manifest, Dumper=_Dumper, sort_keys=False, width=120, default_flow_style=False)
    return header(root, template, serve_config, profile, serve_env_file) + body
