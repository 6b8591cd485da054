"""Client API tokens: how they are made, stored (hash only) and checked, and what each role may do.

A token reads `dfs_<token_id>_<secret>`: the id (16 hex characters) finds the record, the secret
(256 random bits) proves possession. Only SHA-256(secret) is stored; with that much entropy a fast
hash is enough, a password KDF would only slow every call. Verified tokens are cached for
`cache_s` seconds, so a revocation takes effect within that time on every peer.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from peer.errors import InvalidRequest, PermissionDenied, Unauthenticated
from peer.metadata.store import ROLES, AsyncMetadata, TokenRecord

PREFIX = "dfs_"
TOKEN_ID_HEX = 16
_TOKEN = re.compile(r"^dfs_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
MAX_NAME_CHARS = 128
MAX_CACHED = 10_000
RANK = {role: rank for rank, role in enumerate(ROLES)}


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's id, role and name ("" id when auth is off)."""

    token_id: str
    role: str
    name: str


ANONYMOUS_ADMIN = Principal("", "admin", "auth disabled")


def check_role(role: str) -> str:
    if role not in RANK:
        raise InvalidRequest(f"unknown role {role[:20]!r}: expected one of {', '.join(ROLES)}")
    return role


def check_token_name(name: str) -> str:
    if len(name) > MAX_NAME_CHARS or any(not ch.isprintable() for ch in name):
        raise InvalidRequest(f"token name must be printable and at most {MAX_NAME_CHARS} characters")
    return name


def new_token(role: str, name: str, now: float) -> tuple[str, TokenRecord]:
    """A fresh token string (to show once) and the record to store."""
    token_id = secrets.token_hex(TOKEN_ID_HEX // 2)
    secret = secrets.token_urlsafe(32)
    record = TokenRecord(token_id, _digest(secret), check_role(role), check_token_name(name), now)
    return f"{PREFIX}{token_id}_{secret}", record


def parse_token(text: str) -> tuple[str, str]:
    match = _TOKEN.match(text)
    if match is None:
        raise Unauthenticated("malformed token")
    return match.group(1), match.group(2)


def require(principal: Principal, role: str) -> None:
    """PermissionDenied unless `principal`'s role includes `role` (admin > write > read)."""
    if RANK[principal.role] < RANK[role]:
        raise PermissionDenied(f"token {principal.token_id or '-'} has role {principal.role}; this needs {role}")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TokenVerifier:
    """Checks bearer tokens against the metadata store, caching answers (good and bad) briefly."""

    def __init__(self, metadata: AsyncMetadata, cache_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._metadata = metadata
        self._cache_s = cache_s
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, TokenRecord | None]] = OrderedDict()

    async def verify(self, token: str) -> Principal:
        """The caller behind `token`, or Unauthenticated (malformed, unknown, wrong secret, revoked).

        The reason is not told apart to the caller, so probing cannot learn which token ids exist.
        """
        token_id, secret = parse_token(token)
        record = await self._lookup(token_id)
        if record is None or not hmac.compare_digest(record.secret_sha256, _digest(secret)):
            raise Unauthenticated("invalid or revoked token")
        if record.revoked_at is not None:
            raise Unauthenticated("invalid or revoked token")
        return Principal(record.token_id, record.role, record.name)

    def forget(self, token_id: str) -> None:
        """Drops a cached answer (this peer revoked the token, so it stops working here at once)."""
        self._cache.pop(token_id, None)

    async def _lookup(self, token_id: str) -> TokenRecord | None:
        now = self._clock()
        hit = self._cache.get(token_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        record = await self._metadata.get_token(token_id)
        if self._cache_s > 0:
            self._cache[token_id] = (now + self._cache_s, record)
            self._cache.move_to_end(token_id)
            while len(self._cache) > MAX_CACHED:
                self._cache.popitem(last=False)
        return record
