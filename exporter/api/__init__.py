"""The Wolkvox reports API: requests, answers, rows and the time windows they are asked for."""
