"""The HTTP edge: one aiohttp listener per peer, and the apps that plug into it.

`server.HttpServer` owns the only aiohttp Application, runner and site; each feature (gossip and
health now, metrics, the console and S3 later) mounts its own sub-app with its own routes and
middlewares under its own path. This is the only package that imports aiohttp: it maps domain
errors to HTTP statuses, and aiohttp errors to builtin ones, exactly once.
"""
