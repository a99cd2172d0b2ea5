"""Which models the service serves, under which names, and which one a route uses by default.

``args.models`` in serve_config.yaml lists served models over the four built-ins; each becomes one
deployment of the model class. A route serves one task (or two, for faces): ``?model=NAME`` picks a
served model of that task, and without it the route takes the model marked ``default``, else the
conventional name (``classifier`` for classify, ...), else the only model of the task. Ray-free, so
the rules are unit-tested without a cluster.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lensgraph.errors import ModelUnavailable, UnknownModel

# served name -> its deployment's name (kept from when each had its own class: configs and dashboards use them)
BUILTIN_DEPLOYMENTS = {"classifier": "Classifier", "face_detector": "FaceDetector", "landmarks": "LandmarkModel",
                       "digits": "DigitClassifier"}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

# route -> the tasks its model may serve
ROUTE_TASKS: dict[str, tuple[str, ...]] = {
    "classify": ("classification",),
    "faces": ("face_detection",),
    "landmarks": ("landmarks", "landmark_heatmaps"),
    "digits": ("digits",),
    "detect": ("detection",),
}
# The name a route looks for first when no served model is marked default for its task.
NOT_SERVED_HINTS = {
    "detect": "put darknet TinyYOLOv2 weights at weights/detector/yolov2-tiny-voc.weights (configs/models.yaml says "
              "where to get them), run `make models`, and serve it with `args.models: {detector: {}}` in serve_config.yaml",
}
CONVENTIONAL = {"classify": "classifier", "faces": "face_detector", "landmarks": "landmarks", "digits": "digits",
                "detect": "detector"}


class ServedModel(BaseModel):
    """One served model: a repository model behind its own deployment (the version it serves is that
    deployment's ``user_config.version``, so it can change live)."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field("", description="the repository model (default: the served name)")
    deployment: str = Field("", description="the deployment's name in serve_config.yaml (default: the served name)")
    default: bool = Field(False, description="the model its task's routes use when a request names none")

    @field_validator("model", "deployment")
    @classmethod
    def _name(cls, value: str) -> str:
        if value and not NAME.match(value):
            raise ValueError(f"{value!r}: letters, digits, '_', '-', '.' only, at most 64")
        return value


def served_models(given: dict[str, ServedModel | str | None]) -> dict[str, ServedModel]:
    """The built-ins with ``given`` merged over them, names filled in, deployment names checked unique."""
    out: dict[str, ServedModel] = {name: ServedModel() for name in BUILTIN_DEPLOYMENTS}
    for name, value in given.items():
        if not NAME.match(name):
            raise ValueError(f"served model name {name!r}: letters, digits, '_', '-', '.' only, at most 64")
        if value is None:
            out.pop(name, None)
        else:
            out[name] = ServedModel(model=value) if isinstance(value, str) else value
    filled = {name: s.model_copy(update={"model": s.model or name,
                                         "deployment": s.deployment or BUILTIN_DEPLOYMENTS.get(name, name)})
              for name, s in out.items()}
    seen: dict[str, str] = {}
    for name, s in filled.items():
        if s.deployment in seen or s.deployment == "Preprocessor":
            raise ValueError(f"served models {seen.get(s.deployment, 'the ingress')!r} and {name!r} "
                             f"share the deployment name {s.deployment!r}")
        seen[s.deployment] = name
    return filled


def choose(route: str, requested: str | None, served: dict[str, bool], tasks: dict[str, str | None]) -> str:
    """The served model that answers ``route``.

    ``served``: served name -> marked default; ``tasks``: served name -> its card's task, for the
    models known so far (None: unavailable). Raises UnknownModel (404) for a name that is not served
    or serves another task, ModelUnavailable (503) when no served model has the route's task."""
    wanted = ROUTE_TASKS[route]
    if requested is not None:
        if requested not in served:
            of_task = sorted(n for n in served if tasks.get(n) in wanted)
            raise UnknownModel(f"no served model {requested!r}; {route} serves {of_task or 'none'}",
                               served=sorted(served))
        task = tasks.get(requested)
        if task is not None and task not in wanted:
            raise UnknownModel(f"model {requested!r} serves task {task!r}, not {' or '.join(wanted)}")
        return requested
    marked = sorted(n for n, is_default in served.items() if is_default and tasks.get(n) in wanted)
    if marked:
        return marked[0]
    if CONVENTIONAL[route] in served:
        return CONVENTIONAL[route]
    of_task = sorted(n for n in served if tasks.get(n) in wanted)
    if of_task:
        return of_task[0]
    raise ModelUnavailable(f"no served model serves {' or '.join(wanted)} (the {route} route): "
                           f"{NOT_SERVED_HINTS.get(route, 'add one to args.models in serve_config.yaml')} (docs/models.md)")
