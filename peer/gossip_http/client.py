"""GossipTransport over HTTP: POST our snapshot to http://ADDR/gossip and return the reply body.

aiohttp's errors are translated here into the builtin ConnectionError and TimeoutError the Gossiper
expects, keeping the cause. One pooled session serves every peer, so rounds reuse connections.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence

import aiohttp

from peer.gossip_http.server import MAX_REASON_CHARS, MSGPACK

DEFAULT_TIMEOUT_S = 2.0
RESOLVE_TIMEOUT_S = 2.0


class HttpGossipTransport:
    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S, max_reply_bytes: int | None = None) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_reply_bytes = max_reply_bytes
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    async def push_pull(self, addr: str, body: bytes) -> bytes:
        url = f"http://{addr}/gossip"
        try:
            async with self._get_session().post(url, data=body, headers={"Content-Type": MSGPACK}) as resp:
                if resp.status != 200:
                    reason = (await resp.text(errors="replace"))[:MAX_REASON_CHARS]
                    raise ConnectionError(f"gossip to {addr}: HTTP {resp.status} {resp.reason}: {reason}")
                return await self._read_reply(resp)
        except TimeoutError as exc:  # also aiohttp's ServerTimeoutError, which subclasses it
            raise TimeoutError(f"gossip to {addr} timed out") from exc
        except aiohttp.ClientError as exc:
            raise ConnectionError(f"gossip to {addr} failed: {exc!r}") from exc

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        # Created on first use: a ClientSession binds to the running loop.
        if self._closed:
            raise ConnectionError("gossip transport is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def _read_reply(self, resp: aiohttp.ClientResponse) -> bytes:
        """Reads at most one byte past the limit, so a huge reply costs no memory and still fails
        the size check in decode()."""
        if self._max_reply_bytes is None:
            return await resp.read()
        limit = self._max_reply_bytes + 1
        buf = bytearray()
        while len(buf) < limit:
            chunk = await resp.content.read(limit - len(buf))
            if not chunk:
                break
            buf += chunk
        return bytes(buf)


async def resolve_seeds(seeds: Sequence[str]) -> list[str]:
    """Every address behind each seed HOST:PORT (all replicas of a service name); a seed that does
    not resolve is kept as written, so the next round tries it again."""
    loop = asyncio.get_running_loop()
    out: list[str] = []
    for seed in seeds:
        host, sep, port = seed.rpartition(":")
        if not sep or not port.isdigit():
            out.append(seed)
            continue
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_S
            )
        except (OSError, TimeoutError):
            out.append(seed)
            continue
        for info in infos:
            ip = str(info[4][0])
            out.append(f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}")
    return list(dict.fromkeys(out))
