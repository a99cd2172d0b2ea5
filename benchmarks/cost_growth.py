"""How a request's cost grows with what it carries: megapixels (decode and resize) for classify and
faces, and faces per image (one landmark crop each) for faces.

    python -m benchmarks.cost_growth [--seconds 8] [--concurrency 8] [--out docs/benchmarks]

One application, started as benchmarks/systems.py's lensgraph() starts it. Every point is a
closed-loop load after a warm-up; its cost is the CPU seconds of the server's whole process tree
(benchmarks.process_stats.cpu_seconds) divided by the requests completed.
- Megapixels: the real asset photos resized to 0.1, 1, 4 and 12 MP, JPEG quality 90 (lower when a
  12 MP file would not fit the ingress's upload limit; the quality and byte size are recorded).
  Classify: the two ImageNet photos; faces: faces/obama.jpg (1 face) and face_detector/linzaer_imgs_2.jpg (4).
  Upscaled photos are smoother than a camera's, so their files are smaller than a real 12 MP photo's.
- Faces per image: 1, 4, 16 and 64 face tiles on the same 1600 x 1600 canvas (so only the number of
  faces changes, not the pixels). The tiles are square crops around the faces the service itself
  finds in the five face photos, kept only if the service finds exactly one face in the crop alone.
  Since issue 13 the detector sees the whole canvas letterboxed plus a pyramid of overlapping tiles
  (docs/faces.md), so megapixels cost detector views too; the report gives the faces found beside
  the faces placed, and landmark work follows the faces found.
Writes <out>/cost_growth.json, cost_growth.md and the plots cost_growth_megapixels.png, cost_growth_faces.png.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import math
import sys
from pathlib import Path

import httpx
import numpy as np
import yaml
from PIL import Image

from benchmarks.compare import HOST, machine
from benchmarks.cpu_accounting import served_app
from benchmarks.loadgen import build_request, run_load
from benchmarks.process_stats import cpu_seconds
from benchmarks.workloads import CLASSIFY_PHOTOS, FACE_PHOTOS, PATHS
from lensgraph import settings

ROOT = Path(__file__).resolve().parents[1]
MEGAPIXELS = (0.1, 1, 4, 12)
FACE_COUNTS = (1, 4, 16, 64)
CANVAS = 1600
SIZE_PHOTOS = {"classify": CLASSIFY_PHOTOS, "faces": ("faces/obama.jpg", "face_detector/linzaer_imgs_2.jpg")}


def max_upload_bytes() -> int:
    """The ingress's upload limit from serve_config.yaml (8 MiB if the config does not say)."""
    app = yaml.safe_load((ROOT / "serve_config.yaml").read_text())["applications"][0]
    return int((app.get("args") or {}).get("max_upload_bytes", 8 * 2**20))


def jpeg(image: Image.Image, limit: int, quality: int = 90) -> tuple[bytes, int]:
    """The image as JPEG at ``quality``, lowered by 5 until it fits ``limit`` bytes: (bytes, quality)."""
    while True:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        if buffer.tell() < limit * 0.98 or quality <= 50:
            return buffer.getvalue(), quality
        quality -= 5


def resized(image: Image.Image, megapixels: float) -> Image.Image:
    """``image`` scaled (aspect kept) to ``megapixels`` million pixels."""
    scale = math.sqrt(megapixels * 1e6 / (image.width * image.height))
    return image.convert("RGB").resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)


def encoded(image: Image.Image) -> bytes:
    return jpeg(image, max_upload_bytes())[0]


def faces_found(port: int, body: bytes) -> list[dict]:
    """The faces the service finds in one image (one request)."""
    r = httpx.post(f"http://{HOST}:{port}{PATHS['faces']}", content=body, headers={"Content-Type": "image/jpeg"},
                   timeout=120)
    r.raise_for_status()
    return r.json()["faces"]


def face_tiles(port: int, assets: Path, side: int = 400) -> list[Image.Image]:
    """Square crops (twice the box) around every face found in the face photos, kept when the
    service finds exactly one face in the crop alone at ``side`` pixels."""
    tiles = []
    for name in FACE_PHOTOS:
        photo = Image.open(assets / name).convert("RGB")
        for face in faces_found(port, encoded(photo)):
            b = face["box"]
            cx, cy, half = (b["x1"] + b["x2"]) / 2, (b["y1"] + b["y2"]) / 2, max(b["x2"] - b["x1"], b["y2"] - b["y1"])
            tile = photo.crop((round(cx - half), round(cy - half), round(cx + half), round(cy + half))).resize((side, side))
            if len(faces_found(port, encoded(tile))) == 1:
                tiles.append(tile)
    if not tiles:
        raise RuntimeError("no face tile: the service found no single face in any crop")
    return tiles


