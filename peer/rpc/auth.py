"""Who may call what, enforced before any handler runs.

Client API: a bearer token in the `authorization` metadata, and a role per method (read < write <
admin). Missing or bad token -> UNAUTHENTICATED, role too low -> PERMISSION_DENIED; the handler never
runs and nothing is read from the request stream. Internal chunk service: with TLS it listens on its
own mutual-TLS port, so the handshake has already proved the caller is a peer; without TLS every call
carries a peer credential (see peer.security.peerauth) over the method and what the call acts on.
The standard health and reflection services need no token: they tell whether the peer serves and
which services and messages it has (the published proto), nothing about any file. Each refusal is
counted by reason (`dfs_auth_failures_total`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from peer.errors import DfsError, Unauthenticated
from peer.rpc.status import abort_with
from peer.security.peerauth import PeerSigner
from peer.security.tokens import ANONYMOUS_ADMIN, Principal, TokenVerifier, require

log = logging.getLogger(__name__)

FILESTORE = "/dfs.v1.FileStore/"
PEERCHUNKS = "/dfs.v1.PeerChunks/"
PEER_AUTH_KEY = "dfs-peer-auth"
AUTHORIZATION_KEY = "authorization"
#: Services anyone may call: gRPC health checking and server reflection.
OPEN_SERVICES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)

#: Why a call was refused, as dfs_auth_failures_total counts it.
NO_TOKEN, BAD_TOKEN, ROLE_TOO_LOW, CLOSED_METHOD, BAD_PEER_CREDENTIAL = (
    "no_token", "bad_token", "role_too_low", "closed_method", "bad_peer_credential",
)
Failures = Callable[[str], None]
"""Told the reason of each refusal."""

#: The least role each client method needs. A method missing here is refused, so a new RPC
#: cannot become reachable without someone deciding who may call it.
METHOD_ROLES = {
    "Download": "read", "Get": "read", "Stat": "read", "List": "read", "ListVersions": "read",
    "ClusterStatus": "read", "WhoAmI": "read", "ListBuckets": "read",
    "Upload": "write", "Put": "write", "Delete": "write",
    "CreateToken": "admin", "ListTokens": "admin", "RevokeToken": "admin",
    "CreateS3Key": "admin", "ListS3Keys": "admin", "RevokeS3Key": "admin",
    "SetBucketPolicy": "admin",
}

# Sequence[tuple[str, str | bytes]] as grpc hands it over (a grpc.aio.Metadata on the handler side).
Metadata = Any


def metadata_value(metadata: Metadata, key: str) -> str | None:
    for k, v in metadata or ():
        if k == key:
            return v.decode(errors="replace") if isinstance(v, bytes) else v
    return None


def bearer(metadata: Metadata) -> str | None:
    value = metadata_value(metadata, AUTHORIZATION_KEY)
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class ClientAuth:
    """Resolves the caller of a client-API call; `None` verifier means auth is switched off."""

    def __init__(self, verifier: TokenVerifier | None) -> None:
        self.verifier = verifier

    @property
    def enabled(self) -> bool:
        return self.verifier is not None

    async def principal(self, metadata: Metadata) -> Principal:
        if self.verifier is None:
            return ANONYMOUS_ADMIN
        token = bearer(metadata)
        if not token:
            raise Unauthenticated("a token is required")
        return await self.verifier.verify(token)


def peer_payload(method: str, request: Any) -> bytes:
    """What a peer credential covers besides the method: the chunk id of a put (its data is bound
    to the id by the SHA-256 check on arrival), else the whole (small) request."""
    if method.endswith("/PutChunk"):
        return str(getattr(request, "chunk_id", "")).encode()
    if method.endswith("/PutChunkStream"):
        return b""  # a stream: each chunk is bound to its id by the SHA-256 check on arrival
    data: bytes = request.SerializeToString()
    return data


def _ignore(_reason: str) -> None:
    pass


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, clients: ClientAuth, signer: PeerSigner | None, failures: Failures = _ignore) -> None:
        self._clients = clients
        self._signer = signer
        self._failures = failures

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method: str = details.method
        if handler is None:
            return handler
        metadata = details.invocation_metadata
        if method.startswith(PEERCHUNKS):
            if self._signer is None:
                return handler
            return _peer_checked(handler, method, self._signer, metadata, self._failures)
        if method.startswith(OPEN_SERVICES):
            return handler
        name = method.removeprefix(FILESTORE)
        role = METHOD_ROLES.get(name) if method.startswith(FILESTORE) else None
        try:
            if role is None:
                self._failures(CLOSED_METHOD)
                raise Unauthenticated(f"method {method[:80]} is not open to clients")
            principal = await self._clients.principal(metadata)
        except Unauthenticated as exc:
            if role is not None:
                self._failures(BAD_TOKEN if bearer(metadata) else NO_TOKEN)
            log.debug("refused %s: %s", method, exc)
            return _refusal(handler, exc)
        except DfsError as exc:  # the metadata store could not check the token: not the caller's fault
            log.debug("refused %s: %s", method, exc)
            return _refusal(handler, exc)
        try:
            require(principal, role)
        except DfsError as exc:
            self._failures(ROLE_TOO_LOW)
            log.debug("refused %s: %s", method, exc)
            return _refusal(handler, exc)
        return handler


def _refusal(handler: grpc.RpcMethodHandler, exc: DfsError) -> grpc.RpcMethodHandler:
    """A handler of the same shape that fails at once with `exc`, never reading the request."""

    async def refuse(_request: Any, context: grpc.aio.ServicerContext) -> Any:
        await abort_with(context, exc)

    raw = {"request_deserializer": None, "response_serializer": handler.response_serializer}
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse, **raw)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse, **raw)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse, **raw)
    return grpc.unary_unary_rpc_method_handler(refuse, **raw)


def _peer_checked(
    handler: grpc.RpcMethodHandler, method: str, signer: PeerSigner, metadata: Metadata, failures: Failures
) -> grpc.RpcMethodHandler:
    """Wraps an internal handler so it runs only after the caller's peer credential checks out."""
    credential = metadata_value(metadata, PEER_AUTH_KEY)
    opts = {"request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer}

    async def check(request: Any, context: grpc.aio.ServicerContext) -> None:
        try:
            signer.verify(method, peer_payload(method, request), credential)
        except DfsError as exc:
            failures(BAD_PEER_CREDENTIAL)
            log.warning("refused %s from %s: %s", method, context.peer(), exc)
            await abort_with(context, exc)

    if handler.unary_unary is not None:
        inner_uu: Any = handler.unary_unary

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await check(request, context)
            return await inner_uu(request, context)

        return grpc.unary_unary_rpc_method_handler(unary_unary, **opts)
    if handler.unary_stream is not None:
        inner_us: Any = handler.unary_stream

        async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            await check(request, context)
            async for item in inner_us(request, context):
                yield item

        return grpc.unary_stream_rpc_method_handler(unary_stream, **opts)
    if handler.stream_unary is not None:
        inner_su: Any = handler.stream_unary

        async def stream_unary(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            await check(None, context)
            return await inner_su(requests, context)

        return grpc.stream_unary_rpc_method_handler(stream_unary, **opts)
    if handler.stream_stream is not None:
        inner_ss: Any = handler.stream_stream

        async def stream_stream(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            await check(None, context)
            async for item in inner_ss(requests, context):
                yield item

        return grpc.stream_stream_rpc_method_handler(stream_stream, **opts)
    return _refusal(handler, Unauthenticated(f"{method} does not accept peer calls"))
