"""Backfill: read a past date range from the API and write it as OpenMetrics for promtool.

`request` checks what is asked, `replay` runs the shared ingest step window by window and
samples the counters as a live exporter would have shown them, and `progress` keeps what an
interrupted run needs to resume (the spooled samples and a progress file).
"""