def grid(tiles: list[Image.Image], count: int, canvas: int = CANVAS) -> Image.Image:
    """``count`` (a square number) tiles, cycled, on a canvas x canvas image."""
    per_row = math.isqrt(count)
    side = canvas // per_row
    image = Image.new("RGB", (canvas, canvas), "white")
    for k in range(count):
        image.paste(tiles[k % len(tiles)].resize((side, side), Image.LANCZOS), ((k % per_row) * side, (k // per_row) * side))
    return image


def measure(running, path: str, bodies: list[bytes], concurrency: int, seconds: float) -> dict:
    """Client summary and CPU ms per request of the server's tree under closed-loop load."""
    requests = [build_request(HOST, running.port, path, body, "image/jpeg") for body in bodies]
    run_load(HOST, running.port, requests, concurrency, min(3.0, seconds), warmup_s=0)
    cpu0 = cpu_seconds(running.roots)
    result = run_load(HOST, running.port, requests, concurrency, seconds, warmup_s=0)
    cpu = cpu_seconds(running.roots) - cpu0
    return {**result.summary(), "cpu_ms_per_request": round(1000 * cpu / result.completed, 2) if result.completed else None,
            "statuses": {str(k): v for k, v in sorted(result.statuses.items())}}


def megapixel_points(running, assets: Path, concurrency: int, seconds: float) -> list[dict]:
    limit = max_upload_bytes()
    points = []
    for route, photos in SIZE_PHOTOS.items():
        for mp in MEGAPIXELS:
            images = [resized(Image.open(assets / p), mp) for p in photos]
            files = [jpeg(image, limit) for image in images]
            point = {"route": route, "megapixels": mp, "photos": list(photos),
                     "sizes": [f"{i.width}x{i.height}" for i in images], "bytes": [len(b) for b, _ in files],
                     "jpeg_quality": [q for _, q in files]}
            if route == "faces":
                point["faces_found"] = [len(faces_found(running.port, b)) for b, _ in files]
            point.update(measure(running, PATHS[route], [b for b, _ in files], concurrency, seconds))
            print(json.dumps(point), flush=True)
            points.append(point)
    return points


def face_points(running, assets: Path, concurrency: int, seconds: float) -> tuple[list[dict], int]:
    tiles = face_tiles(running.port, assets)
    points = []
    for count in FACE_COUNTS:
        body = encoded(grid(tiles, count))
        point = {"faces_placed": count, "tile_px": CANVAS // math.isqrt(count), "megapixels": CANVAS**2 / 1e6,
                 "bytes": len(body), "faces_found": len(faces_found(running.port, body)),
                 **measure(running, PATHS["faces"], [body], concurrency, seconds)}
        print(json.dumps(point), flush=True)
        points.append(point)
    return points, len(tiles)


def linear_fit(xs: list[float], ys: list[float]) -> dict | None:
    """Least squares y = a + b x and its R^2 (None with fewer than 3 usable points)."""
    pairs = [(x, y) for x, y in zip(xs, ys) if y is not None]
    if len(pairs) < 3:
        return None
    x, y = np.array(pairs, dtype=float).T
    b, a = np.polyfit(x, y, 1)
    residual = float(((y - (a + b * x)) ** 2).sum())
    total = float(((y - y.mean()) ** 2).sum())
    return {"intercept": round(float(a), 2), "slope": round(float(b), 3),
            "r2": round(1 - residual / total, 4) if total else None}


def fits(result: dict) -> dict:
    out = {}
    for route in SIZE_PHOTOS:
        pts = [p for p in result["megapixels"] if p["route"] == route]
        out[f"{route}: CPU ms per MP"] = linear_fit([p["megapixels"] for p in pts], [p["cpu_ms_per_request"] for p in pts])
    pts = result["faces"]
    out["faces: CPU ms per face found"] = linear_fit([p["faces_found"] for p in pts], [p["cpu_ms_per_request"] for p in pts])
    return out


def plot(result: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["cost_growth_megapixels.png", "cost_growth_faces.png"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for route in SIZE_PHOTOS:
        pts = [p for p in result["megapixels"] if p["route"] == route]
        for ax, key in zip(axes, ("cpu_ms_per_request", "p99_ms")):
            ax.plot([p["megapixels"] for p in pts], [p[key] for p in pts], "o-", label=f"/v1/{route}")
    for ax, title in zip(axes, ("CPU ms per request (server tree)", "p99 latency, ms")):
        ax.set(xlabel="megapixels", title=title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / names[0], dpi=110)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    pts = result["faces"]
    for ax, key, title in zip(axes, ("cpu_ms_per_request", "p99_ms"), ("CPU ms per request (server tree)", "p99 latency, ms")):
        ax.plot([p["faces_placed"] for p in pts], [p[key] for p in pts], "o-", label="/v1/faces")
        for k, p in enumerate(pts):
            if p[key] is not None:
                ax.annotate(f"found {p['faces_found']}", (p["faces_placed"], p[key]), textcoords="offset points",
                            xytext=(4, -12 if k % 2 else 6), fontsize=8)
        ax.set(xlabel=f"faces placed ({CANVAS}x{CANVAS} canvas)", title=title)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / names[1], dpi=110)
    plt.close("all")
    return names


def render(result: dict) -> str:
    """The markdown report."""
    lines = ["# Cost growth: image size and faces per image", "",
             f"Reproduce: `{result['command']}` ({result['seconds']:g} s per point after a warm-up, "
             f"{result['concurrency']} connections). Measured {result['date']} on {result['machine']}. "
             "CPU ms/request: CPU time of the whole server process tree over the requests completed.", "",
             "## Megapixels", "",
             "| route | MP | sizes | bytes | JPEG quality | faces found | CPU ms/req | req/s | p50 ms | p99 ms | failures |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for p in result["megapixels"]:
        found = ", ".join(map(str, p.get("faces_found", []))) or "-"
        lines.append(f"| /v1/{p['route']} | {p['megapixels']:g} | {', '.join(p['sizes'])} | "
                     f"{', '.join(f'{b / 1e6:.2f} MB' for b in p['bytes'])} | {', '.join(map(str, p['jpeg_quality']))} | "
                     f"{found} | {p['cpu_ms_per_request']} | {p['throughput_rps']} | {p['p50_ms']} | {p['p99_ms']} | "
                     f"{p['failures']} |")
    lines += ["", f"![CPU and p99 against megapixels]({result['plots'][0]})", "",
              "## Faces per image", "",
              f"{result['tiles']} distinct face tiles, cycled, on a {CANVAS} x {CANVAS} canvas "
              f"({CANVAS**2 / 1e6:.2f} MP) for every count. Faces found is what the service returned for the image; "
              "the landmark model runs once per face found, not per face placed.", "",
              "| faces placed | tile px | faces found | bytes | CPU ms/req | req/s | p50 ms | p99 ms | failures |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for p in result["faces"]:
        lines.append(f"| {p['faces_placed']} | {p['tile_px']} | {p['faces_found']} | {p['bytes'] / 1e6:.2f} MB | "
                     f"{p['cpu_ms_per_request']} | {p['throughput_rps']} | {p['p50_ms']} | {p['p99_ms']} | {p['failures']} |")
    lines += ["", f"![CPU and p99 against faces per image]({result['plots'][1]})", "",
              "## Linear fits (CPU ms/request = a + b x)", "", "| what | a (ms) | b | R² |", "|---|---:|---:|---:|"]
    for what, f in result["fits"].items():
        lines.append(f"| {what} | {f['intercept']} | {f['slope']} | {f['r2']} |" if f else f"| {what} | | | |")
    lines += ["", "Four points per line and a few hundred requests or fewer per point at the larger sizes: read the "
              "fits as a check of the shape, and the p99 of the slow points as rough.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per point")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks")
    args = parser.parse_args(argv)
    assets = settings.assets_dir()
    if assets is None:
        sys.exit("set LENSGRAPH_ASSETS to the assets folder")
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict = {"command": " ".join(["python -m benchmarks.cost_growth", *(sys.argv[1:] if argv is None else argv)]),
                    "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
                    "seconds": args.seconds, "concurrency": args.concurrency}
    with served_app() as (_, running, _app):
        result["megapixels"] = megapixel_points(running, assets, args.concurrency, args.seconds)
        result["faces"], result["tiles"] = face_points(running, assets, args.concurrency, args.seconds)
    result["fits"] = fits(result)
    result["plots"] = plot(result, args.out)
    (args.out / "cost_growth.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "cost_growth.md").write_text(render(result))
    print(render(result))


if __name__ == "__main__":
    main()
