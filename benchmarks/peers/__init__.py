"""Peer systems serving the same classifier ONNX on the CPU, for the side-by-side benchmark.

Each peer lives in its own virtual environment (``venvs.py``) because its pins conflict with
ours; ``launch.py`` starts and stops them; ``bentoml_service.py`` and ``triton_server.py`` are
what runs inside those environments.
"""
