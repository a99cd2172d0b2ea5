"""Runs in the tritonclient environment (tests/tritonclient_env.py), not in .venv: ``python v2_client.py
CALLS.json RESULTS.json``. Each call is one tritonclient.http method against the server; arrays travel as
.npy files. Imports only numpy and tritonclient (no lensgraph, no Ray)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype


def infer(client: httpclient.InferenceServerClient, call: dict, folder: Path, index: int) -> dict:
    binary = call.get("binary", True)
    inputs = []
    for name, path in call["inputs"].items():
        array = np.load(path)
        tensor = httpclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    # Without outputs, tritonclient asks for every output in binary (binary_data_output); binary off means
    # naming each output with binary_data=False.
    names = call.get("outputs")
    outputs = None if names is None else [httpclient.InferRequestedOutput(n, binary_data=binary) for n in names]
    result = client.infer(call["model"], inputs, model_version=call.get("version", ""), outputs=outputs,
                          request_id=call.get("request_id", ""))
    response = result.get_response()
    saved = {}
    for output in response["outputs"]:
        path = folder / f"out_{index}_{output['name']}.npy"
        np.save(path, result.as_numpy(output["name"]))
        saved[output["name"]] = str(path)
    return {"response": response, "outputs": saved}


def main(calls_path: str, results_path: str) -> None:
    spec = json.loads(Path(calls_path).read_text())
    folder = Path(results_path).parent
    client = httpclient.InferenceServerClient(spec["url"], connection_timeout=60, network_timeout=120)
    results = []
    for index, call in enumerate(spec["calls"]):
        op, model = call["op"], call.get("model")
        try:
            if op == "live":
                value = client.is_server_live()
            elif op == "ready":
                value = client.is_server_ready()
            elif op == "server_metadata":
                value = client.get_server_metadata()
            elif op == "model_ready":
                value = client.is_model_ready(model, call.get("version", ""))
            elif op == "metadata":
                value = client.get_model_metadata(model, call.get("version", ""))
            elif op == "config":
                value = client.get_model_config(model, call.get("version", ""))
            elif op == "stats":
                value = client.get_inference_statistics(model, call.get("version", ""))
            elif op == "infer":
                value = infer(client, call, folder, index)
            else:
                raise ValueError(f"unknown op {op!r}")
            results.append({"ok": True, "value": value})
        except InferenceServerException as exc:
            results.append({"ok": False, "status": exc.status(), "message": exc.message()})
    Path(results_path).write_text(json.dumps(results))


if __name__ == "__main__":
    main(*sys.argv[1:3])
