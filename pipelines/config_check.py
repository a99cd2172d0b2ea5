"""A strict check of our Serve configs: Ray Serve ignores keys it does not know, so a misspelled
``max_ongoing_request`` or ``num_cpu`` would silently change how the service runs.

Known keys come from Ray's own schema classes (so the check follows Ray upgrades); lensgraph's
own ``args`` and every deployment's ``user_config`` are validated by the same pydantic models
the application uses at run time: a model deployment's by its task's settings (deployments/tasks.py),
the task read from configs/models.yaml or, for a model added to the repository by hand, its card.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from ray.serve.config import AutoscalingConfig, BackpressureConfig
from ray.serve.schema import (
    DeploymentSchema,
    HTTPOptionsSchema,
    LoggingConfig,
    RayActorOptionsSchema,
    ServeApplicationSchema,
    ServeDeploySchema,
)

from deployments.settings import ModelSettings
from deployments.tasks import TASKS
from lensgraph import settings as lg_settings
from lensgraph.errors import InvalidRequest, ModelUnavailable
from lensgraph.repository.spec import load_models_config
from lensgraph.repository.store import find_model
from pipelines.app import AppArgs
from pipelines.ingress import PreprocessorSettings

APP_IMPORT_PATH = "pipelines.app:build_app"
MODELS_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "models.yaml"
NESTED = {
    ServeDeploySchema: {"http_options": HTTPOptionsSchema, "logging_config": LoggingConfig},
    ServeApplicationSchema: {"logging_config": LoggingConfig},
    DeploymentSchema: {
        "ray_actor_options": RayActorOptionsSchema,
        "autoscaling_config": AutoscalingConfig,
        "backpressure_config": BackpressureConfig,
        "logging_config": LoggingConfig,
    },
}


def _unknown_keys(values: Any, schema: type, where: str, problems: list[str]) -> None:
    if not isinstance(values, dict):
        return
    known = set(schema.model_fields)
    for field in schema.model_fields.values():
        if field.alias:
            known.add(field.alias)
    for key in values:
        if key not in known:
            hint = difflib.get_close_matches(key, sorted(known), n=1)
            problems.append(f"{where}{key}: unknown key" + (f" (did you mean '{hint[0]}'?)" if hint else ""))
    for key, sub in NESTED.get(schema, {}).items():
        _unknown_keys(values.get(key), sub, f"{where}{key}.", problems)


def _errors(exc: ValidationError) -> list[str]:
    return [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]


def check(config: dict[str, Any]) -> list[str]:
    """Every problem found, as 'path: message' lines; an empty list means the config is sound."""
    problems: list[str] = []
    _unknown_keys(config, ServeDeploySchema, "", problems)
    for i, app in enumerate(config.get("applications") or []):
        where = f"applications[{i}]."
        _unknown_keys(app, ServeApplicationSchema, where, problems)
        for j, deployment in enumerate(app.get("deployments") or []):
            _unknown_keys(deployment, DeploymentSchema, f"{where}deployments[{j}].", problems)
        if app.get("import_path") == APP_IMPORT_PATH:
            problems += _check_lensgraph_app(app, where)
    try:
        ServeDeploySchema.model_validate(config)
    except ValidationError as exc:
        problems += _errors(exc)
    return problems


def _task_of(model: str, args: AppArgs) -> str | None:
    """The task of a repository model: configs/models.yaml's entry, else the built card's, else None."""
    try:
        specs = load_models_config(MODELS_CONFIG)
    except InvalidRequest:
        specs = {}
    if model in specs:
        return specs[model].task
    try:
        return find_model(lg_settings.model_repository_dir(args.repository), model).card.get("task")
    except ModelUnavailable:
        return None


def deployment_settings(args: AppArgs) -> dict[str, type[BaseModel]]:
    """Deployment name -> the class its ``user_config`` is validated with, for the app's served models."""
    out: dict[str, type[BaseModel]] = {"Preprocessor": PreprocessorSettings}  # the HTTP ingress
    for served in args.served().values():
        serving = TASKS.get(str(_task_of(served.model, args)))
        out[served.deployment] = serving.settings if serving else ModelSettings
    return out


def _check_lensgraph_app(app: dict[str, Any], where: str) -> list[str]:
    problems = []
    try:
        args = AppArgs.model_validate(app.get("args") or {})
        known = deployment_settings(args)
    except (ValidationError, ValueError) as exc:
        lines = _errors(exc) if isinstance(exc, ValidationError) else [str(exc)]
        return [f"{where}args.{e}" for e in lines]
    for j, deployment in enumerate(app.get("deployments") or []):
        here = f"{where}deployments[{j}]."
        name = deployment.get("name")
        if name not in known:
            problems.append(f"{here}name: no deployment {name!r} in lensgraph; known: {sorted(known)}")
            continue
        settings_class = known[name]
        user_config = deployment.get("user_config")
        try:
            settings = settings_class.model_validate(user_config or {})
        except ValidationError as exc:
            problems += [f"{here}user_config.{e}" for e in _errors(exc)]
            continue
        batch = getattr(settings, "max_batch_size", None)
        ongoing = deployment.get("max_ongoing_requests")
        if batch and ongoing is not None and ongoing < batch:
            problems.append(
                f"{here}max_ongoing_requests={ongoing} is below max_batch_size={batch}: batches could never fill"
            )
    return problems


def check_file(path: Path) -> list[str]:
    try:
        config = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        return [f"cannot read {path}: {exc}"]
    if not isinstance(config, dict):
        return [f"{path} is not a mapping"]
    return check(config)
