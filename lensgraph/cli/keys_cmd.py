"""``lensgraph keys new|list``: make API keys for the service and see which are in a key file.

The service reads the file named by ``$LENSGRAPH_API_KEYS_FILE`` (docs/security.md). ``new`` prints the
key once, on stdout, and appends only its SHA-256 hash to the file: keep the key where your client
keeps secrets, it cannot be shown again. Removing a key: delete its line (the comment or name says
which) and restart or reconfigure the ingress.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lensgraph.security import keys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keys", help="make API keys (the service stores only their hashes)")
    ksub = p.add_subparsers(dest="keys_command", required=True)
    default = os.environ.get(keys.ENV) or None
    new = ksub.add_parser("new", help="print a new random key once and append its hash to the key file")
    new.add_argument("--file", type=Path, default=default, required=default is None,
                     help=f"key file (default ${keys.ENV})")
    new.add_argument("--name", help="a label for the key (one word), shown by `keys list` and in logs")
    new.set_defaults(func=run_new)
    lst = ksub.add_parser("list", help="the keys in a key file: names and hash prefixes, never keys")
    lst.add_argument("--file", type=Path, default=default, required=default is None,
                     help=f"key file (default ${keys.ENV})")
    lst.set_defaults(func=run_list)


def run_new(args: argparse.Namespace) -> int:
    try:
        key = keys.append(args.file, args.name)
    except (keys.KeyFileError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(key)
    print(f"appended its sha256 to {args.file}; the key is shown only now: store it as a secret "
          f"and send it as 'Authorization: Bearer <key>'", file=sys.stderr)
    return 0


def run_list(args: argparse.Namespace) -> int:
    try:
        found = keys.load(args.file)
    except keys.KeyFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for key in found.keys:
        print(f"{keys.ALGORITHM}:{key.digest[:12]}...  {key.name or ''}".rstrip())
    return 0
