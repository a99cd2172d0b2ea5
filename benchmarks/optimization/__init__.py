"""The in-process optimisation study of issue 5: ``python -m benchmarks.optimization`` (see __main__.py)."""
