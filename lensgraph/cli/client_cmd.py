"""``lensgraph client classify|faces|landmarks|digits|detect IMAGE|FOLDER...``: call a running server and
print readable results (a table per image), or ``--json`` for machines; ``--save PATH`` keeps the pictures the
server draws (``render=true``); ``lensgraph client check`` runs preset checks against a deployment
(lensgraph/cli/client_check.py). Folders are searched recursively for images (lensgraph/cli/client_files.py);
more than three images show a progress bar on stderr."""

from __future__ import annotations

import argparse
import json
import mimetypes
import os
import sys
from pathlib import Path
from typing import Any

from lensgraph.cli.client_files import Input, Progress, expand_inputs, extension_for, save_targets

DEFAULT_URL = os.environ.get("LENSGRAPH_URL", "http://127.0.0.1:8000")
API_KEY_ENV = "LENSGRAPH_API_KEY"
ROUTES = {"classify": "/v1/classify", "faces": "/v1/faces", "landmarks": "/v1/landmarks", "digits": "/v1/digits",
          "detect": "/v1/detect"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("client", help="send images to a running lensgraph server, or check a deployment")
    p.add_argument("route", choices=[*ROUTES, "models", "check", "watch"],
                   help="what to ask; check: preset checks against the deployment (PASS/FAIL, exit 1 on a failure); "
                        "watch: probe every route periodically (docs/clients.md)")
    p.add_argument("images", nargs="*", type=Path, help="image files or folders (searched recursively for images)")
    p.add_argument("--url", default=DEFAULT_URL, help=f"server base URL (default {DEFAULT_URL}, or $LENSGRAPH_URL)")
    p.add_argument("--api-key", default=os.environ.get(API_KEY_ENV) or None,
                   help=f"sent as 'Authorization: Bearer KEY' (default ${API_KEY_ENV}); docs/security.md")
    p.add_argument("--json", action="store_true", help="print the raw JSON responses")
    p.add_argument("--top-k", type=int, default=None, help="classify: number of classes")
    p.add_argument("--profile", default=None, help="classify: standard | zoom-crop-pad")
    p.add_argument("--seed", type=int, default=None, help="classify zoom-crop-pad / digits: reproducible randomness")
    p.add_argument("--model", default=None, help="a served model of the route's task (GET /v1/models); default: the app's")
    p.add_argument("--save", default=None, metavar="PATH",
                   help="ask for the server's picture of each answer (render=true) and save it: a file for one image, "
                        "a folder for several (<input stem>.<route>.jpg)")
    p.add_argument("--format", choices=("jpeg", "png"), default=None,
                   help="--save: picture format (default: png when PATH ends in .png, else jpeg)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--assets", default=None, help="check: the assets folder (default $LENSGRAPH_ASSETS)")
    p.add_argument("--requests", type=int, default=20, help="check: classify requests timed for p50/p99")
    p.add_argument("--max-p99-ms", type=float, default=None, help="check: fail when classify p99 is above this")
    p.add_argument("--every", default="10s", help="watch: time between rounds of probes (10s, 500ms, 2m)")
    p.add_argument("--count", type=int, default=0, help="watch: stop after this many rounds (0: until Ctrl-C)")
    p.add_argument("--window", type=int, default=100, help="watch: probes per route the p50/p99 are taken over")
    p.add_argument("--textfile", default=None, metavar="PATH",
                   help="watch: also write Prometheus text format here (node-exporter's textfile collector)")
    p.set_defaults(func=run)


def auth_headers(api_key: str | None) -> dict[str, str]:
    """The API key as the service expects it (pipelines/guard.py): ``Authorization: Bearer <key>``."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def picture_format(args: argparse.Namespace) -> str:
    """--format, else png for a --save path ending in .png, else jpeg."""
    if args.format:
        return args.format
    return "png" if args.save is not None and Path(args.save).suffix.lower() == ".png" else "jpeg"


def run(args: argparse.Namespace) -> int:
    import httpx

    if args.route == "check":
        from lensgraph.cli import client_check

        return client_check.run(args)
    if args.route == "watch":
        from lensgraph.cli import client_watch

        return client_watch.run(args)
    base = args.url.rstrip("/")
    with httpx.Client(timeout=args.timeout, headers=auth_headers(args.api_key)) as client:
        if args.route == "models":
            response = client.get(base + "/v1/models")
            _print_or_fail(response, args, _models_table)
            return 0 if response.status_code == 200 else 1
        if not args.images:
            print("error: give at least one image", file=sys.stderr)
            return 2
        inputs, problems = expand_inputs(args.images)
        status = 0
        for problem in problems:
            print(problem, file=sys.stderr)
            status = 1
        if not inputs:
            return status
        targets: list[Path] | None = None
        as_folder = False
        if args.save is not None:
            targets, as_folder = save_targets(inputs, args.save, args.route)
            if as_folder and Path(args.save).exists() and not Path(args.save).is_dir():
                print(f"error: --save {args.save}: several pictures need a folder, and this is a file", file=sys.stderr)
                return 2
            if not as_folder and targets[0].resolve() == inputs[0].path.resolve():
                print(f"error: --save {args.save} is the input image itself; choose another path", file=sys.stderr)
                return 2
        model_param = "landmark_model" if args.route == "faces" else "model"
        params: dict[str, Any] = {k: v for k, v in (("top_k", args.top_k), ("profile", args.profile),
                                                    ("seed", args.seed), (model_param, args.model)) if v is not None}
        headers = {}
        if targets is not None:
            params["render"] = "true"
            headers["Accept"] = "image/png" if picture_format(args) == "png" else "image/jpeg"
        progress = Progress(len(inputs), enabled=None if not args.no_progress else False)
        progress.show()
        try:
            for n, item in enumerate(inputs):
                mime = mimetypes.guess_type(item.path.name)[0] or "application/octet-stream"
                try:
                    response = client.post(base + ROUTES[args.route], params=params, headers=headers,
                                           files={"file": (item.path.name, item.path.read_bytes(), mime)})
                except httpx.HTTPError as exc:
                    progress.clear()
                    print(f"cannot reach {base}: {exc}", file=sys.stderr)
                    return 1
                except OSError as exc:
                    progress.clear()
                    print(f"{item.path}: {exc.strerror or exc}", file=sys.stderr)
                    status = 1
                    progress.advance()
                    continue
                progress.clear()
                if targets is None:
                    if not args.json:
                        print(f"== {item.path}")
                    ok = _print_or_fail(response, args, FORMATTERS[args.route])
                else:
                    ok = _save_or_fail(response, args, item, targets[n], as_folder)
                sys.stdout.flush()
                status = status or (0 if ok else 1)
                progress.advance()
        finally:
            progress.close()
    return status


def _save_or_fail(response, args: argparse.Namespace, item: Input, target: Path, add_extension: bool) -> bool:
    """Write the picture the server returned; the answer's JSON (a server without render), or its error, is
    printed as without --save."""
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if response.status_code != 200 or not kind.startswith("image/"):
        if not args.json:
            print(f"== {item.path}")
        ok = _print_or_fail(response, args, FORMATTERS[args.route])
        if ok:
            print(f"{item.path}: the server answered {kind or 'no content type'}, not a picture: it does not "
                  "draw answers (render=true) yet; nothing saved", file=sys.stderr)
        return False
    if add_extension:
        target = target.with_name(target.name + extension_for(kind))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(response.content)
    if args.json:
        print(json.dumps({"input": str(item.path), "saved": str(target), "media_type": kind,
                          "bytes": len(response.content)}))
    else:
        print(f"== {item.path}\n  saved {target} ({kind}, {len(response.content)} bytes)")
    return True


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
