"""API keys: made at random, stored only as hashes, checked in time that tells nothing about the keys.

The key file (``$LENSGRAPH_API_KEYS_FILE``) holds one hash a line::

    # comments and blank lines are ignored
    sha256:<64 hex digits> [name]

``name`` (optional, no spaces) labels the key in ``lensgraph keys list`` and in logs; the key itself is
never written anywhere by the service.

Why SHA-256 and not a password hash (bcrypt, scrypt, argon2): those are slow on purpose so that a
stolen file of *low-entropy passwords* cannot be guessed offline. A key made by :func:`new_key` has 256
random bits; guessing one from its hash takes 2**255 tries on average whatever the hash costs, so a
fast hash loses nothing, and it costs about a microsecond per request where a password hash costs
tens of milliseconds (more than the whole inference).

How a presented key is checked (:meth:`KeySet.check`): it is hashed, and the digest is looked up in a
dict of the stored digests. The time taken depends on the presented key's length (public) and on
how the *digest* compares with stored digests, never on how the presented key compares with a real
key: learning that a digest shares a prefix with a stored digest gives nothing towards a key
(SHA-256 is preimage resistant). That is the same guarantee ``hmac.compare_digest`` against every
stored hash gives, at O(1) instead of O(number of keys).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

ENV = "LENSGRAPH_API_KEYS_FILE"
PREFIX = "lgk_"  # makes a leaked key recognisable to secret scanners and in support tickets
ALGORITHM = "sha256"
_LINE = re.compile(r"^(?P<algorithm>[a-z0-9]+):(?P<digest>[0-9a-f]+)(?:\s+(?P<name>\S+))?$")


class KeyFileError(ValueError):
    """The key file is missing, unreadable or malformed (the message names the file and the line)."""


@dataclass(frozen=True)
class ApiKey:
    """One stored key: its digest (hex) and a label. ``id`` identifies it in logs and rate limits."""

    digest: str
    name: str | None = None

    @property
    def id(self) -> str:
        return self.name or f"{ALGORITHM}:{self.digest[:12]}"


def new_key() -> str:
    """A fresh key: the prefix and 32 random bytes (256 bits) in URL-safe base64, 47 characters."""
    return PREFIX + secrets.token_urlsafe(32)


def digest(key: str | bytes) -> str:
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).hexdigest()


def hash_line(key: str, name: str | None = None) -> str:
    """The key file line for ``key``."""
    if name is not None and (not name or any(c.isspace() or c == "#" for c in name)):
        raise KeyFileError(f"a key name is one word without spaces or '#', not {name!r}")
    return f"{ALGORITHM}:{digest(key)}" + (f" {name}" if name else "")


class KeySet:
    """The keys the service accepts."""

    def __init__(self, keys: list[ApiKey]) -> None:
        self.keys = list(keys)
        self._by_digest = {k.digest: k for k in keys}

    def __len__(self) -> int:
        return len(self._by_digest)

    def check(self, presented: str | bytes) -> ApiKey | None:
        """The stored key that ``presented`` is, or None (see the module docstring for the timing)."""
        return self._by_digest.get(digest(presented))


def parse(text: str, source: str = "<key file>") -> KeySet:
    """Every ``algorithm:digest [name]`` line of ``text``; ``#`` starts a comment anywhere on a line."""
    keys: list[ApiKey] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _LINE.match(line)
        if match is None:
            raise KeyFileError(f"{source} line {number}: expected '{ALGORITHM}:<64 hex digits> [name]'"
                               " (the file holds hashes of keys, never keys; `lensgraph keys new` writes them)")
        if match["algorithm"] != ALGORITHM or len(match["digest"]) != 64:
            raise KeyFileError(f"{source} line {number}: only {ALGORITHM} with 64 hex digits is supported")
        if match["digest"] in seen:
            raise KeyFileError(f"{source} line {number}: the same key is listed twice")
        seen.add(match["digest"])
        keys.append(ApiKey(match["digest"], match["name"]))
    return KeySet(keys)


def load(path: str | os.PathLike[str]) -> KeySet:
    """The key file at ``path``; a missing, unreadable, malformed or empty file is a KeyFileError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read the API key file {path}: {exc}") from None
    keys = parse(text, str(path))
    if not keys:
        raise KeyFileError(f"the API key file {path} holds no keys; add one with `lensgraph keys new --file {path}`")
    return keys


def from_environment(environ: dict[str, str] | None = None) -> KeySet | None:
    """The keys named by ``$LENSGRAPH_API_KEYS_FILE``; None (authentication off) when it is unset or empty."""
    value = (os.environ if environ is None else environ).get(ENV, "").strip()
    return load(value) if value else None


def append(path: str | os.PathLike[str], name: str | None = None) -> str:
    """Make a key, append its hash line to ``path`` (created 0600 when new) and return the key."""
    path = Path(path)
    if path.exists():
        parse(path.read_text(encoding="utf-8"), str(path))  # never append to a file the service would reject
    key = new_key()
    line = hash_line(key, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as out:
        if out.tell() == 0:
            out.write("# lensgraph API keys: one sha256 hash a line (docs/security.md); never the keys themselves\n")
        else:
            with open(path, "rb") as current:
                current.seek(-1, os.SEEK_END)
                if current.read(1) != b"\n":
                    out.write("\n")
        out.write(line + "\n")
    return key
