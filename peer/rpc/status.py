"""The one table from domain errors to gRPC status codes, applied at the edge and nowhere else.

Servicer methods raise DfsError and never map it themselves: `maps_errors` (or, for a handler that
writes its own reply stream, `maps_stream_errors`) wraps each one and ends the call with the status
of the error. Every error the peer returns on purpose carries trailing metadata `dfs-error-kind`, so
a client can tell "the peer answered UNAVAILABLE" (not enough replicas, metadata store down) from
"the peer could not be reached at all", which gRPC reports with the same code.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any, NoReturn, TypeVar, cast

import grpc

from peer import errors

log = logging.getLogger(__name__)

ERROR_KIND_KEY = "dfs-error-kind"

_CODES: list[tuple[type[errors.DfsError], grpc.StatusCode]] = [
    (errors.InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.IntegrityError, grpc.StatusCode.DATA_LOSS),
    (errors.InsufficientReplicas, grpc.StatusCode.UNAVAILABLE),
    (errors.PeerUnavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.ChunkUnreachable, grpc.StatusCode.UNAVAILABLE),
    (errors.MetadataUnavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.VersionConflict, grpc.StatusCode.ABORTED),
    (errors.PreconditionFailed, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.StorageFull, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.ClientTooSlow, grpc.StatusCode.DEADLINE_EXCEEDED),
]


def status_of(exc: errors.DfsError) -> grpc.StatusCode:
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INTERNAL


async def abort_with(context: grpc.aio.ServicerContext, exc: errors.DfsError) -> NoReturn:
    code = status_of(exc)
    if code == grpc.StatusCode.INTERNAL:
        log.error("internal error: %s", exc)
    await context.abort(code, str(exc), trailing_metadata=_trailing(context, exc))
    raise AssertionError("unreachable: abort raises")


def _trailing(context: grpc.aio.ServicerContext, exc: errors.DfsError) -> tuple[tuple[str, str | bytes], ...]:
    """The error kind added to what the call already set (its request id): an abort replaces it all."""
    kept = tuple((k, v) for k, v in context.trailing_metadata() or () if k != ERROR_KIND_KEY)
    return (*kept, (ERROR_KIND_KEY, exc.kind))


def set_status(context: grpc.aio.ServicerContext, exc: errors.DfsError) -> None:
    """The status abort_with would send, set for when the handler returns: for a stream whose
    client stopped reading, where an abort would wait behind the unsent data for as long as the
    client likes (gRPC sends the status once the stream drains or the call ends)."""
    context.set_code(status_of(exc))
    context.set_details(str(exc))
    context.set_trailing_metadata(_trailing(context, exc))


Handler = TypeVar("Handler", bound=Callable[..., Any])


def maps_errors(handler: Handler) -> Handler:
    """Wraps a servicer method, a coroutine (unary or stream-unary) or an async generator of replies
    (unary-stream, stream-stream), so that a DfsError it raises aborts the call with its status."""
    if inspect.isasyncgenfunction(handler):

        @functools.wraps(handler)
        async def replies(self: Any, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                # aclosing: a call that ends early closes the handler's generator now (its finally
                # blocks run), not whenever the generator is collected.
                async with aclosing(handler(self, request, context)) as stream:
                    async for reply in stream:
                        yield reply
            except errors.DfsError as exc:
                await abort_with(context, exc)

        return cast(Handler, replies)

    @functools.wraps(handler)
    async def call(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await handler(self, request, context)
        except errors.DfsError as exc:
            await abort_with(context, exc)

    return cast(Handler, call)


def maps_stream_errors(handler: Handler) -> Handler:
    """`maps_errors` for a handler that writes its reply stream itself (`context.write`): there a
    ClientTooSlow (the client stopped reading) sets the status and returns, since an abort would wait
    behind the unsent data for as long as the client likes."""

    @functools.wraps(handler)
    async def call(self: Any, request: Any, context: grpc.aio.ServicerContext) -> None:
        try:
            await handler(self, request, context)
        except errors.ClientTooSlow as exc:
            log.warning("%s", exc)
            set_status(context, exc)
        except errors.DfsError as exc:
            await abort_with(context, exc)

    return cast(Handler, call)
