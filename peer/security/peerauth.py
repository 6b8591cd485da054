"""Peer message signatures for clusters running without TLS: HMAC-SHA256 with a shared cluster secret.

Every peer-to-peer message (a gossip push, its reply, an internal gRPC call) carries a credential
`v1.<unix-ms>.<nonce>.<mac>`. The MAC covers a purpose string (which endpoint, so a signature for one
call cannot be replayed against another), the sender's timestamp and nonce, and the payload (the
gossip body, or a digest naming what a chunk call acts on). The receiver refuses:
- a wrong MAC (forged, tampered, or signed with another cluster's secret);
- a timestamp outside the window around its own clock (an old message replayed later);
- a nonce it has already accepted within the window (a message replayed at once).
Clocks of peers must therefore agree within the window (default 60 s), as NTP provides.
`derive` gives keys for longer exchanges (a chunk stream's frames) from the secret and both ends' nonces.
This module knows nothing of HTTP or gRPC; the transports put the credential in a header.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from peer.errors import Unauthenticated

CREDENTIAL_VERSION = "v1"
DEFAULT_WINDOW_S = 60.0
DEFAULT_MAX_NONCES = 200_000
MIN_SECRET_CHARS = 16
NONCE_BYTES = 16
_DOMAIN = b"dfs-peer-auth-v1\x00"


class PeerSigner:
    """Signs and verifies peer credentials; one instance per peer, shared by its transports.

    Thread-safe: gRPC handlers and the gossip server may verify concurrently from worker threads.
    """

    def __init__(
        self,
        secret: str,
        *,
        window_s: float = DEFAULT_WINDOW_S,
        max_nonces: int = DEFAULT_MAX_NONCES,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if len(secret) < MIN_SECRET_CHARS:
            raise ValueError(f"the cluster secret must be at least {MIN_SECRET_CHARS} characters")
        self._key = hashlib.sha256(b"dfs-cluster-secret\x00" + secret.encode()).digest()
        self._window_ms = int(window_s * 1000)
        self._max_nonces = max_nonces
        self._now = wall_clock
        self._seen: OrderedDict[str, int] = OrderedDict()  # nonce -> timestamp (ms), oldest first
        self._lock = threading.Lock()

    def sign(self, purpose: str, payload: bytes) -> str:
        """A fresh credential for `payload` sent to the endpoint named by `purpose`."""
        ts = int(self._now() * 1000)
        nonce = secrets.token_hex(NONCE_BYTES)
        return f"{CREDENTIAL_VERSION}.{ts}.{nonce}.{self._mac(purpose, ts, nonce, payload)}"

    def verify(self, purpose: str, payload: bytes, credential: str | None) -> str:
        """Returns the credential's nonce if it is authentic, fresh and unseen; else Unauthenticated.

        The nonce is remembered only after the MAC checks out, so forged messages cannot fill the cache.
        """
        if not credential:
            raise Unauthenticated("peer credential missing")
        parts = credential.split(".")
        if len(parts) != 4 or parts[0] != CREDENTIAL_VERSION or not parts[1].isdigit() or len(parts[1]) > 16:
            raise Unauthenticated("malformed peer credential")
        _, ts_text, nonce, mac = parts
        if len(nonce) != 2 * NONCE_BYTES or len(mac) != 64:
            raise Unauthenticated("malformed peer credential")
        ts = int(ts_text)
        if not hmac.compare_digest(mac, self._mac(purpose, ts, nonce, payload)):
            raise Unauthenticated("bad peer credential")
        now = int(self._now() * 1000)
        if abs(now - ts) > self._window_ms:
            raise Unauthenticated("stale peer credential (check that the peers' clocks agree)")
        with self._lock:
            self._forget_expired(now)
            if nonce in self._seen:
                raise Unauthenticated("replayed peer credential")
            self._seen[nonce] = ts
            while len(self._seen) > self._max_nonces:
                self._seen.popitem(last=False)
        return nonce

    def derive(self, label: str, *parts: bytes) -> bytes:
        """A 32-byte key for one use, bound to `parts` (a chunk stream's session key from the nonces of
        both ends' credentials): only holders of the cluster secret can compute it, and it is
        independent of the MACs `sign` makes, whatever the parts."""
        mac = hmac.new(self._key, _DOMAIN + b"derive\x00", hashlib.sha256)
        for part in (label.encode(), *parts):
            mac.update(len(part).to_bytes(4, "big"))
            mac.update(part)
        return mac.digest()

    def _forget_expired(self, now_ms: int) -> None:
        # Insertion order approximates timestamp order; stop at the first entry still in the window.
        while self._seen:
            nonce, ts = next(iter(self._seen.items()))
            if now_ms - ts <= self._window_ms:
                break
            del self._seen[nonce]

    def _mac(self, purpose: str, ts: int, nonce: str, payload: bytes) -> str:
        mac = hmac.new(self._key, _DOMAIN, hashlib.sha256)
        for part in (purpose.encode(), str(ts).encode(), nonce.encode()):
            mac.update(len(part).to_bytes(4, "big"))
            mac.update(part)
        mac.update(payload)
        return mac.hexdigest()
