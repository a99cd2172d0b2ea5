"""MNIST from its original IDX files under ``$LENSGRAPH_ASSETS/mnist`` (gzip or raw).

IDX: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions, then one
big-endian uint32 per dimension and the data. Images are 0x00000803 (N x 28 x 28), labels
0x00000801 (N). Every header is checked against what the file holds, so a truncated or swapped
file fails loudly here instead of training on garbage.

Splits: ``train`` is the first 55,000 training images, ``val`` the last 5,000 (held out for
calibration and model selection, never trained on), ``test`` the 10,000 test images.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lensgraph import settings
from lensgraph.errors import WeightsNotFound

__all__ = ["IDXError", "MnistSplit", "SPLITS", "VAL_SIZE", "load_idx", "load_split", "mnist_dir"]

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
VAL_SIZE = 5000
SPLITS = ("train", "val", "test", "train_full")
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10000),
}


class IDXError(ValueError):
    """An IDX file whose header does not describe its content."""


@dataclass(frozen=True)
class MnistSplit:
    images: np.ndarray  # uint8 [N, 28, 28], light ink on black
    labels: np.ndarray  # uint8 [N]
    name: str

    def __len__(self) -> int:
        return len(self.labels)


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as handle:
        head = handle.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    with opener(path, "rb") as handle:
        return handle.read()


def load_idx(path: str | Path, expected_magic: int | None = None) -> np.ndarray:
    """A uint8 IDX file (optionally gzipped) as an array of the shape its header declares."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise IDXError(f"{path}: too short for an IDX header")
    magic = struct.unpack(">I", data[:4])[0]
    if data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise IDXError(f"{path}: magic 0x{magic:08x} is not an unsigned-byte IDX file")
    if expected_magic is not None and magic != expected_magic:
        raise IDXError(f"{path}: magic 0x{magic:08x}, expected 0x{expected_magic:08x}")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IDXError(f"{path}: header declares {ndim} dimensions but the file ends early")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    count = int(np.prod(shape, dtype=np.int64))
    if len(data) - header != count:
        raise IDXError(f"{path}: header declares shape {shape} ({count} bytes) but holds {len(data) - header}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape).copy()


def mnist_dir(root: str | Path | None = None) -> Path:
    """``root`` or ``$LENSGRAPH_ASSETS/mnist``; WeightsNotFound says what to set when neither exists."""
    if root is not None:
        path = Path(root).expanduser()
    else:
        assets = settings.assets_dir()
        if assets is None:
            raise WeightsNotFound(f"MNIST needs ${settings.ASSETS_ENV} set to the assets folder (with mnist/ inside)")
        path = assets / "mnist"
    if not path.is_dir():
        raise WeightsNotFound(f"no MNIST folder at {path}")
    return path


def _find(folder: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        if (folder / name).is_file():
            return folder / name
    raise WeightsNotFound(f"{folder} has no {stem}(.gz)")


def _load_file_pair(kind: str, root: str | Path | None) -> tuple[np.ndarray, np.ndarray]:
    folder = mnist_dir(root)
    images_stem, labels_stem, count = FILES[kind]
    images = load_idx(_find(folder, images_stem), IMAGES_MAGIC)
    labels = load_idx(_find(folder, labels_stem), LABELS_MAGIC)
    if images.shape != (count, 28, 28):
        raise IDXError(f"{kind} images have shape {images.shape}, expected {(count, 28, 28)}")
    if labels.shape != (count,):
        raise IDXError(f"{kind} labels have shape {labels.shape}, expected {(count,)}")
    if labels.max() > 9:
        raise IDXError(f"{kind} labels hold {int(labels.max())}; MNIST labels are 0..9")
    return images, labels


def load_split(name: str, root: str | Path | None = None) -> MnistSplit:
    """One of ``train`` (first 55,000), ``val`` (last 5,000 training images), ``test``, ``train_full``."""
    if name not in SPLITS:
        raise ValueError(f"unknown MNIST split {name!r}; use one of {SPLITS}")
    images, labels = _load_file_pair("test" if name == "test" else "train", root)
    if name == "train":
        images, labels = images[:-VAL_SIZE], labels[:-VAL_SIZE]
    elif name == "val":
        images, labels = images[-VAL_SIZE:], labels[-VAL_SIZE:]
    return MnistSplit(np.ascontiguousarray(images), np.ascontiguousarray(labels), name)
