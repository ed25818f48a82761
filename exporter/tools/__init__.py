"""Tools beside the exporter: the simulated API, backfill, diagnosis, the health probe.

The core (every other package but cli) never imports these."""
