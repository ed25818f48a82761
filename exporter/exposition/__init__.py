"""Snapshots into /metrics: the metric families, their encoding, the HTTP server."""
