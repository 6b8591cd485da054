"""The public FileStore gRPC service: validate what arrives, call a service, map errors once.

This is the only place where client requests become domain calls; handlers stay thin so that every
rule (durability, verification, versioning) lives in transfer/ and metadata/.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from peer.errors import ClientTooSlow, DfsError, InvalidRequest, TooLarge
from peer.metadata.store import AsyncMetadata, FileRefSpec, TokenRecord, VersionRecord, VersionSpec
from peer.rpc import validation as v
from peer.rpc import wire
from peer.rpc.auth import ClientAuth
from peer.rpc.status import abort_with, set_status
from peer.security.tokens import check_role, check_token_name, new_token
from peer.transfer.download import DownloadService, Piece
from peer.transfer.upload import UploadService, UploadSpec
from proto import dfs_pb2 as pb
from proto import dfs_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MemberSnapshot:
    node_id: str
    state: str
    grpc_addr: str
    gossip_addr: str
    incarnation: int
    heartbeat: int
    chunk_count: int
    chunk_bytes: int
    on_ring: bool
    last_seen_s: float
    stats: Mapping[str, Any] | None = None  # PeerStats fields, None when the member did not answer


@dataclass(frozen=True)
class ClusterSnapshot:
    node_id: str
    ring_digest: str
    replicas: int
    vnodes: int
    chunk_size: int
    members: tuple[MemberSnapshot, ...]
    metadata_backend: str
    metadata_healthy: bool
    metadata_error: str


def version_info(rec: VersionRecord, with_chunks: bool = False) -> pb.VersionInfo:
    info = pb.VersionInfo(
        file_id=rec.file_id,
        version_id=rec.version_id,
        version=rec.version,
        name=rec.name,
        size=rec.size,
        sha256=rec.sha256,
        chunk_count=len(rec.chunks),
        content_type=rec.content_type,
        metadata=dict(rec.metadata),
        created_at=rec.created_at,
        latest=rec.latest,
    )
    if with_chunks:
        info.chunks.extend(
            pb.ChunkPlacement(chunk_id=c.chunk_id, size=c.size, peers=list(c.peers)) for c in rec.chunks
        )
    return info


def chunk_marker(piece: Piece) -> pb.ChunkMarker:
    return pb.ChunkMarker(chunk_id=piece.chunk.chunk_id, size=piece.chunk.size, offset=piece.start)


def member_status(m: MemberSnapshot) -> pb.MemberStatus:
    fields = {k: v for k, v in m.__dict__.items() if k != "stats"}
    msg = pb.MemberStatus(**fields)
    if m.stats is not None:
        msg.stats.CopyFrom(pb.PeerStats(node_id=m.node_id, **m.stats))
    return msg


def file_ref(msg: pb.FileRef) -> FileRefSpec:
    which = msg.WhichOneof("ref")
    if which == "name":
        return FileRefSpec(name=v.check_name(msg.name))
    if which == "file_id":
        return FileRefSpec(file_id=v.check_id(msg.file_id, "file id"))
    raise InvalidRequest("a file name or file id is required")


def version_spec(msg: pb.VersionSelector) -> VersionSpec:
    which = msg.WhichOneof("selector")
    if which == "number":
        return VersionSpec(number=v.check_version_number(msg.number))
    if which == "version_id":
        return VersionSpec(version_id=v.check_id(msg.version_id, "version id"))
    return VersionSpec()


@dataclass(frozen=True)
class ClientLimits:
    """What one client call may cost this peer (DFS_MAX_FILE_SIZE, DFS_MAX_METADATA_BYTES,
    DFS_CLIENT_IDLE_TIMEOUT)."""

    max_file_size: int = 1024**4
    max_metadata_bytes: int = v.MAX_META_BYTES
    idle_timeout_s: float = 60.0
    #: The most data one Get reply carries, whatever the client asks: a reply is one message, held
    #: whole in memory and bounded by the message size limit.
    max_get_bytes: int = 4 * 1024 * 1024


UploadItem = pb.UploadRequest | memoryview | wire.Malformed
"""What the Upload handler's request deserializer yields: the header, a view of a data piece, or junk."""


async def _next_message(requests: AsyncIterator[UploadItem], idle_s: float) -> UploadItem | None:
    try:
        async with asyncio.timeout(idle_s):
            return await anext(requests, None)
    except TimeoutError:
        raise ClientTooSlow(f"no upload data for {idle_s:g} s; the upload was cancelled") from None
    except DecodeError as exc:  # grpc deserializes each message as it is read
        raise InvalidRequest(f"malformed upload message: {exc}") from None


