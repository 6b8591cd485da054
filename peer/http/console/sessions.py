"""Console sessions: a random id in an HttpOnly cookie, the token it was opened with kept on the peer.

The cookie carries only the session id, never the token. The token stays in this peer's memory so
every request checks it again through the TokenVerifier: a revoked token ends its console sessions
as soon as the verifier's cache lets it. Each session has its own CSRF token, which the page reads
from GET /console/api/session and sends back in the `X-CSRF-Token` header of every request that
changes something (upload, delete, logout).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from peer.security.tokens import Principal

__all__ = ["MAX_SESSIONS", "SESSION_TTL_S", "Session", "Sessions"]

SESSION_TTL_S = 8 * 3600.0
MAX_SESSIONS = 1000


@dataclass(frozen=True)
class Session:
    session_id: str
    csrf: str
    token: str  # "" with client authentication off
    principal: Principal
    expires_at: float

    def csrf_ok(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(self.csrf.encode(), (presented or "").encode())


class Sessions:
    """The open sessions of one peer, oldest dropped first beyond `max_sessions`."""

    def __init__(self, ttl_s: float = SESSION_TTL_S, max_sessions: int = MAX_SESSIONS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._max = max_sessions
        self._clock = clock
        self._open: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._open)

    def open(self, token: str, principal: Principal) -> Session:
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), token, principal,
                          self._clock() + self.ttl_s)
        self._open[session.session_id] = session
        while len(self._open) > self._max:
            self._open.popitem(last=False)
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._open.get(session_id)
        if session is None:
            return None
        if session.expires_at <= self._clock():
            del self._open[session_id]
            return None
        return session

    def close(self, session_id: str) -> None:
        self._open.pop(session_id, None)
