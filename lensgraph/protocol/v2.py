"""The Open Inference Protocol (KServe v2) over REST, with Triton's binary tensor data, model configuration
and statistics extensions: what a served model offers, and every check of a request, without Ray.

What a model offers is its card's tensors (``Signature.from_card``), as its ONNX graph takes them: the
classifier takes ``image`` UINT8 [-1, 224, 224, 3] and answers ``probabilities`` and ``embedding``. Two
rules make a card a protocol signature:

- every input and output has the batch axis first (shape ``-1`` there; ``max_batch_size`` in the model
  configuration says how many rows one request may carry), and every other dynamic axis is ``-1``;
- an input with a ``samples`` axis (the MC-dropout masks of the digits graph, ``[samples, batch, k]``) is
  not exposed: the server fills it with ones for one sample, which is the graph's deterministic pass
  (the card's ``export.mc_dropout.masks``: "all ones = deterministic pass"), and an output with a
  ``samples`` axis first (``probabilities [samples, batch, 10]``) is answered for that one sample,
  ``[-1, 10]``. Monte-Carlo sampling, calibration and ``reliable`` stay on ``/v1/digits``.

A request is checked here (``parse_request``) against the signature before anything reaches a model:
names, datatypes, shapes, element counts, value ranges, binary sizes; a wrong tensor is a
``ProtocolError`` (400) that says what was wrong, never a 500. The batch limit is the model deployment's
live ``max_batch_size`` and is checked there (``check_batch``), before the rows are queued.
The model deployment runs queued rows of many requests in one session call (``run_rows``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lensgraph.errors import LensgraphError

PLATFORM = "onnxruntime_onnx"
BACKEND = "onnxruntime"
EXTENSIONS = ("binary_tensor_data", "model_configuration", "statistics")
HEADER_LENGTH = "Inference-Header-Content-Length"
BATCH_AXIS = "batch"
SAMPLES_AXIS = "samples"

# numpy dtype name -> the protocol's datatype (BYTES, string tensors, is not used by any card)
DATATYPES = {
    "bool": "BOOL", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64",
    "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64",
    "float16": "FP16", "float32": "FP32", "float64": "FP64",
}
NUMPY = {datatype: np.dtype(name) for name, datatype in DATATYPES.items()}
# what a JSON array's numpy kind may be for each kind of tensor: no booleans as numbers, no floats as integers
_JSON_KINDS = {"b": "b", "u": "iu", "i": "iu", "f": "iuf"}
_UNSUPPORTED_PARAMETERS = ("shared_memory_region", "shared_memory_byte_size", "shared_memory_offset")


class ProtocolError(LensgraphError):
    """A request the protocol cannot serve as it is: 400, ``{"error": "<why>"}`` on /v2."""

    status, code = 400, "invalid_inference_request"


class RequestTooLarge(ProtocolError):
    status, code = 413, "request_too_large"


class VersionNotServed(ProtocolError):
    """A version other than the one the model's deployment serves (``user_config.version``)."""

    status, code = 404, "unknown_version"


def quoted(value: Any, limit: int = 64) -> str:
    """A client's value in a message: quoted, bounded."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def _dynamic(axis: Any) -> bool:
    return axis is None or isinstance(axis, str) or (isinstance(axis, int) and axis < 0)


@dataclass(frozen=True)
class Tensor:
    """One input or output as the protocol shows it: batch axis first, -1 for every dynamic axis."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    @property
    def dtype(self) -> np.dtype:
        return NUMPY[self.datatype]

    def describe(self) -> str:
        return f"{self.name} ({self.datatype} {list(self.shape)})"

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    def config(self, is_input: bool) -> dict[str, Any]:
        """Triton's model configuration entry: ``dims`` without the batch axis; a tensor that is only the batch
        axis is ``dims [1]`` reshaped to ``[]``, as Triton writes it."""
        dims = list(self.shape[1:])
        entry: dict[str, Any] = {"name": self.name, "data_type": "TYPE_" + self.datatype, "dims": dims or [1]}
        if not dims:
            entry["reshape"] = {"shape": []}
        if is_input:
            entry.update(format="FORMAT_NONE", is_shape_tensor=False, allow_ragged_batch=False, optional=False)
        else:
            entry.update(label_filename="", is_shape_tensor=False)
        return entry


