"""Rows into counts: labels, each row once, sessions, the tally."""
