"""Reliability and security (issue 8): faults, bad input, load — nothing lost, nothing leaked."""
