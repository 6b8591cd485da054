"""The peer's one HTTP listener: a root aiohttp Application that every HTTP app mounts on.

A feature hands over a `Mount` (a path prefix and its own `web.Application`) before `start()`,
which is when aiohttp freezes the routes. Sub-apps keep their own middlewares, so a check that
belongs to one feature (the peer certificate /gossip demands) never reaches another (/health).
aiohttp applies only the root application's `client_max_size`, shared by every app on the
listener, so each app bounds the bodies it reads itself.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

from aiohttp import web

__all__ = ["DEFAULT_IDLE_TIMEOUT_S", "MAX_FIELD_BYTES", "MAX_HEADERS", "MAX_LINE_BYTES", "HttpServer", "Mount"]

# aiohttp's own default is an hour; an idle keep-alive connection costs a socket and a task.
DEFAULT_IDLE_TIMEOUT_S = 75.0

# What the HTTP layer reads of a request head before any app sees it. A request beyond one of these
# is answered 400 by aiohttp itself (a plain-text body: no app, so no S3 XML error, runs for it) and
# its connection closed; the listener keeps serving. The request line holds an S3 key of up to
# 1024 bytes percent-encoded (three times as long) plus a presigned URL's query; one header holds at
# most an x-amz-copy-source of such a key; S3 itself takes at most 8 KiB of headers on a request.
MAX_LINE_BYTES = 16 * 1024
MAX_FIELD_BYTES = 8 * 1024
MAX_HEADERS = 128


@dataclass(frozen=True)
class Mount:
    """One app of the listener: it answers every path under `prefix` (e.g. "/gossip")."""

    prefix: str
    app: web.Application


class HttpServer:
    def __init__(self, *, idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S) -> None:
        """Connections idle for `idle_timeout_s` are closed, whichever app they last spoke to."""
        self._root = web.Application()
        self._idle_timeout_s = idle_timeout_s
        self._runner: web.AppRunner | None = None
        self._mounted: list[str] = []

    def mount(self, mount: Mount) -> None:
        """Adds an app under its prefix; the prefix "" gives one app every path of the listener (the S3
        API, whose paths are buckets and keys), which then shares the listener with no other app."""
        if self._runner is not None:
            raise RuntimeError(f"cannot mount {mount.prefix} on a started HTTP server: mount every app first")
        if "" in self._mounted or (not mount.prefix and self._mounted):
            raise RuntimeError("an app answering every path needs an HTTP listener of its own")
        if mount.prefix:
            self._root.add_subapp(mount.prefix, mount.app)
        else:
            self._root = mount.app
        self._mounted.append(mount.prefix)

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> int:
        """Serves every mounted app on host:port (over TLS with `ssl_context`); returns the bound port.

        The socket is bound here, without SO_REUSEPORT, so port 0 yields a port no other listener shares.
        """
        if self._runner is not None:
            raise RuntimeError("the HTTP server is already started")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # No access log: one line per gossip round would drown the log. Bodies reach the apps as sent:
        # a Content-Encoding describes what a client stores (an S3 object's gzip), not a transfer to undo.
        runner = web.AppRunner(self._root, access_log=None, keepalive_timeout=self._idle_timeout_s,
                               auto_decompress=False, max_line_size=MAX_LINE_BYTES,
                               max_field_size=MAX_FIELD_BYTES, max_headers=MAX_HEADERS)
        await runner.setup()
        try:
            sock = socket.create_server((host, port), family=family)
        except OSError:
            await runner.cleanup()
            raise
        try:
            await web.SockSite(runner, sock, ssl_context=ssl_context).start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self._runner = runner
        return int(sock.getsockname()[1])

    async def stop(self) -> None:
        """Closes the listener and every open connection; safe to call twice, or before start()."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
