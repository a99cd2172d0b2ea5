"""One module per HTTP route: the model inputs made from a decoded image, and the API answer made
from the model outputs.

The Ray Serve ingress, the in-process floor and the single-process baseline all call these, so a
route's logic lives in one place and the three give the same answers. Geometry (input sizes,
resize and crop) comes from the model's card in the repository, never from constants here.
"""

from __future__ import annotations

from typing import Any


def model_ref(card: dict[str, Any]) -> dict[str, Any]:
    """What every answer says about the model that made it (name, version, real weights or not).

    ``card`` is a model card, or a model deployment's ``info()``, which carries the same keys.
    """
    return {"name": card["name"], "version": card["version"], "weights_real": bool(card["weights"].get("real"))}


def input_hw(card: dict[str, Any], index: int = 0) -> tuple[int, int]:
    """(height, width) of an NHWC model input as its card declares it."""
    shape = card["inputs"][index]["shape"]
    height, width = shape[1], shape[2]
    if not isinstance(height, int) or not isinstance(width, int):
        raise ValueError(f"{card['name']}: input {index} has no fixed size ({shape}); the route needs one")
    return height, width
