"""The gossip edge over HTTP: aiohttp routes for /gossip and /health, and the matching client transport.

This package is the only membership code that imports aiohttp; it maps gossip errors to HTTP statuses
(and aiohttp errors to builtin ones) exactly once.
"""
