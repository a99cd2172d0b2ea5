"""ONNX export: torch modules (ours or a user's) and imported ONNX files, with preprocessing baked in."""
