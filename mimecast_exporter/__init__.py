"""Prometheus exporter for Mimecast's message processing queue."""

__version__ = "0.2.0"
