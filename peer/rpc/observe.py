"""Every client call observed once: a request id, its metrics, and one access-log line.

`ObserveInterceptor` runs outside every other interceptor of the client server, so a call the auth
check refuses is observed too. For each FileStore call it draws a request id, returns it in the
trailing metadata (`x-request-id`) and puts it in `peer.logs.REQUEST_ID` for every log line written
while the call is handled; when the call ends it counts it (`dfs_requests_total` by method and status
code, its duration, bytes in and out) unless the peer runs with `--no-metrics` (no registry given),
and writes the access-log line unless it runs with `--no-access-log`.

Bytes are the sizes of request and reply messages, except for the two data streams: the Upload and
Download handlers add the data bytes they pass to `current_call()` themselves, where the bytes are
already in hand (a size read per message, no lock). Health and reflection calls are not observed:
load balancers poll them every few seconds, and they say nothing about files. With neither metrics
nor the access log (`--no-metrics --no-access-log`) a call gets its request id and nothing else:
no message sizes are read, nothing is counted or logged.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import grpc

from peer.logs import ACCESS_LOGGER, REQUEST_ID
from peer.metrics import PeerMetrics
from peer.rpc.auth import FILESTORE
from proto import dfs_pb2 as pb

__all__ = ["API", "REQUEST_ID_KEY", "Call", "ObserveInterceptor", "current_call"]

access_log = logging.getLogger(ACCESS_LOGGER)

API = "grpc"
REQUEST_ID_KEY = "x-request-id"
MAX_LOGGED_NAME = 256


@dataclass
class Call:
    """What the edge learns of one client call while it runs; handlers add what only they see."""

    request_id: str
    method: str
    name: str = ""
    received: int = 0
    sent: int = 0


_CALL: ContextVar[Call | None] = ContextVar("dfs_call", default=None)


def current_call() -> Call:
    """The call being handled; outside an observed call, a scratch record nobody reads."""
    return _CALL.get() or Call("", "")


def new_request_id() -> str:
    return secrets.token_hex(8)


class ObserveInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, metrics: PeerMetrics | None, access_log_on: bool = True) -> None:
        self._metrics = metrics
        self._access_log = access_log_on
        self._measured = metrics is not None or access_log_on

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method: str = details.method
        if not method.startswith(FILESTORE):
            return await continuation(details)
        call = Call(new_request_id(), method.removeprefix(FILESTORE))
        started = time.perf_counter()
        # Set before the inner interceptors run: a refusal they log carries the request id too.
        REQUEST_ID.set(call.request_id)
        handler = await continuation(details)
        if handler is None:  # not a method of the service: grpc answers UNIMPLEMENTED
            return handler
        if not self._measured:
            return _observed(handler, call, _unmeasured, _no_size, _no_name)
        return _observed(handler, call, lambda ctx, exc: self._finish(call, started, ctx, exc), _size, _name_of)

    def _finish(self, call: Call, started: float, context: grpc.aio.ServicerContext, exc: BaseException | None) -> None:
        seconds = time.perf_counter() - started
        code = _code(context, exc)
        if self._metrics is not None:
            self._metrics.count_request(API, call.method, code, seconds, call.received, call.sent)
        if self._access_log:
            name = call.name[:MAX_LOGGED_NAME]
            access_log.info(
                "%s %s name=%s %s received=%d sent=%d %.1f ms",
                API, call.method, json.dumps(name, ensure_ascii=False), code, call.received, call.sent,
                seconds * 1000,
                extra={"fields": {
                    "api": API, "method": call.method, "name": name, "code": code, "received_bytes": call.received,
                    "sent_bytes": call.sent, "duration_s": round(seconds, 6), "client": context.peer(),
                }},
            )  # fmt: skip


Finish = Callable[[grpc.aio.ServicerContext, BaseException | None], None]
Size = Callable[[Any], int]
NameOf = Callable[[Any], str]


def _unmeasured(_context: grpc.aio.ServicerContext, _exc: BaseException | None) -> None:
    pass


def _begin(call: Call, context: grpc.aio.ServicerContext) -> None:
    REQUEST_ID.set(call.request_id)
    _CALL.set(call)
    context.set_trailing_metadata(((REQUEST_ID_KEY, call.request_id),))


def _observed(handler: grpc.RpcMethodHandler, call: Call, finish: Finish, size: Size,
              name_of: NameOf) -> grpc.RpcMethodHandler:
    """A handler of the same shape whose behaviour is the original's, observed; `size` and `name_of`
    read what the access log and the metrics need of each message (no-ops when neither is on)."""
    opts = {"request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer}

    if handler.unary_unary is not None:
        inner_uu: Any = handler.unary_unary

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            _begin(call, context)
            call.received += size(request)
            call.name = name_of(request)
            error: BaseException | None = None
            try:
                reply = await inner_uu(request, context)
                call.sent += size(reply)
                return reply
            except BaseException as exc:
                error = exc
                raise
            finally:
                finish(context, error)

        return grpc.unary_unary_rpc_method_handler(unary_unary, **opts)
    if handler.stream_unary is not None:
        inner_su: Any = handler.stream_unary

        async def stream_unary(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            _begin(call, context)
            error: BaseException | None = None
            try:
                reply = await inner_su(requests, context)
                call.sent += size(reply)
                return reply
            except BaseException as exc:
                error = exc
                raise
            finally:
                finish(context, error)

        return grpc.stream_unary_rpc_method_handler(stream_unary, **opts)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _streaming(handler.unary_stream, call, finish, True, size, name_of), **opts)
    if handler.stream_stream is not None:
        return grpc.stream_stream_rpc_method_handler(
            _streaming(handler.stream_stream, call, finish, False, size, name_of), **opts)
    return handler


def _streaming(inner: Any, call: Call, finish: Finish, unary_request: bool, size: Size, name_of: NameOf) -> Any:
    """The observed form of a reply-streaming behaviour: an async generator stays one (its replies are
    counted as they pass), a coroutine that writes its replies itself stays a coroutine."""
    if inspect.isasyncgenfunction(inner):

        async def replies(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            _begin(call, context)
            if unary_request:
                call.received += size(request)
                call.name = name_of(request)
            error: BaseException | None = None
            try:
                async for reply in inner(request, context):
                    call.sent += size(reply)
                    yield reply
            except BaseException as exc:
                error = exc
                raise
            finally:
                finish(context, error)

        return replies

    async def writes(request: Any, context: grpc.aio.ServicerContext) -> None:
        _begin(call, context)
        if unary_request:
            call.received += size(request)
            call.name = name_of(request)
        error: BaseException | None = None
        try:
            await inner(request, context)
        except BaseException as exc:
            error = exc
            raise
        finally:
            finish(context, error)

    return writes


def _code(context: grpc.aio.ServicerContext, exc: BaseException | None) -> str:
    """The status the call ends with: what an abort or the handler set, else what the outcome implies."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    if exc is None:
        return "OK"
    return "CANCELLED" if isinstance(exc, asyncio.CancelledError) else "UNKNOWN"


def _no_size(_message: Any) -> int:
    return 0


def _no_name(_request: Any) -> str:
    return ""


def _size(message: Any) -> int:
    if isinstance(message, bytes | bytearray | memoryview):
        return len(message)
    size = getattr(message, "ByteSize", None)
    return int(size()) if size is not None else 0


def _name_of(request: Any) -> str:
    """The file a request names (its name, else its id), or the prefix of a listing; "" for others."""
    if isinstance(request, pb.GetRequest):
        request = request.request
    ref = getattr(request, "file", None)
    if isinstance(ref, pb.FileRef):
        return ref.name or ref.file_id
    header = getattr(request, "header", None)
    if isinstance(header, pb.UploadHeader):
        return header.name
    if isinstance(request, pb.ListRequest):
        return request.prefix
    return ""
