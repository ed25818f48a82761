"""What was counted, saved so a restart neither re-counts nor skips a row."""
