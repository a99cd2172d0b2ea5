"""Where darknet's own files are: the network ``.cfg`` files, ``voc.names`` and its sample photos.

They come from Debian's ``darknet`` package (``apt-get install darknet``; ``make system-deps`` as root),
which ships pjreddie's cfg/ and data/ folders but no weights. ``$LENSGRAPH_DARKNET_DIR`` points at
another copy (a folder holding ``cfg/`` and ``data/`` as in darknet's repository, or the files
themselves), for machines without the package.

Licence: ``/usr/share/doc/darknet/copyright`` gives darknet (pjreddie, 2018) as "GPL-3.0+ or MIT or WTFPL",
the user's choice; lensgraph takes it under MIT and only reads these data files at build and test time
(nothing of darknet's code is linked into lensgraph; the tests load ``libdarknet.so`` from the package to
compare forwards). The weights are not in the package; they are downloaded from pjreddie.com.
"""

from __future__ import annotations

import os
from pathlib import Path

from lensgraph.errors import WeightsNotFound

__all__ = ["DARKNET_DIR_ENV", "INSTALL_HINT", "darknet_dirs", "find", "cfg", "names", "sample_photo"]

DARKNET_DIR_ENV = "LENSGRAPH_DARKNET_DIR"
# Where Debian's package puts pjreddie's folders (dpkg -L darknet).
SYSTEM_DIRS = (Path("/usr/share/darknet"),)
SUBFOLDERS = ("cfg", "data", "")
INSTALL_HINT = (
    "install Debian's darknet package (as root: apt-get install darknet, or 'make system-deps'), "
    f"or set ${DARKNET_DIR_ENV} to a folder holding darknet's cfg/ and data/ folders"
)


def darknet_dirs() -> list[Path]:
    """The folders searched, in order: ``$LENSGRAPH_DARKNET_DIR`` (when set), then the package's."""
    value = os.environ.get(DARKNET_DIR_ENV, "").strip()
    return ([Path(value).expanduser()] if value else []) + list(SYSTEM_DIRS)


def find(name: str) -> Path:
    """The darknet file ``name`` (``yolov2-tiny-voc.cfg``, ``voc.names``, ``dog.jpg``), or a
    WeightsNotFound that says how to install it."""
    if not name or "/" in name or name in (".", ".."):
        raise WeightsNotFound(f"darknet file names are plain file names (like yolov2-tiny-voc.cfg), got {name!r}")
    for root in darknet_dirs():
        for sub in SUBFOLDERS:
            path = root / sub / name
            if path.is_file():
                return path
    searched = ", ".join(str(d) for d in darknet_dirs())
    raise WeightsNotFound(f"darknet file {name!r} not found (searched {searched}); {INSTALL_HINT}")


def cfg(name: str = "yolov2-tiny-voc.cfg") -> Path:
    return find(name)


def names(name: str = "voc.names") -> Path:
    return find(name)


def sample_photo(name: str = "dog.jpg") -> Path:
    """One of darknet's sample photos: dog.jpg, person.jpg, horses.jpg, eagle.jpg, giraffe.jpg, ..."""
    return find(name)
