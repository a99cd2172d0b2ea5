"""Ray-free model runners and in-process pipelines: what the deployments wrap, and what the
benchmark's floor and the single-process baseline call directly."""
