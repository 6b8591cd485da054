"""The public FileStore gRPC service: validate what arrives, call a service, map errors once.

This is the only place where client requests become domain calls; handlers stay thin so that every
rule (durability, verification, versioning) lives in transfer/ and metadata/.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc

from peer.errors import DfsError, InvalidRequest
from peer.metadata.store import AsyncMetadata, FileRefSpec, VersionRecord, VersionSpec
from peer.rpc import validation as v
from peer.rpc import wire
from peer.rpc.status import abort_with
from peer.transfer.download import DownloadService
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


UploadItem = pb.UploadRequest | memoryview | wire.Malformed
"""What the Upload handler's request deserializer yields: the header, a view of a data piece, or junk."""


async def _data_pieces(requests: AsyncIterator[UploadItem]) -> AsyncIterator[memoryview]:
    async for item in requests:
        if not isinstance(item, memoryview):
            raise _not_data(item)
        if item:
            yield item


def _not_data(item: UploadItem) -> InvalidRequest:
    if isinstance(item, wire.Malformed):
        return InvalidRequest("an upload message could not be parsed as an UploadRequest")
    return InvalidRequest("only data messages may follow the upload header")


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
    ) -> None:
        """`require_metadata` raises MetadataUnavailable while the store is known to be down, so calls
        fail at once instead of each waiting out the backend's own timeout (and an upload does not
        write chunks it could never commit)."""
        self._uploads = uploads
        self._downloads = downloads
        self._metadata = metadata
        self._snapshot = snapshot
        self._require_metadata = require_metadata

    async def Upload(  # noqa: N802 - gRPC method names
        self, request_iterator: AsyncIterator[UploadItem], context: grpc.aio.ServicerContext
    ) -> pb.UploadReply:
        try:
            self._require_metadata()
            requests = aiter(request_iterator)
            first = await anext(requests, None)
            if isinstance(first, wire.Malformed):
                raise _not_data(first)
            if not isinstance(first, pb.UploadRequest) or first.WhichOneof("msg") != "header":
                raise InvalidRequest("the first upload message must be a header")
            spec = UploadSpec(
                name=v.check_name(first.header.name),
                content_type=v.check_content_type(first.header.content_type),
                metadata=v.check_metadata(first.header.metadata),
            )
            record = await self._uploads.upload(spec, _data_pieces(requests))
        except DfsError as exc:
            await abort_with(context, exc)
        peers = sorted({p for c in record.chunks for p in c.peers})
        return pb.UploadReply(version=version_info(record, with_chunks=True), peers=peers)

    async def Download(  # noqa: N802
        self, request: pb.DownloadRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.DownloadReply | bytes | memoryview]:
        """Data pieces are yielded as their bytes; `add_to_server` registers the serializer that frames them."""
        try:
            self._require_metadata()
            ref, ver = file_ref(request.file), version_spec(request.version)
            record, rng, data = await self._downloads.open(ref, ver, request.offset, request.length)
            header = pb.DownloadHeader(version=version_info(record), offset=rng.offset, length=rng.length)
            yield pb.DownloadReply(header=header)
            async for piece in data:
                yield piece
        except DfsError as exc:
            await abort_with(context, exc)

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
            page = await self._metadata.list_files(prefix, v.check_page_size(request.page_size), request.page_token)
        except DfsError as exc:
            await abort_with(context, exc)
        return pb.ListReply(files=[version_info(r) for r in page.files], next_page_token=page.next_token)

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
