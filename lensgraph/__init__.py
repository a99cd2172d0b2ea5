"""lensgraph: the Ray-free core of a multi-model vision inference service.

Everything under this package runs without Ray: image decoding, preprocessing, ONNX export,
ONNX Runtime sessions, post-processing and the model repository. ``deployments/`` and
``pipelines/`` wrap it for Ray Serve.
"""

__version__ = "0.1.0"
