"""``POST /v1/digits``: the MNIST-style 28x28 input from any image, and the answer, blank or not."""

from __future__ import annotations

from typing import Any

from lensgraph.imaging.decode import DecodedImage
from lensgraph.imaging.digits import DigitInput, prepare_digit
from lensgraph.routes import input_hw, model_ref


def check_card(card: dict[str, Any]) -> tuple[int, int]:
    """The digit preprocessing makes 28x28 inputs: (28, 28), or an error for a model that wants another size."""
    size = input_hw(card)
    if size != (28, 28):
        raise ValueError(f"{card['name']}: the digits route makes 28x28 inputs, the card wants {size}")
    return size


def prepare(image: DecodedImage) -> DigitInput:
    """Polarity, ink crop, 20x20 fit and centring by mass (lensgraph.imaging.digits)."""
    return prepare_digit(image)


def answer(card: dict[str, Any], prepared: DigitInput, result: dict[str, Any] | None,
           probabilities: bool = False) -> dict[str, Any]:
    """The API's answer; ``result`` is the DigitRunner's, or None for a blank image (no model call)."""
    base = {"model": model_ref(card), "blank": bool(prepared.blank), "inverted": bool(prepared.inverted)}
    if result is None:
        return {**base, "digit": None, "probability": 0.0, "reliable": False, "reason": "blank",
                "probabilities": None, "uncertainty": None}
    return {**base, "digit": result["digit"], "probability": result["probability"], "reliable": result["reliable"],
            "reason": result["reason"],
            "probabilities": result["probabilities"] if probabilities else None, "uncertainty": result["uncertainty"]}
