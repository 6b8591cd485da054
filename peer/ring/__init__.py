"""Placement: the consistent-hash ring, redundancy policies, and the pure rules that combine them with peer liveness."""
