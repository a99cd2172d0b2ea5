"""Training recipes (build-time only: torch is imported here, never at serve time)."""