class UploadStream:
    """The data of one upload after its header, with the rules on how the stream may end.

    The stream must prove it is complete: by a trailer (size and SHA-256 of what the client sent) or
    by the size its header declared. A stream that simply stops is indistinguishable from a client
    that failed mid-way, so it is refused rather than committed as a shorter file.
    """

    def __init__(self, requests: AsyncIterator[UploadItem], header: pb.UploadHeader,
                 limits: ClientLimits) -> None:
        self._requests = requests
        self._limits = limits
        self.declared = header.size if header.HasField("size") else None
        if self.declared is not None and not 0 <= self.declared <= limits.max_file_size:
            raise TooLarge(f"declared size {self.declared} is outside 0..{limits.max_file_size} (DFS_MAX_FILE_SIZE)")
        self.trailer: pb.UploadTrailer | None = None
        self.received = 0

    async def pieces(self) -> AsyncIterator[memoryview]:
        """The data, refusing a stream that stalls, grows past a limit, or goes on after its trailer,
        before the excess reaches the chunker."""
        limit = self._limits.max_file_size if self.declared is None else self.declared
        while (item := await _next_message(self._requests, self._limits.idle_timeout_s)) is not None:
            if self.trailer is not None:
                raise InvalidRequest("nothing may follow the upload trailer")
            if not isinstance(item, memoryview):
                if isinstance(item, pb.UploadRequest) and item.WhichOneof("msg") == "trailer":
                    self.trailer = item.trailer
                    continue
                raise _not_data(item)
            self.received += len(item)
            if self.received > limit:
                if self.declared is not None:
                    raise InvalidRequest(f"the upload brought more than the {self.declared} bytes its header declared")
                raise TooLarge(f"upload larger than the limit of {limit} bytes (DFS_MAX_FILE_SIZE)")
            if item:
                yield item

    def check_complete(self, size: int, sha256: str) -> None:
        """Called with what was received, after the chunks are durable and before the commit."""
        if self.declared is not None and size != self.declared:
            raise InvalidRequest(f"truncated upload: {size} of the {self.declared} declared bytes arrived; "
                                 "nothing was stored")
        if self.trailer is not None:
            if self.trailer.size != size:
                raise InvalidRequest(f"truncated upload: the client sent {self.trailer.size} bytes, "
                                     f"{size} arrived; nothing was stored")
            if self.trailer.sha256 and self.trailer.sha256.lower() != sha256:
                raise InvalidRequest("the data that arrived does not match the client's sha256; nothing was stored")
        elif self.declared is None:
            raise InvalidRequest("the upload ended without a trailer (or a declared size), so it may have been "
                                 "cut short; nothing was stored")


