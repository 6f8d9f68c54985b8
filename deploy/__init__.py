"""Deployment support: compose files, Prometheus config and the local server launcher."""
