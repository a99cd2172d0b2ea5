"""The ``lensgraph`` command line: one module per sub-command."""
