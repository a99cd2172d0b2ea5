"""What a client-facing message may say: no absolute paths of the server's file system.

Messages of server-side failures (a model missing from the repository, an error inside a replica)
can name where things are on the server (``/opt/lensgraph/model_repository/...``). Clients get the
message with each absolute path cut to ``.../<last part>``, which still says *what* is missing; the
service's logs keep the full message.
"""

from __future__ import annotations

import re

# An absolute POSIX path of two or more parts, not inside a URL (``http://h/p``) or a relative path.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/(?:[^\s/'\"`,;:()\[\]{}<>]+/)+[^\s/'\"`,;:()\[\]{}<>]*")


def _last_part(match: re.Match[str]) -> str:
    path = match.group(0)
    return ".../" + path.rstrip("/").rsplit("/", 1)[-1] + ("/" if path.endswith("/") else "")


def redact_paths(text: str) -> str:
    """``text`` with every absolute path of two or more parts replaced by ``.../<its last part>``."""
    if "/" not in text:
        return text
    return _ABSOLUTE_PATH.sub(_last_part, text)


def public_reason(exc: BaseException) -> str:
    """A one-line, path-free description of an exception for a client (never a traceback)."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return redact_paths(f"{type(exc).__name__}: {first}" if first else type(exc).__name__)
