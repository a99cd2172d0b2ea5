"""Locust load tests for lensgraph: one user class per route and a mixed-traffic class.

    locust -f loadtests/locustfile.py --headless --host http://127.0.0.1:8000 -u 8 -r 2 -t 60s MixedUser

or ``make loadtest`` (docs/loadtests.md). Every payload is a real image from ``$LENSGRAPH_ASSETS``
(default: ``../shared/assets`` beside the checkout), read and encoded once when locust imports this
file, so the users spend their time on HTTP, not on disk or PIL.

User classes (the request name in locust's statistics is the route):

    ClassifyUser   POST /v1/classify   the two ImageNet sample photos; the top class must be the right one
    FacesUser      POST /v1/faces      5 photos with 1, 1, 1, 4 and 2 faces; that many faces, 15 landmarks each
    DigitsUser     POST /v1/digits     64 MNIST test digits as PNG, each in both polarities (128 uploads)
    LandmarksUser  POST /v1/landmarks  square face crops of 4 photos; 15 named landmarks inside the crop
    MixedUser      all four routes, weighted classify 4 : digits 3 : faces 2 : landmarks 1

The mix weights are a guess at a plausible product mix (classification and digits are the cheap,
frequent calls; faces runs two models per face; landmarks alone is the rarest), not a measurement.
Change ``MIXED_WEIGHTS`` to model other traffic.

A request counts as a failure unless the status is 200 AND the JSON body holds what the route
promises (docs/api.md); the failure message says what was missing.

Environment:
    LENSGRAPH_ASSETS  the assets folder
    LOADTEST_WAIT     think time between a user's requests: ``0`` (default, closed loop: each user
                      sends its next request as soon as the previous answer arrives), a number of
                      seconds (constant), or ``MIN,MAX`` (uniformly random between the two)
    LOADTEST_SHAPE    ``none`` (default: plain -u/-r/-t), ``step`` or ``ramp``: loadtests/shapes.py
"""

from __future__ import annotations

import csv
import io
import os
import random
from dataclasses import dataclass
from pathlib import Path

import gevent
import numpy as np
from locust import HttpUser, between, constant, events, task
from locust.runners import WorkerRunner
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV
from PIL import Image

from shapes import RampLoadShape, StepLoadShape  # locust puts this file's folder on sys.path

ROOT = Path(__file__).resolve().parents[1]

CLASSIFY_PHOTOS = {  # photo -> the ImageNet class the served classifier must put first
    "imagenet/n01440764_tench.JPEG": 0,
    "imagenet/n01667114_mud_turtle.JPEG": 35,
}
FACE_PHOTOS = {  # photo -> faces in it (the same counts tests/integration/test_api.py asserts)
    "faces/astronaut.png": 1,
    "faces/obama.jpg": 1,
    "faces/biden.jpg": 1,
    "face_detector/linzaer_imgs_2.jpg": 4,
    "face_detector/linzaer_imgs_13.jpg": 2,
}
# The face box UltraFace RFB-320 finds in each photo (x1, y1, x2, y2 in the photo's pixels); the
# landmark uploads are square crops around it, the input the 15-point model was trained on.
LANDMARK_FACES = {
    "faces/astronaut.png": (180, 62, 268, 174),
    "faces/obama.jpg": (382, 82, 603, 399),
    "faces/biden.jpg": (430, 178, 695, 571),
    "face_detector/linzaer_imgs_13.jpg": (91, 18, 155, 103),
}
DIGIT_SAMPLES = 64  # MNIST test images, fixed by a seeded draw; each is sent in both polarities
LANDMARK_COUNT = 15
MIXED_WEIGHTS = {"classify": 4, "digits": 3, "faces": 2, "landmarks": 1}


@dataclass(frozen=True)
class Upload:
    name: str  # where it came from, for failure messages
    data: bytes
    content_type: str
    expected: object = None  # what the route must answer for it (class id, face count, crop size)


def assets_dir() -> Path:
    value = os.environ.get("LENSGRAPH_ASSETS") or str(ROOT.parent / "shared" / "assets")
    path = Path(value).expanduser()
    if not path.is_dir():
        raise SystemExit(f"assets folder {path} not found: set LENSGRAPH_ASSETS to the folder with the sample images")
    return path


