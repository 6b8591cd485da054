"""Who sends an S3 request, and whether their role allows its operation.

Every request is verified with SigV4 (Authorization header or presigned URL): the access key it
claims is read first, its secret and role fetched through `KeyLookup` (off the event loop, cached by
the key store), then the signature checked and the role compared with the operation's. A peer that
runs without authentication (`--no-auth`, development only) accepts any credentials or none; the
body is still decoded and its digests checked, but no chunk or trailer signature can be.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from peer.s3 import AuthResult, RequestHead, S3Error, SigV4Verifier, unverified
from peer.s3.operations import Operation
from peer.security.tokens import RANK

__all__ = ["KeyLookup", "S3Authenticator"]

KeyLookup = Callable[[str], Awaitable[tuple[str, str] | None]]
"""access key id -> (secret, role) of a valid key; None when the key is unknown or revoked."""


def _no_secret(_access_key_id: str) -> None:
    return None


class S3Authenticator:
    def __init__(self, keys: KeyLookup | None, *, no_auth: bool, clock: Callable[[], float] = time.time) -> None:
        """`keys` None (and authentication on) refuses every key."""
        self._keys = keys
        self._no_auth = no_auth
        self._clock = clock
        self._reader = SigV4Verifier(_no_secret, clock=clock)

    async def authenticate(self, head: RequestHead, operation: Operation) -> AuthResult:
        """The request's authentication, or the `S3Error` S3 would refuse it with."""
        if self._no_auth:
            return unverified(head)
        access_key_id = self._reader.claimed_access_key(head)
        found = await self._keys(access_key_id) if self._keys is not None else None
        secret = found[0] if found is not None else None
        verifier = SigV4Verifier(lambda key: secret if key == access_key_id else None, clock=self._clock)
        auth = verifier.verify(head)
        assert found is not None  # verify refuses a key without a secret
        role = found[1]
        if RANK.get(role, -1) < RANK[operation.role]:
            raise S3Error("AccessDenied", f"Access Denied: {operation.name} needs the {operation.role} role; "
                                          f"access key {access_key_id} has {role}.")
        return auth
