"""Group photos composed from the sample face photos, with the true face boxes, for recall tests.

A scene is an n x n grid of cells, each holding one face photo resized to the cell. The true box
of each face is where the detector finds it in the source photo alone (whole photo, letterboxed),
scaled into its cell: recall then asks whether the served path finds in a crowd what it finds in
a portrait.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

FACE_FILES = ("faces/astronaut.png", "faces/biden.jpg", "faces/obama.jpg")


def face_photos(assets: Path) -> list[np.ndarray]:
    """The single-face sample photos as RGB arrays."""
    from lensgraph.imaging.decode import decode_image

    return [decode_image((Path(assets) / name).read_bytes()).pixels for name in FACE_FILES]


def reference_boxes(detect, photos: list[np.ndarray]) -> list[np.ndarray]:
    """The best box ``detect(photo) -> [face dicts]`` finds in each photo, as x1, y1, x2, y2."""
    out = []
    for photo in photos:
        best = max(detect(photo), key=lambda f: f["score"])
        out.append(np.array([best["x1"], best["y1"], best["x2"], best["y2"]], np.float64))
    return out


def grid_scene(photos: list[np.ndarray], boxes: list[np.ndarray], n: int, cell: tuple[int, int] = (200, 240)
               ) -> tuple[np.ndarray, np.ndarray]:
    """An n x n grid of the photos (cycled), and the [n*n, 4] true face boxes in its pixels."""
    w, h = cell
    scene = np.zeros((h * n, w * n, 3), np.uint8)
    truth = []
    for k in range(n * n):
        r, c = divmod(k, n)
        photo, box = photos[k % len(photos)], boxes[k % len(photos)]
        scene[r * h : (r + 1) * h, c * w : (c + 1) * w] = cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA)
        sx, sy = w / photo.shape[1], h / photo.shape[0]
        truth.append([c * w + box[0] * sx, r * h + box[1] * sy, c * w + box[2] * sx, r * h + box[3] * sy])
    return scene, np.array(truth)


def match(truth: np.ndarray, found: np.ndarray, iou: float = 0.4) -> tuple[int, int]:
    """(true faces found, detections that matched no face or one already matched): greedy, best IoU first."""
    if len(found) == 0:
        return 0, 0
    overlaps = iou_matrix(truth, found)
    matched_truth, extra = set(), 0
    for j in np.argsort(-overlaps.max(axis=0)):
        i = int(np.argmax(np.where([t in matched_truth for t in range(len(truth))], -1, overlaps[:, j])))
        if overlaps[i, j] >= iou and i not in matched_truth:
            matched_truth.add(i)
        else:
            extra += 1
    return len(matched_truth), extra


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[len(a), len(b)] IoU of two sets of x1, y1, x2, y2 boxes."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = lambda z: (z[:, 2] - z[:, 0]) * (z[:, 3] - z[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


BACKGROUND_GLOBS = ("imagenet/*.JPEG",)
SHAPES = ((4, 3), (3, 4), (16, 9), (1, 1))
ORIENTATIONS = (3, 6, 8)  # EXIF: 180 degrees, 90 clockwise, 90 counter-clockwise to display upright


def backgrounds(assets: Path) -> list[np.ndarray]:
    """The non-face photos scenes are drawn on (the ImageNet samples)."""
    from lensgraph.imaging.decode import decode_image

    return [decode_image(p.read_bytes()).pixels for pattern in BACKGROUND_GLOBS for p in sorted(Path(assets).glob(pattern))]


def random_scene(photos: list[np.ndarray], boxes: list[np.ndarray], grounds: list[np.ndarray], seed: int,
                 min_face: int = 40) -> dict:
    """A seeded collage of 1-24 faces at mixed scales (``min_face`` px tall to most of the frame) among
    2-6 non-face photos (``grounds``, the ImageNet samples) on a smooth coloured field, sometimes
    grayscale, sometimes stored rotated with an EXIF orientation.

    Each face is pasted with some context: its source photo cropped to 1.8x the face box; faces do
    not overlap each other. Tiling one background photo over the canvas was tried first: its seams,
    and the blur of an upscaled photo, looked like faces to the detector, which measured the scene
    maker rather than the service. Returns ``pixels`` (upright RGB), ``truth`` [F, 4] boxes in them,
    ``gray`` and ``orientation`` (0: none)."""
    rng = np.random.default_rng(seed)
    aw, ah = SHAPES[int(rng.integers(len(SHAPES)))]
    width = int(rng.integers(800, 2401))
    height = int(round(width * ah / aw))
    field = cv2.resize(rng.integers(40, 216, (4, 4, 3)).astype(np.uint8), (width, height), interpolation=cv2.INTER_CUBIC)
    scene = np.ascontiguousarray(field)
    for _ in range(int(rng.integers(2, 7)) if grounds else 0):
        ground = grounds[int(rng.integers(len(grounds)))]
        scale = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
        patch = cv2.resize(ground, None, fx=scale, fy=scale,
                           interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)[:height, :width]
        ph, pw = patch.shape[:2]
        px, py = int(rng.integers(0, width - pw + 1)), int(rng.integers(0, height - ph + 1))
        scene[py : py + ph, px : px + pw] = patch
    occupied = np.zeros((height, width), bool)
    truth = []
    for _ in range(int(rng.integers(1, 25))):
        k = int(rng.integers(len(photos)))
        photo, box = photos[k], boxes[k]
        face_h = float(np.exp(rng.uniform(np.log(min_face), np.log(0.6 * height))))
        scale = face_h / (box[3] - box[1])
        cx, cy, bw, bh = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box[2] - box[0], box[3] - box[1]
        x0, y0 = max(0, int(cx - 0.9 * bw)), max(0, int(cy - 0.9 * bh))
        x1, y1 = min(photo.shape[1], int(cx + 0.9 * bw)), min(photo.shape[0], int(cy + 0.9 * bh))
        patch = cv2.resize(photo[y0:y1, x0:x1], None, fx=scale, fy=scale,
                           interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        ph, pw = patch.shape[:2]
        if ph >= height or pw >= width:
            continue
        for _attempt in range(30):
            px, py = int(rng.integers(0, width - pw)), int(rng.integers(0, height - ph))
            if not occupied[py : py + ph, px : px + pw].any():
                scene[py : py + ph, px : px + pw] = patch
                occupied[py : py + ph, px : px + pw] = True
                truth.append([px + (box[0] - x0) * scale, py + (box[1] - y0) * scale,
                              px + (box[2] - x0) * scale, py + (box[3] - y0) * scale])
                break
    gray = bool(rng.random() < 0.2)
    if gray:
        scene = np.repeat(cv2.cvtColor(scene, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    orientation = int(ORIENTATIONS[int(rng.integers(len(ORIENTATIONS)))]) if rng.random() < 0.2 else 0
    return {"pixels": scene, "truth": np.array(truth).reshape(-1, 4), "gray": gray, "orientation": orientation}


def encode(scene: dict, quality: int = 92) -> bytes:
    """The scene as a JPEG upload: stored rotated, with the EXIF orientation that turns it upright."""
    import io

    from PIL import Image

    pixels = scene["pixels"]
    stored = {0: pixels, 3: np.rot90(pixels, 2), 6: np.rot90(pixels, 1), 8: np.rot90(pixels, 3)}[scene["orientation"]]
    image = Image.fromarray(np.ascontiguousarray(stored))
    exif = Image.Exif()
    if scene["orientation"]:
        exif[0x0112] = scene["orientation"]
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, exif=exif.tobytes())
    return buffer.getvalue()