def _content_type(path: Path) -> str:
    return {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}[path.suffix.lower()]


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _square_crop(image: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1)
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    left = min(max(0, cx - side // 2), image.width - side)
    top = min(max(0, cy - side // 2), image.height - side)
    return image.crop((left, top, left + side, top + side))


def load_uploads(assets: Path) -> dict[str, list[Upload]]:
    """Every payload of every route, encoded once."""
    from lensgraph.datasets.mnist import load_split

    uploads: dict[str, list[Upload]] = {}
    uploads["classify"] = [
        Upload(photo, (assets / photo).read_bytes(), _content_type(assets / photo), class_id)
        for photo, class_id in CLASSIFY_PHOTOS.items()
    ]
    uploads["faces"] = [
        Upload(photo, (assets / photo).read_bytes(), _content_type(assets / photo), count)
        for photo, count in FACE_PHOTOS.items()
    ]
    crops = []
    for photo, box in LANDMARK_FACES.items():
        crop = _square_crop(Image.open(assets / photo).convert("RGB"), box)
        crops.append(Upload(f"{photo} crop", _png(crop), "image/png", crop.size))
    uploads["landmarks"] = crops
    test = load_split("test", assets / "mnist")
    index = np.random.default_rng(0).choice(len(test), DIGIT_SAMPLES, replace=False)
    digits = []
    for k in index:
        for polarity, pixels in (("light ink", test.images[k]), ("dark ink", 255 - test.images[k])):
            digits.append(Upload(f"MNIST test #{k} ({polarity})", _png(Image.fromarray(pixels)), "image/png"))
    uploads["digits"] = digits
    return uploads


UPLOADS = load_uploads(assets_dir())


def wait_time_from_env():
    value = os.environ.get("LOADTEST_WAIT", "0").strip() or "0"
    try:
        parts = [float(v) for v in value.split(",")]
    except ValueError as error:
        raise SystemExit(f"LOADTEST_WAIT={value!r}: expected seconds ('0', '0.5') or 'MIN,MAX'") from error
    if len(parts) == 1 and parts[0] >= 0:
        return constant(parts[0])
    if len(parts) == 2 and 0 <= parts[0] <= parts[1]:
        return between(parts[0], parts[1])
    raise SystemExit(f"LOADTEST_WAIT={value!r}: expected seconds ('0', '0.5') or 'MIN,MAX' with MIN <= MAX")


# ------------------------------------------------------------------------------ body checks
# Each returns None when the body is what the route promises, else what was wrong.


def _check_landmarks(points: object, width: float | None = None, height: float | None = None) -> str | None:
    if not isinstance(points, list) or len(points) != LANDMARK_COUNT:
        count = len(points) if isinstance(points, list) else type(points).__name__
        return f"expected {LANDMARK_COUNT} landmarks, got {count}"
    for point in points:
        if not isinstance(point, dict) or not {"name", "x", "y"} <= point.keys():
            return f"landmark without name/x/y: {point!r}"
        if width is not None and not (0 <= point["x"] <= width and 0 <= point["y"] <= height):
            return f"landmark {point['name']} at ({point['x']:.1f}, {point['y']:.1f}) outside the {width}x{height} crop"
    return None


def check_classify(body: dict, upload: Upload) -> str | None:
    predictions = body.get("predictions")
    if not isinstance(predictions, list) or not predictions:
        return "no 'predictions' list"
    top = predictions[0]
    if not isinstance(top, dict) or not {"class_id", "label", "confidence"} <= top.keys():
        return f"prediction without class_id/label/confidence: {top!r}"
    if top["class_id"] != upload.expected:
        return f"{upload.name}: top class {top['class_id']} ({top['label']}), expected {upload.expected}"
    if "embedding_stats" not in body:
        return "no 'embedding_stats'"
    return None


def check_faces(body: dict, upload: Upload) -> str | None:
    faces = body.get("faces")
    if not isinstance(faces, list):
        return "no 'faces' list"
    if len(faces) != upload.expected:
        return f"{upload.name}: {len(faces)} faces, expected {upload.expected}"
    for face in faces:
        if not isinstance(face, dict) or "box" not in face or "score" not in face:
            return f"face without box/score: {face!r}"
        problem = _check_landmarks(face.get("landmarks"))
        if problem:
            return f"{upload.name}: {problem}"
    return None


def check_landmarks(body: dict, upload: Upload) -> str | None:
    width, height = upload.expected
    problem = _check_landmarks(body.get("landmarks"), width, height)
    return f"{upload.name}: {problem}" if problem else None


def check_digits(body: dict, upload: Upload) -> str | None:
    missing = {"digit", "probability", "reliable", "uncertainty"} - body.keys()
    if missing:
        return f"{upload.name}: missing {sorted(missing)}"
    digit = body["digit"]
    if not (isinstance(digit, int) and 0 <= digit <= 9):
        return f"{upload.name}: digit {digit!r} is not 0..9 (an MNIST digit is never blank)"
    if not isinstance(body["reliable"], bool):
        return f"{upload.name}: 'reliable' is {body['reliable']!r}, not a boolean"
    return None


ROUTES = {
    "classify": ("/v1/classify", check_classify),
    "faces": ("/v1/faces", check_faces),
    "landmarks": ("/v1/landmarks", check_landmarks),
    "digits": ("/v1/digits", check_digits),
}


class LensgraphUser(HttpUser):
    """The request and its checks; subclasses choose the routes."""

    abstract = True
    wait_time = wait_time_from_env()

    def post_image(self, route: str) -> None:
        path, check = ROUTES[route]
        upload = random.choice(UPLOADS[route])
        with self.client.post(path, data=upload.data, headers={"content-type": upload.content_type},
                              name=path, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
                return
            try:
                body = response.json()
            except ValueError:
                response.failure(f"not JSON: {response.text[:200]!r}")
                return
            problem = check(body, upload) if isinstance(body, dict) else f"JSON is not an object: {body!r}"[:200]
            if problem:
                response.failure(problem)
            else:
                response.success()


class ClassifyUser(LensgraphUser):
    @task
    def classify(self) -> None:
        self.post_image("classify")


class FacesUser(LensgraphUser):
    @task
    def faces(self) -> None:
        self.post_image("faces")


class DigitsUser(LensgraphUser):
    @task
    def digits(self) -> None:
        self.post_image("digits")


class LandmarksUser(LensgraphUser):
    @task
    def landmarks(self) -> None:
        self.post_image("landmarks")


class MixedUser(LensgraphUser):
    """All four routes in the proportions of MIXED_WEIGHTS."""

    @task(MIXED_WEIGHTS["classify"])
    def classify(self) -> None:
        self.post_image("classify")

    @task(MIXED_WEIGHTS["digits"])
    def digits(self) -> None:
        self.post_image("digits")

    @task(MIXED_WEIGHTS["faces"])
    def faces(self) -> None:
        self.post_image("faces")

    @task(MIXED_WEIGHTS["landmarks"])
    def landmarks(self) -> None:
        self.post_image("landmarks")


# ------------------------------------------------------------------------------ final CSV
# Locust's CSV writer samples the statistics once a second, so the _stats.csv and _failures.csv it
# leaves behind can miss the last second of requests (locust issues #1806 and #2299) and disagree
# with the summary locust prints. At exit every request is counted: write both files again then,
# with locust's own CSV layout. (The writer flushes after each sample, so nothing of it is pending.)
_environment = None


@events.init.add_listener
def _remember_environment(environment, **_kwargs) -> None:
    global _environment
    _environment = environment
    # gevent caches the event loop's clock, and nothing has run the loop since locust (and this
    # file, with its images) was imported: without this, -t counts from a clock a second or two
    # in the past and `-t 8s` stops after about 6 s.
    gevent.get_hub().loop.update_now()


@events.quit.add_listener
def _write_final_csv(**_kwargs) -> None:
    environment = _environment
    options = getattr(environment, "parsed_options", None)
    prefix = getattr(options, "csv_prefix", None)
    if not prefix or isinstance(environment.runner, WorkerRunner):
        return
    writer = StatsCSV(environment, PERCENTILES_TO_REPORT)
    for suffix, write in (("_stats.csv", writer.requests_csv), ("_failures.csv", writer.failures_csv)):
        with open(f"{prefix}{suffix}", "w", newline="") as handle:
            write(csv.writer(handle))


# ------------------------------------------------------------------------------ load shape
# Locust uses any concrete LoadTestShape in this module, so only the one LOADTEST_SHAPE names is
# defined; the imported StepLoadShape and RampLoadShape are abstract and ignored.
SHAPE = os.environ.get("LOADTEST_SHAPE", "none").strip().lower() or "none"
if SHAPE == "step":

    class StepShape(StepLoadShape):
        """loadtests/shapes.py: StepLoadShape."""

elif SHAPE == "ramp":

    class RampShape(RampLoadShape):
        """loadtests/shapes.py: RampLoadShape."""

elif SHAPE != "none":
    raise SystemExit(f"LOADTEST_SHAPE={SHAPE!r}: expected step, ramp or none")
