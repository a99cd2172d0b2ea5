"""Strict state-dict loading with messages that say exactly which keys do not fit.

Why not plain ``load_state_dict(strict=True)``: torch reports only the first shape mismatch
it hits and buries it in a RuntimeError. A model build should fail once, naming every missing,
unexpected and mis-shaped key and where the weights came from, so a wrong checkpoint is fixed
in one go. Common wrappers (``{"state_dict": ...}``, ``{"model": ...}``, DataParallel's
``module.`` prefix) are unwrapped, since they are how most training scripts save.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lensgraph.errors import WeightsError, WeightsNotFound

__all__ = ["extract_state_dict", "load_state_dict_strict", "load_weights_file"]

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net")
DATA_PARALLEL_PREFIX = "module."
SHOWN = 10  # keys listed per category before "... and N more"
# Checkpoints saved before torch 0.4.1 (e.g. torchvision's first ResNet files) have no
# BatchNorm ``num_batches_tracked``; torch itself accepts that, and so do we.
OPTIONAL_SUFFIX = "num_batches_tracked"


def extract_state_dict(obj: Any, source: str = "") -> dict[str, torch.Tensor]:
    """The tensor mapping inside ``obj``: a raw state dict or a checkpoint wrapping one."""
    where = f" in {source}" if source else ""
    if isinstance(obj, nn.Module):
        raise WeightsError(f"found a whole pickled {type(obj).__name__}{where}, not a state dict: "
                           "save model.state_dict() instead")
    if not isinstance(obj, Mapping):
        raise WeightsError(f"expected a state dict (a mapping of names to tensors){where}, got {type(obj).__name__}")
    for key in WRAPPER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            obj = inner
            break
    not_tensors = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise WeightsError(
            f"not a state dict{where}: {len(not_tensors)} entries are not tensors ({_short(not_tensors)}); "
            f"a checkpoint should keep its weights under one of {list(WRAPPER_KEYS)}",
            not_tensors=not_tensors[:SHOWN],
        )
    state = {str(k): v for k, v in obj.items()}
    if state and all(k.startswith(DATA_PARALLEL_PREFIX) for k in state):
        state = {k[len(DATA_PARALLEL_PREFIX):]: v for k, v in state.items()}
    return state


def load_state_dict_strict(model: nn.Module, state_dict: Any, source: str = "") -> None:
    """Load ``state_dict`` into ``model`` with every key and shape checked.

    Raises :class:`WeightsError` naming the missing, unexpected and mis-shaped keys.
    """
    state = extract_state_dict(state_dict, source)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith(OPTIONAL_SUFFIX)]
    unexpected = [k for k in state if k not in expected]
    misshaped = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or misshaped:
        raise _mismatch_error(model, state, expected, missing, unexpected, misshaped, source)
    state = dict(state)
    for key in expected:
        if key not in state:  # only optional num_batches_tracked can get here
            state[key] = torch.zeros_like(expected[key])
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # e.g. a dtype that cannot be copied
        raise WeightsError(f"weights{_from(source)} do not load into {type(model).__name__}: {exc}") from exc


def load_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``.pth``/``.pt`` file safely (``weights_only=True``) and return its state dict."""
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFound(f"weights file not found: {path}", path=str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises several types for unreadable files
        raise WeightsError(
            f"cannot read {path} as a state dict with torch.load(weights_only=True): {_first_line(exc)}. "
            "If it is a whole pickled model (torch.save(model)), load it where its class is defined "
            "and save model.state_dict() instead; arbitrary pickles are never executed here.",
            path=str(path),
        ) from exc
    return extract_state_dict(obj, str(path))


def _mismatch_error(model: nn.Module, state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor],
                    missing: list[str], unexpected: list[str], misshaped: list[str], source: str) -> WeightsError:
    shapes = [f"{k}: expected {_shape(expected[k])}, got {_shape(state[k])}" for k in misshaped]
    parts = [
        f"{_count(missing, 'missing key')}: {_short(missing)}" if missing else "",
        f"{_count(unexpected, 'unexpected key')}: {_short(unexpected)}" if unexpected else "",
        f"{_count(misshaped, 'mis-shaped key')}: {_short(shapes)}" if misshaped else "",
    ]
    message = f"weights{_from(source)} do not fit {type(model).__name__}: " + "; ".join(p for p in parts if p)
    hint = _prefix_hint(list(state), list(expected))
    if hint:
        message += f". {hint}"
    return WeightsError(message, source=source, missing=missing[:SHOWN], unexpected=unexpected[:SHOWN],
                        mismatched_shapes=shapes[:SHOWN])


def _prefix_hint(given: list[str], expected: list[str]) -> str:
    """Suggest a key prefix to strip or add when that would make most keys match."""
    expected_set = set(expected)
    if not given or len(expected_set.intersection(given)) > len(given) // 2:
        return ""
    first = {k.split(".", 1)[0] for k in given if "." in k}
    for prefix in sorted(first):
        stripped = {k[len(prefix) + 1:] for k in given if k.startswith(prefix + ".")}
        if len(stripped & expected_set) > len(expected_set) // 2:
            return f"the file's keys carry a '{prefix}.' prefix the model does not have; strip it"
    return ""


def _short(items: list[str]) -> str:
    shown = ", ".join(items[:SHOWN])
    return shown + (f", ... and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def _count(items: list[str], noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def _shape(tensor: torch.Tensor) -> str:
    return f"[{', '.join(str(d) for d in tensor.shape)}]"


def _from(source: str) -> str:
    return f" from {source}" if source else ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
