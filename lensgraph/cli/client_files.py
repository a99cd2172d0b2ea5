"""What ``lensgraph client`` sends and where it saves: files and folders expanded into image files, the
names the returned pictures are saved under, and a progress bar on stderr. No network, no server: unit
tested in tests/unit/test_client_cli.py."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

__all__ = ["IMAGE_EXTENSIONS", "PROGRESS_ABOVE", "Input", "Progress", "expand_inputs", "extension_for",
           "save_targets"]

# What a folder contributes: the formats the service decodes (docs/api.md), by file name. A file named on
# the command line is sent whatever its name (the server says what it is not).
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp",
                              ".gif"})
PROGRESS_ABOVE = 3  # a progress bar for more images than this
_MEDIA_EXTENSIONS = {"image/jpeg": ".jpg", "image/jpg": ".jpg", "image/png": ".png", "image/webp": ".webp",
                     "image/gif": ".gif", "image/bmp": ".bmp", "image/tiff": ".tif"}


@dataclass(frozen=True)
class Input:
    """An image to send: its path, and the folder it was found in (None: named on the command line)."""

    path: Path
    root: Path | None = None

    @property
    def relative(self) -> Path:
        """Its path below the folder it came from (just its name when named directly)."""
        return self.path.relative_to(self.root) if self.root is not None else Path(self.path.name)


def _folder_images(folder: Path) -> list[Path]:
    """Image files below ``folder``, recursively, sorted; hidden files and folders skipped, symlinked
    folders not followed (no loops)."""
    found = []
    for current, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            path = Path(current) / name
            if not name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
                found.append(path)
    return sorted(found, key=lambda p: p.relative_to(folder).parts)


def expand_inputs(paths: Sequence[Path]) -> tuple[list[Input], list[str]]:
    """Command-line paths -> the images to send, in order, each once, and what is wrong with the rest
    (``"x: no such file"``, ``"d: no image files in this folder"``)."""
    inputs: list[Input] = []
    problems: list[str] = []
    seen: set[Path] = set()

    def add(item: Input) -> None:
        key = item.path.resolve()
        if key not in seen:
            seen.add(key)
            inputs.append(item)

    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            images = _folder_images(path)
            if not images:
                problems.append(f"{path}: no image files in this folder ({', '.join(sorted(IMAGE_EXTENSIONS))})")
            for image in images:
                add(Input(image, path))
        elif path.is_file():
            add(Input(path))
        else:
            problems.append(f"{path}: no such file")
    return inputs, problems


def extension_for(media_type: str | None, default: str = ".jpg") -> str:
    """The file extension of a picture's media type (``image/png`` -> ``.png``)."""
    kind = (media_type or "").split(";")[0].strip().lower()
    return _MEDIA_EXTENSIONS.get(kind, default)


def save_targets(inputs: Sequence[Input], save: str | os.PathLike[str], route: str) -> tuple[list[Path], bool]:
    """Where each input's picture goes, without its extension (the server's media type decides it), and
    whether ``save`` is a folder.

    One image: ``save`` itself, unless it is an existing folder or ends with a separator. Several: ``save`` is
    a folder and each picture is named after its input, ``<stem>.<route>`` (``obama.faces`` -> obama.faces.jpg,
    so an input is never overwritten), below the same sub-folders as in the folder it was found in; names
    that would still collide get ``-2``, ``-3``.
    """
    raw = os.fspath(save)  # as typed: a trailing separator says "a folder" (Path() would drop it)
    save = Path(raw)
    as_folder = len(inputs) != 1 or save.is_dir() or raw.endswith((os.sep, "/"))
    if not as_folder:
        return [save], False
    targets, taken = [], set()
    for item in inputs:
        base = item.relative.parent / f"{item.relative.stem}.{route}"
        name, n = base, 1
        while str(name).lower() in taken:
            n += 1
            name = base.with_name(f"{base.name}-{n}")
        taken.add(str(name).lower())
        targets.append(save / name)
    return targets, True


class Progress:
    """``[#########...........]  12/40  30%  3.1/s  eta 9s`` on stderr, for more than PROGRESS_ABOVE items.

    On a terminal it redraws one line (call :meth:`clear` before printing anything else to it); elsewhere
    (CI logs, a file) it writes a plain line every tenth of the way, so logs stay short.
    """

    def __init__(self, total: int, stream: TextIO | None = None, enabled: bool | None = None, width: int = 28,
                 clock=time.monotonic) -> None:
        self.total, self.done, self.width = int(total), 0, width
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.total > PROGRESS_ABOVE if enabled is None else bool(enabled) and self.total > 0
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self.clock = clock
        self.started = clock()
        self._shown_tenths = -1
        self._drawn = False

    def line(self) -> str:
        """The bar as text (no newline)."""
        share = self.done / self.total if self.total else 1.0
        filled = int(round(share * self.width))
        elapsed = max(self.clock() - self.started, 1e-9)
        text = f"[{'#' * filled}{'.' * (self.width - filled)}] {self.done:>{len(str(self.total))}}/{self.total} " \
               f"{100 * share:3.0f}%"
        if self.done:
            rate = self.done / elapsed
            text += f"  {rate:.1f}/s"
            if self.done < self.total:
                text += f"  eta {round((self.total - self.done) / rate)}s"
        return text

    def show(self) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r\x1b[K" + self.line())
            self._drawn = True
        else:
            tenths = self.done * 10 // self.total
            if tenths == self._shown_tenths:
                return
            self._shown_tenths = tenths
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def advance(self, n: int = 1) -> None:
        self.done = min(self.total, self.done + n)
        self.show()

    def clear(self) -> None:
        """Wipe the terminal line, so what is printed next starts on a clean line."""
        if self.enabled and self.tty and self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False

    def close(self) -> None:
        if self.enabled and self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
