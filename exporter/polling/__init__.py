"""The loop of an operation: plan, read, count, save, publish a snapshot."""
