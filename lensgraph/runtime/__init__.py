"""ONNX Runtime sessions configured the way a serving replica needs them."""
