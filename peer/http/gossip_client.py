"""GossipTransport over HTTP: POST our snapshot to http(s)://ADDR/gossip and return the reply body.

aiohttp's errors are translated here into the builtin ConnectionError and TimeoutError the Gossiper
expects, keeping the cause. One pooled session serves every peer, so rounds reuse connections.
With a signer, every push carries a credential and a reply counts only if it is signed over our
push's nonce; with an SSL context, peers are dialled over mutual TLS and must present a
certificate for the cluster-wide name PEER_TLS_NAME (peers are dialled by IP).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Sequence

import aiohttp

from peer.errors import Unauthenticated
from peer.http.gossip_wire import (
    AUTH_HEADER,
    GOSSIP_PATH,
    MAX_REASON_CHARS,
    MSGPACK,
    PUSH_PURPOSE,
    REPLY_PURPOSE,
    nonce_of,
    reply_payload,
)
from peer.http.tls import PEER_TLS_NAME
from peer.security.peerauth import PeerSigner

__all__ = ["HttpGossipTransport", "resolve_seeds"]

DEFAULT_TIMEOUT_S = 2.0
RESOLVE_TIMEOUT_S = 2.0


class HttpGossipTransport:
    def __init__(
        self,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_reply_bytes: int | None = None,
        *,
        signer: PeerSigner | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """`signer`: sign pushes and accept only replies signed for them; `ssl_context` (from
        `tls.client_ssl_context`): dial https and verify the peer's certificate."""
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_reply_bytes = max_reply_bytes
        self._signer = signer
        self._ssl_context = ssl_context
        self._scheme = "https" if ssl_context is not None else "http"
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    async def push_pull(self, addr: str, body: bytes) -> bytes:
        url = f"{self._scheme}://{addr}{GOSSIP_PATH}"
        headers = {"Content-Type": MSGPACK}
        nonce = ""
        if self._signer is not None:
            credential = self._signer.sign(PUSH_PURPOSE, body)
            headers[AUTH_HEADER] = credential
            nonce = nonce_of(credential)
        tls = self._ssl_context is not None
        try:
            async with self._get_session().post(
                url, data=body, headers=headers,
                ssl=self._ssl_context or True, server_hostname=PEER_TLS_NAME if tls else None,
            ) as resp:
                if resp.status != 200:
                    reason = (await resp.text(errors="replace"))[:MAX_REASON_CHARS]
                    raise ConnectionError(f"gossip to {addr}: HTTP {resp.status} {resp.reason}: {reason}")
                reply = await self._read_reply(resp)
                self._check_reply(addr, nonce, reply, resp.headers.get(AUTH_HEADER))
                return reply
        except TimeoutError as exc:  # also aiohttp's ServerTimeoutError, which subclasses it
            raise TimeoutError(f"gossip to {addr} timed out") from exc
        except aiohttp.ClientError as exc:
            raise ConnectionError(f"gossip to {addr} failed: {exc!r}") from exc

    def _check_reply(self, addr: str, nonce: str, reply: bytes, credential: str | None) -> None:
        """Refuses a reply not signed for our push: anyone on the path could otherwise feed us a
        forged view, or replay an old reply of that peer."""
        if self._signer is None:
            return
        if self._max_reply_bytes is not None and len(reply) > self._max_reply_bytes:
            # Truncated by _read_reply, so its signature cannot be checked; refuse it outright.
            raise ConnectionError(f"gossip reply from {addr} exceeds {self._max_reply_bytes} bytes")
        try:
            self._signer.verify(REPLY_PURPOSE, reply_payload(nonce, reply), credential)
        except Unauthenticated as exc:
            raise ConnectionError(f"gossip reply from {addr} refused: {exc}") from exc

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