@dataclass(frozen=True)
class Filled:
    """A graph input the protocol does not expose (a dropout mask): ones, one sample, one row per batch row."""

    name: str
    dtype: str
    axes: tuple[Any, ...]

    def make(self, rows: int) -> np.ndarray:
        shape = [1 if a == SAMPLES_AXIS else rows if a == BATCH_AXIS else int(a) for a in self.axes]
        return np.ones(shape, np.dtype(self.dtype))


@dataclass(frozen=True)
class Signature:
    """What one served model version offers over the protocol (``from_card``)."""

    model: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    filled: tuple[Filled, ...] = ()
    sampled: frozenset[str] = frozenset()  # outputs whose graph shape is [samples, batch, ...]
    _by_name: dict[str, Tensor] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name.update({t.name: t for t in self.inputs})

    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> "Signature":
        model = str(card.get("name"))
        inputs: list[Tensor] = []
        filled: list[Filled] = []
        for spec in card.get("inputs") or ():
            name, axes = str(spec["name"]), list(spec["shape"])
            datatype = _datatype(model, "input", name, spec["dtype"])
            if axes and axes[0] == SAMPLES_AXIS:
                if BATCH_AXIS not in axes or any(_dynamic(a) and a not in (SAMPLES_AXIS, BATCH_AXIS) for a in axes):
                    raise ProtocolError(f"model {model!r}: input {name!r} {axes} cannot be filled in by the server")
                filled.append(Filled(name, NUMPY[datatype].str, tuple(axes)))
                continue
            inputs.append(Tensor(name, datatype, _protocol_shape(model, "input", name, axes)))
        outputs: list[Tensor] = []
        sampled = set()
        for spec in card.get("outputs") or ():
            name, axes = str(spec["name"]), list(spec["shape"])
            datatype = _datatype(model, "output", name, spec["dtype"])
            if axes and axes[0] == SAMPLES_AXIS:
                axes = axes[1:]
                sampled.add(name)
            outputs.append(Tensor(name, datatype, _protocol_shape(model, "output", name, axes)))
        if not inputs or not outputs:
            raise ProtocolError(f"model {model!r}: its card names no inputs or no outputs")
        return cls(model, tuple(inputs), tuple(outputs), tuple(filled), frozenset(sampled))

    def input(self, name: str) -> Tensor | None:
        return self._by_name.get(name)

    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def describe_inputs(self) -> str:
        return ", ".join(t.describe() for t in self.inputs)

    # -- the protocol's descriptions --------------------------------------------------------------
    def metadata(self, served_name: str, version: int | str) -> dict[str, Any]:
        return {"name": served_name, "versions": [str(version)], "platform": PLATFORM,
                "inputs": [t.metadata() for t in self.inputs], "outputs": [t.metadata() for t in self.outputs]}

    def config(self, served_name: str, version: int | str, max_batch_size: int, batch_wait_timeout_s: float,
               ) -> dict[str, Any]:
        """Triton's model configuration (what perf_analyzer reads): live ``max_batch_size`` and batching delay."""
        return {
            "name": served_name,
            "platform": PLATFORM,
            "backend": BACKEND,
            "version_policy": {"specific": {"versions": [int(version)]}},
            "max_batch_size": int(max_batch_size),
            "input": [t.config(is_input=True) for t in self.inputs],
            "output": [t.config(is_input=False) for t in self.outputs],
            "dynamic_batching": {"preferred_batch_size": [],
                                 "max_queue_delay_microseconds": int(round(batch_wait_timeout_s * 1e6)),
                                 "preserve_ordering": False},
        }

    # -- checks -----------------------------------------------------------------------------------
    def check_arrays(self, arrays: Mapping[str, np.ndarray]) -> int:
        """Arrays already parsed (the model deployment checks again what it is sent): the batch size."""
        if set(arrays) != {t.name for t in self.inputs}:
            raise ProtocolError(f"model {self.model!r} takes {self.describe_inputs()}, got {sorted(arrays)}")
        rows = None
        for t in self.inputs:
            a = arrays[t.name]
            if not isinstance(a, np.ndarray) or a.dtype != t.dtype or not _fits(a.shape, t.shape):
                got = f"{a.dtype} {list(a.shape)}" if isinstance(a, np.ndarray) else type(a).__name__
                raise ProtocolError(f"input {t.name!r} must be {t.datatype} {list(t.shape)}, got {got} "
                                    f"(model {self.model!r}; a version change?)")
            if rows is not None and a.shape[0] != rows:
                raise ProtocolError("every input must have the same batch size (first dimension)")
            rows = a.shape[0]
        return int(rows)


