"""Self-healing: anti-entropy between owners, hinted handoff, scrubbing and garbage collection."""
