"""Wire protocols besides lensgraph's own /v1 API: the Open Inference Protocol (KServe v2, Triton's HTTP API)."""
