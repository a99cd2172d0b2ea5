"""Evaluation of served models against real data (build-time and report tooling)."""