def _datatype(model: str, kind: str, name: str, dtype: Any) -> str:
    try:
        return DATATYPES[np.dtype(dtype).name]
    except (KeyError, TypeError):
        raise ProtocolError(f"model {model!r}: {kind} {name!r} of dtype {dtype} has no protocol datatype") from None


def _protocol_shape(model: str, kind: str, name: str, axes: list) -> tuple[int, ...]:
    if not axes or not _dynamic(axes[0]):
        raise ProtocolError(f"model {model!r}: {kind} {name!r} {axes} has no batch axis first")
    return tuple(-1 if _dynamic(a) else int(a) for a in axes)


def _fits(shape: Sequence[int], spec: Sequence[int]) -> bool:
    return len(shape) == len(spec) and shape[0] >= 1 and all(s == d or (d == -1 and s >= 1)
                                                             for s, d in zip(shape[1:], spec[1:]))


def check_batch(rows: int, max_batch_size: int, served_name: str) -> None:
    """The model deployment's live limit: a request's rows all go into one batch queue."""
    if rows > max_batch_size:
        raise ProtocolError(f"a batch of {rows} is more than the max_batch_size of {max_batch_size} of model "
                            f"{served_name!r} (GET /v2/models/{served_name}/config); send at most that many rows")


# -- requests -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    inputs: dict[str, np.ndarray]
    rows: int
    outputs: tuple[RequestedOutput, ...]

    def output_names(self) -> list[str]:
        return [o.name for o in self.outputs]


def header_length(value: str | None, body_length: int) -> int | None:
    """``Inference-Header-Content-Length``: how much of the body is JSON (the rest is binary tensor data)."""
    if value is None:
        return None
    text = value.strip()
    if not text.isdigit() or not 0 < int(text) <= body_length:
        raise ProtocolError(f"{HEADER_LENGTH} must be the JSON header's length in bytes, 1..{body_length} "
                            f"for this body, got {quoted(value)}")
    return int(text)


