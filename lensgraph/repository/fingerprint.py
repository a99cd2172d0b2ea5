"""A build fingerprint: the spec, the weight checksums and the builder's format version.

``make models`` runs before every ``make run``/``make test``; it rebuilds only models whose
fingerprint changed, so an unchanged repository costs a few checksum reads.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

BUILD_FORMAT = 2  # 2: cards name their resize (preprocessing.before_graph.resize)


def fingerprint(spec: dict[str, Any], checksums: dict[str, str | None]) -> str:
    payload = json.dumps({"spec": spec, "checksums": checksums, "format": BUILD_FORMAT}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
