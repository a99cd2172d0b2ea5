"""``lensgraph client classify|faces|landmarks|digits|detect IMAGE...``: call a running server and print
readable results (a table per image), or ``--json`` for machines."""

from __future__ import annotations

import argparse
import json
import mimetypes
import os
import sys
from pathlib import Path
from typing import Any

DEFAULT_URL = os.environ.get("LENSGRAPH_URL", "http://127.0.0.1:8000")
ROUTES = {"classify": "/v1/classify", "faces": "/v1/faces", "landmarks": "/v1/landmarks", "digits": "/v1/digits",
          "detect": "/v1/detect"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("client", help="send images to a running lensgraph server")
    p.add_argument("route", choices=[*ROUTES, "models"], help="what to ask")
    p.add_argument("images", nargs="*", type=Path, help="image files")
    p.add_argument("--url", default=DEFAULT_URL, help=f"server base URL (default {DEFAULT_URL}, or $LENSGRAPH_URL)")
    p.add_argument("--json", action="store_true", help="print the raw JSON responses")
    p.add_argument("--top-k", type=int, default=None, help="classify: number of classes")
    p.add_argument("--profile", default=None, help="classify: standard | zoom-crop-pad")
    p.add_argument("--seed", type=int, default=None, help="classify zoom-crop-pad / digits: reproducible randomness")
    p.add_argument("--model", default=None, help="a served model of the route's task (GET /v1/models); default: the app's")
    p.add_argument("--timeout", type=float, default=60.0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import httpx

    base = args.url.rstrip("/")
    with httpx.Client(timeout=args.timeout) as client:
        if args.route == "models":
            response = client.get(base + "/v1/models")
            _print_or_fail(response, args, _models_table)
            return 0 if response.status_code == 200 else 1
        if not args.images:
            print("error: give at least one image", file=sys.stderr)
            return 2
        model_param = "landmark_model" if args.route == "faces" else "model"
        params = {k: v for k, v in (("top_k", args.top_k), ("profile", args.profile), ("seed", args.seed),
                                    (model_param, args.model)) if v is not None}
        status = 0
        for path in args.images:
            if not path.is_file():
                print(f"{path}: no such file", file=sys.stderr)
                status = 1
                continue
            mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            try:
                response = client.post(base + ROUTES[args.route], params=params,
                                       files={"file": (path.name, path.read_bytes(), mime)})
            except httpx.HTTPError as exc:
                print(f"cannot reach {base}: {exc}", file=sys.stderr)
                return 1
            if not args.json:
                print(f"== {path}")
            ok = _print_or_fail(response, args, FORMATTERS[args.route])
            status = status or (0 if ok else 1)
    return status


def _print_or_fail(response, args, formatter) -> bool:
    try:
        body = response.json()
    except ValueError:
        body = {"error": "not_json", "message": response.text[:200]}
    if args.json:
        print(json.dumps(body, indent=2))
    elif response.status_code == 200:
        print(formatter(body))
    else:
        print(f"  HTTP {response.status_code} {body.get('error')}: {body.get('message')}")
    return response.status_code == 200


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    cells = [tuple(str(c) for c in header)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def _model_note(ref: dict[str, Any]) -> str:
    return f"{ref['name']} v{ref['version']}" + ("" if ref.get("weights_real") else " (weights NOT REAL)")


def _classify(body: dict[str, Any]) -> str:
    rows = [(i + 1, p["class_id"], p["label"], f"{p['confidence']:.4f}") for i, p in enumerate(body["predictions"])]
    stats = body["embedding_stats"]
    return (_table(("RANK", "CLASS", "LABEL", "CONFIDENCE"), rows)
            + f"\n  embedding: dim {stats['dim']}, mean {stats['mean']:.4f}, variance {stats['variance']:.4f}"
            + f"\n  model: {_model_note(body['model'])}, preprocessing {body['preprocessing']}")


def _faces(body: dict[str, Any]) -> str:
    lines = [f"  {len(body['faces'])} face(s) in {body['image']['width']}x{body['image']['height']}"]
    for n, face in enumerate(body["faces"], 1):
        b = face["box"]
        lines.append(f"  face {n}: score {face['score']:.3f}, box ({b['x1']:.0f}, {b['y1']:.0f})-({b['x2']:.0f}, {b['y2']:.0f})")
        if face["landmarks"]:
            lines.append(_table(("LANDMARK", "X", "Y"), [(m["name"], f"{m['x']:.1f}", f"{m['y']:.1f}") for m in face["landmarks"]]))
    return "\n".join(lines)


def _landmarks(body: dict[str, Any]) -> str:
    return _table(("LANDMARK", "X", "Y"), [(m["name"], f"{m['x']:.1f}", f"{m['y']:.1f}") for m in body["landmarks"]])


def _digits(body: dict[str, Any]) -> str:
    if body.get("blank"):
        return "  no digit: the image holds no readable ink"
    rows = [("digit", body["digit"]), ("probability", f"{body['probability']:.4f}"), ("reliable", body["reliable"])]
    rows += [(k, f"{v:.4f}" if isinstance(v, float) else v) for k, v in (body.get("uncertainty") or {}).items()]
    return _table(("FIELD", "VALUE"), rows)


def _detect(body: dict[str, Any]) -> str:
    rows = [(d["label"], d["class_id"], f"{d['score']:.3f}", "(%.0f, %.0f)-(%.0f, %.0f)" % tuple(d["box"]))
            for d in body["detections"]]
    return (_table(("LABEL", "CLASS", "SCORE", "BOX"), rows)
            + f"\n  {body['count']} object(s) in {body['image']['width']}x{body['image']['height']}; "
              f"model: {_model_note(body['model'])}")


def _models_table(body: dict[str, Any]) -> str:
    rows = []
    for m in body["models"]:
        info = m.get("info") or {}
        batching = info.get("batching", {})
        rows.append((m["name"], m["status"], info.get("version", "-"), "yes" if info.get("weights", {}).get("real") else "no",
                     batching.get("max_batch_size", "-"), m.get("reason") or ""))
    return _table(("MODEL", "STATUS", "VERSION", "REAL", "MAX_BATCH", "REASON"), rows)


FORMATTERS = {"classify": _classify, "faces": _faces, "landmarks": _landmarks, "digits": _digits, "detect": _detect}
