"""Deployment artefacts generated from the repository's own configs (KubeRay manifests)."""
