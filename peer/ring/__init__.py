"""Placement: the consistent-hash ring and the pure rules that combine it with peer liveness."""