def _object(value: Any, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError(f"{what} must be a JSON object")
    return value


def _flag(parameters: dict, name: str, where: str, default: bool) -> bool:
    value = parameters.get(name, default)
    if not isinstance(value, bool):
        raise ProtocolError(f"{where} parameter {name!r} must be true or false, got {quoted(value)}")
    return value


def parse_request(body: bytes, header: str | None, signature: Signature, max_tensor_bytes: int) -> InferRequest:
    """An inference request (JSON, or JSON then binary tensor data) checked against the model's signature."""
    length = header_length(header, len(body))
    text, binary = (body, b"") if length is None else (body[:length], memoryview(body)[length:])
    try:
        request = json.loads(text)
    except RecursionError:
        raise ProtocolError("the request's JSON is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        where = f" (the first {length} bytes, per {HEADER_LENGTH})" if length is not None else ""
        raise ProtocolError(f"the request is not valid JSON{where}: {getattr(exc, 'msg', exc)}") from None
    if not isinstance(request, dict):
        raise ProtocolError("the request must be a JSON object with 'inputs'")
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError("'id' must be a string")
    parameters = _object(request.get("parameters"), "'parameters'")
    binary_default = _flag(parameters, "binary_data_output", "the request's", False)

    given = request.get("inputs")
    if not isinstance(given, list) or not given:
        raise ProtocolError(f"'inputs' must be a non-empty array; model {signature.model!r} takes "
                            f"{signature.describe_inputs()}")
    arrays: dict[str, np.ndarray] = {}
    total_bytes = offset = 0
    rows = None
    for entry in given:
        if not isinstance(entry, dict):
            raise ProtocolError("each of 'inputs' must be a JSON object with name, shape, datatype and data")
        name = entry.get("name")
        spec = signature.input(name) if isinstance(name, str) else None
        if spec is None:
            raise ProtocolError(f"unknown input {quoted(name)}: model {signature.model!r} takes "
                                f"{signature.describe_inputs()}")
        if name in arrays:
            raise ProtocolError(f"input {name!r} is given twice")
        datatype = entry.get("datatype")
        if datatype != spec.datatype:
            raise ProtocolError(f"input {name!r} is {spec.datatype}, not {quoted(datatype)}")
        shape = entry.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            raise ProtocolError(f"input {name!r}: 'shape' must be an array of integers, e.g. {list(spec.shape)}")
        if not _fits(shape, spec.shape):
            raise ProtocolError(f"input {name!r} has shape {quoted(shape, 80)}; the model takes {list(spec.shape)} "
                                f"(-1: any size >= 1, the first is the batch)")
        if rows is not None and shape[0] != rows:
            raise ProtocolError(f"input {name!r} has a batch of {shape[0]}, another input {rows}: they must agree")
        rows = shape[0]
        count = math.prod(shape)
        nbytes = count * spec.dtype.itemsize
        total_bytes += nbytes
        if total_bytes > max_tensor_bytes:
            raise RequestTooLarge(f"the inputs hold {total_bytes} bytes, more than the {max_tensor_bytes} bytes "
                                  f"a request may carry; send fewer rows per request")
        input_parameters = _object(entry.get("parameters"), f"input {name!r}'s 'parameters'")
        if any(key in input_parameters for key in _UNSUPPORTED_PARAMETERS):
            raise ProtocolError("shared memory is not supported: send the data in the request")
        if "binary_data_size" in input_parameters:
            size = input_parameters["binary_data_size"]
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise ProtocolError(f"input {name!r}: binary_data_size must be a byte count")
            if "data" in entry:
                raise ProtocolError(f"input {name!r} has both 'data' and binary_data_size: send one")
            if length is None:
                raise ProtocolError(f"input {name!r} has binary_data_size but the request has no {HEADER_LENGTH} "
                                    f"header saying where its JSON ends")
            if size != nbytes:
                raise ProtocolError(f"input {name!r}: binary_data_size is {size} bytes, but shape {shape} of "
                                    f"{spec.datatype} is {nbytes} bytes")
            if offset + size > len(binary):
                raise ProtocolError(f"input {name!r}: its binary data would end at byte {offset + size} after the "
                                    f"JSON, but only {len(binary)} bytes follow it")
            arrays[name] = np.frombuffer(binary, dtype=spec.dtype.newbyteorder("<"), count=count,
                                         offset=offset).reshape(shape)
            offset += size
        elif "data" in entry:
            arrays[name] = _json_tensor(entry["data"], spec, shape, count)
        else:
            raise ProtocolError(f"input {name!r} has neither 'data' nor a binary_data_size parameter")
    if offset != len(binary):
        raise ProtocolError(f"{len(binary)} bytes of binary data follow the JSON, but the inputs' binary_data_size "
                            f"add up to {offset}")
    missing = [t.describe() for t in signature.inputs if t.name not in arrays]
    if missing:
        raise ProtocolError(f"missing input {', '.join(missing)} (model {signature.model!r})")
    return InferRequest(request_id, arrays, int(rows), _requested_outputs(request.get("outputs"), signature,
                                                                          binary_default))


def _requested_outputs(given: Any, signature: Signature, binary_default: bool) -> tuple[RequestedOutput, ...]:
    if given is None:
        return tuple(RequestedOutput(t.name, binary_default) for t in signature.outputs)
    if not isinstance(given, list):
        raise ProtocolError("'outputs' must be an array of {name[, parameters]}")
    known = set(signature.output_names())
    chosen: list[RequestedOutput] = []
    for entry in given:
        if not isinstance(entry, dict):
            raise ProtocolError("each of 'outputs' must be a JSON object with a name")
        name = entry.get("name")
        if not isinstance(name, str) or name not in known:
            raise ProtocolError(f"unknown output {quoted(name)}: model {signature.model!r} answers "
                                f"{', '.join(t.describe() for t in signature.outputs)}")
        if any(o.name == name for o in chosen):
            raise ProtocolError(f"output {name!r} is requested twice")
        parameters = _object(entry.get("parameters"), f"output {name!r}'s 'parameters'")
        if any(key in parameters for key in _UNSUPPORTED_PARAMETERS):
            raise ProtocolError("shared memory is not supported: outputs come back in the response")
        if parameters.get("classification"):
            raise ProtocolError("the classification extension is not supported: request the output itself "
                                "(for top-k labels, POST /v1/classify)")
        chosen.append(RequestedOutput(name, _flag(parameters, "binary_data", f"output {name!r}'s", binary_default)))
    return tuple(chosen)


def _json_tensor(data: Any, spec: Tensor, shape: list[int], count: int) -> np.ndarray:
    name = spec.name
    if not isinstance(data, list):
        raise ProtocolError(f"input {name!r}: 'data' must be an array (flat, row-major, or nested as the shape)")
    if data and not isinstance(data[0], list) and len(data) != count:  # flat: refused before any conversion
        raise ProtocolError(f"input {name!r}: 'data' holds {len(data)} values; shape {shape} needs {count}")
    try:
        array = np.array(data)
    except (ValueError, TypeError, RecursionError):
        raise ProtocolError(f"input {name!r}: 'data' is not a regular array of numbers") from None
    if array.size != count:
        raise ProtocolError(f"input {name!r}: 'data' holds {array.size} values; shape {shape} needs {count}")
    if array.ndim != 1 and list(array.shape) != shape:
        raise ProtocolError(f"input {name!r}: nested 'data' of shape {list(array.shape)} is not shape {shape}")
    if array.dtype.kind not in _JSON_KINDS[spec.dtype.kind]:
        raise ProtocolError(f"input {name!r} is {spec.datatype}: 'data' holds values that are not "
                            f"{'true/false' if spec.dtype.kind == 'b' else spec.datatype + ' numbers'}")
    if spec.dtype.kind in "iu":
        info = np.iinfo(spec.dtype)
        low, high = int(array.min()), int(array.max())
        if low < info.min or high > info.max:
            raise ProtocolError(f"input {name!r} is {spec.datatype}: values {low}..{high} are outside "
                                f"{info.min}..{info.max}")
    return array.astype(spec.dtype).reshape(shape)


# -- responses ------------------------------------------------------------------------------------------
def encode_response(served_name: str, version: int | str, request: InferRequest,
                    arrays: Mapping[str, np.ndarray], signature: Signature) -> tuple[bytes, int | None]:
    """The response body and, when any output is binary, the length of its JSON part (the
    ``Inference-Header-Content-Length`` header; the body is then ``application/octet-stream``)."""
    datatypes = {t.name: t for t in signature.outputs}
    outputs, chunks = [], []
    for wanted in request.outputs:
        spec = datatypes[wanted.name]
        array = np.ascontiguousarray(arrays[wanted.name], dtype=spec.dtype)
        entry: dict[str, Any] = {"name": wanted.name, "datatype": spec.datatype, "shape": list(array.shape)}
        if wanted.binary:
            raw = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = array.ravel().tolist()
        outputs.append(entry)
    answer: dict[str, Any] = {"model_name": served_name, "model_version": str(version)}
    if request.id is not None:
        answer["id"] = request.id
    answer["outputs"] = outputs
    head = json.dumps(answer, separators=(",", ":")).encode()
    if not chunks:
        return head, None
    return head + b"".join(chunks), len(head)


# -- the model deployment's side ------------------------------------------------------------------------
def split_rows(inputs: Mapping[str, np.ndarray], rows: int) -> list[dict[str, np.ndarray]]:
    """A request's tensors as ``rows`` items of the batch queue (views, no copies)."""
    return [{name: array[i] for name, array in inputs.items()} for i in range(rows)]


def run_rows(session: Any, signature: Signature, rows: Sequence[Mapping[str, np.ndarray]],
             ) -> tuple[list[dict[str, np.ndarray]], tuple[int, int, int]]:
    """Queued rows of any number of requests in one session call (one per distinct row shape: one for a
    model with fixed sizes): each row's outputs, and the nanoseconds spent making the inputs, in the
    session and splitting the outputs (Triton's compute_input, compute_infer, compute_output)."""
    groups: dict[tuple, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(tuple(row[t.name].shape for t in signature.inputs), []).append(i)
    names = signature.output_names()
    results: list[dict[str, np.ndarray]] = [{} for _ in rows]
    spent_input = spent_infer = spent_output = 0
    for members in groups.values():
        started = time.perf_counter_ns()
        feed = {t.name: np.stack([rows[i][t.name] for i in members]) for t in signature.inputs}
        for fill in signature.filled:
            feed[fill.name] = fill.make(len(members))
        fed = time.perf_counter_ns()
        produced = session.run(names, feed)
        ran = time.perf_counter_ns()
        for name, output in zip(names, produced):
            if name in signature.sampled:
                output = output[0]  # the one sample of the deterministic pass
            for j, i in enumerate(members):
                results[i][name] = output[j]
        spent_input += fed - started
        spent_infer += ran - fed
        spent_output += time.perf_counter_ns() - ran
    return results, (spent_input, spent_infer, spent_output)


def join_rows(results: Sequence[Mapping[str, np.ndarray]], names: Sequence[str]) -> dict[str, np.ndarray]:
    """One request's rows back into batch tensors."""
    return {name: np.stack([r[name] for r in results]) for name in names}


def server_metadata(version: str) -> dict[str, Any]:
    return {"name": "lensgraph", "version": version, "extensions": list(EXTENSIONS)}
