"""Prometheus exporter for the Wolkvox reports API diagram_9 (interaction routing and chatbots)."""

__version__ = "0.1.0"
