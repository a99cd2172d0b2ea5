"""Validate a custom resource offline against its CustomResourceDefinition, the way the API server would.

A CRD's ``openAPIV3Schema`` is a Kubernetes *structural schema*, not plain JSON Schema. Validated
as-is, it would accept almost anything: JSON Schema allows unknown keys, while the API server (with
``kubectl``'s default strict field validation) rejects them. :func:`to_json_schema` converts it:

* objects with ``properties`` get ``additionalProperties: false`` unless
  ``x-kubernetes-preserve-unknown-fields`` says otherwise, so a misspelled field is an error;
* ``x-kubernetes-int-or-string`` becomes ``anyOf: [integer, string]``; ``nullable`` adds ``null``;
* ``x-kubernetes-list-type: map|set`` becomes a uniqueness check (map: on ``x-kubernetes-list-map-keys``,
  with the key fields' defaults applied, as the API server does);
* formats ``int32``/``int64`` are range-checked;
* the root gets what the API server checks itself: ``apiVersion``, ``kind`` and a strict ``metadata``
  (name as a DNS subdomain).

What it cannot do: the CEL rules (``x-kubernetes-validations``) are ignored, as are defaults.
``jsonschema`` is a dev dependency, imported only here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
OBJECT_META = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": DNS_SUBDOMAIN, "maxLength": 253},
        "namespace": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
        "labels": STRING_MAP,
        "annotations": STRING_MAP,
        "finalizers": {"type": "array", "items": {"type": "string"}},
    },
}
_SCHEMA_MAPS = ("properties", "patternProperties", "definitions")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
_SCHEMA_ONE = ("items", "additionalProperties", "not")


def to_json_schema(node: Any) -> Any:
    """One structural-schema node (and everything under it) as JSON Schema."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _SCHEMA_MAPS:
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in _SCHEMA_LISTS:
            out[key] = [to_json_schema(sub) for sub in value]
        elif key in _SCHEMA_ONE:
            out[key] = to_json_schema(value)
        elif key in ("x-kubernetes-list-type", "x-kubernetes-list-map-keys"):
            out[key] = value  # kept: the uniqueness keyword below reads them
        elif key.startswith("x-kubernetes-") or key in ("nullable", "default", "description"):
            continue
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if node.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if (
        out.get("type") == "object"
        and "properties" in out
        and "additionalProperties" not in out
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if node.get("x-kubernetes-list-type") == "map" and isinstance(node.get("items"), dict):
        defaults = {k: v["default"] for k, v in (node["items"].get("properties") or {}).items() if "default" in v}
        out["x-list-map-defaults"] = defaults
    return out


def _list_type(validator, list_type, instance, schema):
    from jsonschema import ValidationError

    if not validator.is_type(instance, "array"):
        return
    if list_type == "set":
        seen = []
        for item in instance:
            if item in seen:
                yield ValidationError(f"duplicate entry {item!r} in a list of type set")
            seen.append(item)
    elif list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys") or []
        defaults = schema.get("x-list-map-defaults") or {}
        seen_keys = set()
        for item in instance:
            if not isinstance(item, dict):
                continue
            key = tuple(repr(item.get(k, defaults.get(k))) for k in keys)
            if key in seen_keys:
                shown = ", ".join(f"{k}={item.get(k, defaults.get(k))!r}" for k in keys)
                yield ValidationError(f"duplicate entry with {shown} in a list keyed by {keys}")
            seen_keys.add(key)


def crd_schema(crd: dict[str, Any], version: str | None = None) -> dict[str, Any]:
    """The JSON Schema for one served version of ``crd`` (default: the first, which KubeRay's is v1)."""
    versions = crd["spec"]["versions"]
    chosen = versions[0] if version is None else next(v for v in versions if v["name"] == version)
    schema = to_json_schema(chosen["schema"]["openAPIV3Schema"])
    schema.setdefault("properties", {})
    schema["properties"]["apiVersion"] = {"const": f"{crd['spec']['group']}/{chosen['name']}"}
    schema["properties"]["kind"] = {"const": crd["spec"]["names"]["kind"]}
    schema["properties"]["metadata"] = OBJECT_META
    schema["properties"].pop("status", None)  # written by the operator, never by a manifest
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata", "spec"})
    schema["additionalProperties"] = False
    return schema


def validator_for(crd_path: Path, version: str | None = None):
    """A jsonschema validator (draft 7, with the int32/int64 formats and the list-type keyword)."""
    import jsonschema

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRD is 1 MB of YAML
    schema = crd_schema(yaml.load(Path(crd_path).read_text(), Loader=loader), version)
    formats = jsonschema.FormatChecker()
    for name, bits in (("int32", 32), ("int64", 64)):
        formats.checks(name)(lambda value, bits=bits: not isinstance(value, int) or -(2 ** (bits - 1)) <= value < 2 ** (bits - 1))
    cls = jsonschema.validators.extend(jsonschema.Draft7Validator, {"x-kubernetes-list-type": _list_type})
    cls.check_schema(schema)
    return cls(schema, format_checker=formats)


def problems(validator, manifest: dict[str, Any]) -> list[str]:
    """Every error as 'path: message', sorted by path; empty when the manifest is valid."""
    out = []
    for error in validator.iter_errors(manifest):
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
        out.append(f"{path or '<root>'}: {error.message}")
    return sorted(out)
