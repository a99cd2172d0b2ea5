"""The model repository: a Triton-like folder per model, an ONNX artefact and a card beside it."""