def _retrieve(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()


async def _put_messages(request: pb.PutRequest) -> AsyncIterator[UploadItem]:
    """A Put's data and trailer as the Upload stream after its header would bring them."""
    yield memoryview(request.data)
    yield pb.UploadRequest(trailer=request.trailer)


def _upload_reply(record: VersionRecord) -> pb.UploadReply:
    peers = sorted({p for c in record.chunks for p in c.peers})
    return pb.UploadReply(version=version_info(record, with_chunks=True), peers=peers)


def token_info(rec: TokenRecord) -> pb.TokenInfo:
    return pb.TokenInfo(token_id=rec.token_id, role=rec.role, name=rec.name, created_at=rec.created_at,
                        revoked_at=rec.revoked_at or 0.0)


def _not_data(item: UploadItem) -> InvalidRequest:
    if isinstance(item, wire.Malformed):
        return InvalidRequest("an upload message could not be parsed as an UploadRequest")
    return InvalidRequest("only data messages and one trailer may follow the upload header")


def add_to_server(servicer: FileStoreServicer, server: grpc.aio.Server) -> None:
    """Registers the FileStore service: the generated handlers, except that Upload requests and
    Download replies go through `wire`, so their data is not copied through protobuf messages."""
    recorder = wire.HandlerRecorder()
    pb_grpc.add_FileStoreServicer_to_server(servicer, recorder)
    handlers = dict(recorder.handlers)
    handlers["Upload"] = grpc.stream_unary_rpc_method_handler(
        servicer.Upload,
        request_deserializer=wire.decode_upload_request,
        response_serializer=pb.UploadReply.SerializeToString,
    )
    handlers["Download"] = grpc.unary_stream_rpc_method_handler(
        servicer.Download,
        request_deserializer=pb.DownloadRequest.FromString,
        response_serializer=wire.encode_download_reply,
    )
    recorder.register(server, handlers)


class FileStoreServicer(pb_grpc.FileStoreServicer):
    def __init__(
        self,
        uploads: UploadService,
        downloads: DownloadService,
        metadata: AsyncMetadata,
        snapshot: Callable[[], Awaitable[ClusterSnapshot]],
        require_metadata: Callable[[], None] = lambda: None,
        *,
        auth: ClientAuth | None = None,
        limits: ClientLimits | None = None,
    ) -> None:
        """`require_metadata` raises MetadataUnavailable while the store is known to be down, so calls
        fail at once instead of each waiting out the backend's own timeout (and an upload does not
        write chunks it could never commit)."""
        self._uploads = uploads
        self._downloads = downloads
        self._metadata = metadata
        self._snapshot = snapshot
        self._require_metadata = require_metadata
        self._auth = auth or ClientAuth(None)
        self._limits = limits or ClientLimits()

    async def Upload(  # noqa: N802 - gRPC method names
        self, request_iterator: AsyncIterator[UploadItem], context: grpc.aio.ServicerContext
    ) -> pb.UploadReply:
        try:
            self._require_metadata()
            requests = aiter(request_iterator)
            first = await _next_message(requests, self._limits.idle_timeout_s)
            if isinstance(first, wire.Malformed):
                raise _not_data(first)
            if not isinstance(first, pb.UploadRequest) or first.WhichOneof("msg") != "header":
                raise InvalidRequest("the first upload message must be a header")
            record = await self._store(first.header, requests)
        except DfsError as exc:
            await abort_with(context, exc)
        return _upload_reply(record)

    async def Put(self, request: pb.PutRequest, context: grpc.aio.ServicerContext) -> pb.UploadReply:  # noqa: N802
        """An Upload in one message: the same rules, applied to the data and trailer it carries."""
        try:
            self._require_metadata()
            if not request.HasField("trailer"):
                raise InvalidRequest("a Put needs a trailer (the size and SHA-256 of its data); nothing was stored")
            record = await self._store(request.header, _put_messages(request))
        except DfsError as exc:
            await abort_with(context, exc)
        return _upload_reply(record)

    async def _store(self, header: pb.UploadHeader, requests: AsyncIterator[UploadItem]) -> VersionRecord:
        spec = UploadSpec(
            name=v.check_name(header.name),
            content_type=v.check_content_type(header.content_type),
            metadata=v.check_metadata(header.metadata, self._limits.max_metadata_bytes),
        )
        stream = UploadStream(requests, header, self._limits)
        return await self._uploads.upload(spec, stream.pieces(), stream.check_complete)

    async def Download(  # noqa: N802
        self, request: pb.DownloadRequest, context: grpc.aio.ServicerContext
    ) -> None:
        """Writes with a deadline per message: a client that stops reading holds the handler (and
        the chunks fetched ahead for it) only until the idle timeout. Data pieces are written as
        their bytes; `add_to_server` registers the serializer that frames them. When asked, each
        chunk's data follows a small marker (its id, size and offset), which lets the client verify
        chunk by chunk while the header stays the same size for any file."""
        try:
            self._require_metadata()
            ref, ver = file_ref(request.file), version_spec(request.version)
            record, rng, data = await self._downloads.open(ref, ver, request.offset, request.length)
            markers = request.chunk_markers
            header = pb.DownloadHeader(
                version=version_info(record), offset=rng.offset, length=rng.length, chunk_markers=markers
            )
            await self._write(context, pb.DownloadReply(header=header))
            async for piece in data:
                if markers:
                    await self._write(context, pb.DownloadReply(marker=chunk_marker(piece)))
                await self._write(context, piece.data)
        except ClientTooSlow as exc:
            log.warning("%s", exc)
            set_status(context, exc)  # an abort would wait for the client to read; returning does not
        except DfsError as exc:
            await abort_with(context, exc)

    async def Get(self, request: pb.GetRequest, context: grpc.aio.ServicerContext) -> pb.GetReply:  # noqa: N802
        """Download in one reply for a small range: the same version lookup, holders and per-chunk
        verification, at the cost of one unary call; a larger range gets the header alone."""
        try:
            self._require_metadata()
            wanted = request.request
            ref, ver = file_ref(wanted.file), version_spec(wanted.version)
            record, rng, data = await self._downloads.open(ref, ver, wanted.offset, wanted.length)
            header = pb.DownloadHeader(
                version=version_info(record), offset=rng.offset, length=rng.length,
                chunk_markers=wanted.chunk_markers,
            )
            if rng.length > min(max(request.max_bytes, 0), self._limits.max_get_bytes):
                return pb.GetReply(header=header)
            pieces = [piece async for piece in data]
        except DfsError as exc:
            await abort_with(context, exc)
        markers = [chunk_marker(piece) for piece in pieces] if wanted.chunk_markers else []
        return pb.GetReply(header=header, data=b"".join(piece.data for piece in pieces), markers=markers)

    async def _write(self, context: grpc.aio.ServicerContext, reply: pb.DownloadReply | bytes | memoryview) -> None:
        """A write that flow control holds cannot be cancelled in gRPC (a cancelled await of it
        goes on waiting for the client), so it runs as its own task and is left behind, to end with
        the call, when the client reads nothing for the idle timeout."""
        idle_s = self._limits.idle_timeout_s
        write = asyncio.ensure_future(context.write(reply))
        write.add_done_callback(_retrieve)  # a write left behind fails when the call ends: not an error to log
        done, _ = await asyncio.wait([write], timeout=idle_s)
        if not done:
            raise ClientTooSlow(f"the client read nothing for {idle_s:g} s; the download was cancelled")
        write.result()

    async def Stat(self, request: pb.StatRequest, context: grpc.aio.ServicerContext) -> pb.VersionInfo:  # noqa: N802
        try:
            self._require_metadata()
            rec = await self._metadata.get_version(file_ref(request.file), version_spec(request.version))
        except DfsError as exc:
            await abort_with(context, exc)
        return version_info(rec, with_chunks=True)

    async def List(self, request: pb.ListRequest, context: grpc.aio.ServicerContext) -> pb.ListReply:  # noqa: N802
        try:
            self._require_metadata()
            prefix = v.check_name(request.prefix) if request.prefix else ""
            delimiter = v.check_delimiter(request.delimiter)
            page = await self._metadata.list_files(
                prefix, v.check_page_size(request.page_size), request.page_token, delimiter
            )
        except DfsError as exc:
            await abort_with(context, exc)
        return pb.ListReply(
            files=[version_info(r) for r in page.files], next_page_token=page.next_token,
            common_prefixes=page.prefixes,
        )

    async def ListVersions(  # noqa: N802
        self, request: pb.ListVersionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListVersionsReply:
        try:
            self._require_metadata()
            records = await self._metadata.list_versions(file_ref(request.file))
        except DfsError as exc:
            await abort_with(context, exc)
        return pb.ListVersionsReply(versions=[version_info(r) for r in records])

    async def Delete(self, request: pb.DeleteRequest, context: grpc.aio.ServicerContext) -> pb.DeleteReply:  # noqa: N802
        try:
            self._require_metadata()
            ref = file_ref(request.file)
            if request.HasField("version") and request.version.WhichOneof("selector"):
                deleted = [await self._metadata.delete_version(ref, version_spec(request.version))]
            else:
                deleted = await self._metadata.delete_file(ref)
        except DfsError as exc:
            await abort_with(context, exc)
        for rec in deleted:
            log.info("deleted %s v%d", rec.name, rec.version)
        return pb.DeleteReply(deleted=[version_info(r) for r in deleted])

    async def ClusterStatus(  # noqa: N802
        self, request: pb.ClusterStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.ClusterStatusReply:
        snap = await self._snapshot()
        return pb.ClusterStatusReply(
            node_id=snap.node_id,
            ring_digest=snap.ring_digest,
            replicas=snap.replicas,
            vnodes=snap.vnodes,
            chunk_size=snap.chunk_size,
            members=[member_status(m) for m in snap.members],
            metadata_backend=snap.metadata_backend,
            metadata_healthy=snap.metadata_healthy,
            metadata_error=snap.metadata_error,
        )

    async def CreateToken(  # noqa: N802
        self, request: pb.CreateTokenRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateTokenReply:
        try:
            self._require_metadata()
            token, record = new_token(check_role(request.role), check_token_name(request.name), time.time())
            await self._metadata.add_token(record)
        except DfsError as exc:
            await abort_with(context, exc)
        log.info("created %s token %s (%s)", record.role, record.token_id, record.name or "unnamed")
        return pb.CreateTokenReply(token=token, info=token_info(record))

    async def ListTokens(  # noqa: N802
        self, request: pb.ListTokensRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTokensReply:
        try:
            self._require_metadata()
            records = await self._metadata.list_tokens()
        except DfsError as exc:
            await abort_with(context, exc)
        return pb.ListTokensReply(tokens=[token_info(r) for r in records])

    async def RevokeToken(  # noqa: N802
        self, request: pb.RevokeTokenRequest, context: grpc.aio.ServicerContext
    ) -> pb.TokenInfo:
        try:
            self._require_metadata()
            record = await self._metadata.revoke_token(v.check_token_id(request.token_id), time.time())
        except DfsError as exc:
            await abort_with(context, exc)
        if self._auth.verifier is not None:
            self._auth.verifier.forget(record.token_id)
        log.info("revoked token %s", record.token_id)
        return token_info(record)

    async def WhoAmI(self, request: pb.WhoAmIRequest, context: grpc.aio.ServicerContext) -> pb.TokenInfo:  # noqa: N802
        try:
            who = await self._auth.principal(context.invocation_metadata())
            record = await self._metadata.get_token(who.token_id) if who.token_id else None
        except DfsError as exc:
            await abort_with(context, exc)
        if record is not None:
            return token_info(record)
        return pb.TokenInfo(token_id=who.token_id, role=who.role, name=who.name)
