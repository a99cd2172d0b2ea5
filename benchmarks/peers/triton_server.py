"""The classifier served by NVIDIA Triton through PyTriton 0.7 on the CPU: the benchmark's Triton peer.

Runs inside ``.bench/venvs/triton`` (see ``venvs.py``); ``launch.py`` starts it as

    LD_LIBRARY_PATH=<the venv interpreter's LIBDIR> python benchmarks/peers/triton_server.py --port PORT ...

PyTriton starts a ``tritonserver`` process (HTTP/KServe v2 front end, dynamic batcher) whose Python
backend stub forwards each batch to the inference callable below, in this process. The stub embeds
the interpreter through ``libpython3.X.so``: ``LD_LIBRARY_PATH`` must name the directory of *this*
interpreter's library (``sysconfig.get_config_var("LIBDIR")``), or the stub may load another
libpython (the system's) and the model fails to load.

Model ``classifier`` (version 1), dynamic batching on, max batch size and queue delay configurable:

  input   ``image``            BYTES, per-request shape [1]: one encoded image (JPEG, PNG, ...)
  outputs ``class_id``         INT64 [k]   top-k ImageNet classes, best first
          ``confidence``       FP32  [k]   their softmax probabilities
          ``label``            BYTES [k]   their names
          ``embedding_stats``  FP64  [2]   the embedding's mean and population variance

Request (HTTP, the binary tensor data extension, one image per request)::

  POST /v2/models/classifier/infer
  Content-Type: application/octet-stream
  Inference-Header-Content-Length: <length of the JSON header>

  {"inputs":[{"name":"image","shape":[1,1],"datatype":"BYTES","parameters":{"binary_data_size":<4+N>}}]}
  <N as uint32 little-endian><the N bytes of the encoded image>

The answer is JSON: ``{"model_name": "classifier", "outputs": [{"name": "class_id", "datatype":
"INT64", "shape": [1, 2], "data": [...]}, ...]}``. ``launch.triton_request`` builds the request.

Work per batch, in the inference callable: decode (``decode_image``) and ``classifier_standard``
(shorter side 256, centre crop 224) for each image, one after the other, then the ONNX model on
the whole batch through ONNX Runtime and top-k with softmax confidence (``ClassifierRunner``, the
same code lensgraph serves with). Triton hands Python models whole batches; there is no per-request
Python stage before the batcher.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
from pathlib import Path

import numpy as np
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

from lensgraph.imaging.decode import decode_image
from lensgraph.imaging.transforms import classifier_standard
from lensgraph.inference.classifier import ClassifierRunner
from lensgraph.repository.store import find_model
from lensgraph.runtime.session import SessionConfig

ROOT = Path(__file__).resolve().parents[2]
MODEL_NAME = "classifier"


def make_infer(runner: ClassifierRunner, top_k: int):
    @batch
    def infer(image: np.ndarray) -> dict[str, np.ndarray]:
        # image: [B, 1] of encoded images (bytes objects)
        crops = [classifier_standard(decode_image(bytes(data)).pixels) for data in image[:, 0]]
        results = runner.run_batch([(crop, top_k, False) for crop in crops])
        preds = [r["predictions"] for r in results]
        return {
            "class_id": np.array([[p["class_id"] for p in row] for row in preds], dtype=np.int64),
            "confidence": np.array([[p["confidence"] for p in row] for row in preds], dtype=np.float32),
            "label": np.array([[p["label"].encode() for p in row] for row in preds], dtype=np.object_),
            "embedding_stats": np.array(
                [[r["embedding_stats"]["mean"], r["embedding_stats"]["variance"]] for r in results], dtype=np.float64
            ),
        }

    return infer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(description="Serve the lensgraph classifier with PyTriton (CPU).")
    parser.add_argument("--host", default=env("PEER_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env("PEER_PORT", "8000")), help="HTTP port")
    parser.add_argument("--repository", type=Path,
                        default=Path(env("LENSGRAPH_MODEL_REPOSITORY") or ROOT / "model_repository"))
    parser.add_argument("--max-batch-size", type=int, default=int(env("PEER_MAX_BATCH_SIZE", "16")))
    parser.add_argument("--batch-delay-us", type=int, default=int(env("PEER_BATCH_DELAY_US", "4000")),
                        help="dynamic batcher's max_queue_delay_microseconds (lensgraph waits 4 ms)")
    parser.add_argument("--threads", type=int, default=int(env("PEER_THREADS", "2")),
                        help="ONNX Runtime intra-op threads")
    parser.add_argument("--top-k", type=int, default=int(env("PEER_TOP_K", "2")))
    parser.add_argument("--workspace", type=Path, default=None,
                        help="PyTriton's workspace (model store, sockets); default: a temporary folder")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runner = ClassifierRunner(find_model(args.repository, MODEL_NAME), SessionConfig(intra_op_threads=args.threads))
    # HTTP only: gRPC and metrics would each need a port of their own and are not measured.
    config = TritonConfig(http_address=args.host, http_port=args.port, allow_grpc=False, allow_metrics=False,
                          exit_on_error=True)

    def on_sigterm(signum, frame):  # stop Triton and clean the workspace, as on Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    with Triton(config=config, workspace=args.workspace) as triton:
        triton.bind(
            model_name=MODEL_NAME,
            infer_func=make_infer(runner, args.top_k),
            inputs=[Tensor(name="image", dtype=np.bytes_, shape=(1,))],
            outputs=[
                Tensor(name="class_id", dtype=np.int64, shape=(args.top_k,)),
                Tensor(name="confidence", dtype=np.float32, shape=(args.top_k,)),
                Tensor(name="label", dtype=np.bytes_, shape=(args.top_k,)),
                Tensor(name="embedding_stats", dtype=np.float64, shape=(2,)),
            ],
            config=ModelConfig(
                max_batch_size=args.max_batch_size,
                batcher=DynamicBatcher(max_queue_delay_microseconds=args.batch_delay_us),
            ),
            strict=True,
        )
        triton.serve()


if __name__ == "__main__":
    main()
