"""The public FileStore gRPC service: protobuf in, FileService calls, protobuf out.

Every rule on files (names, limits, an upload's proof of completeness, metadata-store health) lives
in peer.files, shared with every other edge. What stays here is gRPC's own: the order of messages in
an Upload stream, idle timeouts on reading and writing a stream, and the conversion of replies.
Errors are mapped to status codes once, by the decorators of peer.rpc.status.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
from google.protobuf.message import DecodeError

from peer.errors import ClientTooSlow, ConfigError, InvalidRequest
from peer.files import ClientLimits, ClusterSnapshot, FileService, MemberSnapshot, Trailer, UploadProof
from peer.files.buckets import BucketService
from peer.metadata.store import BucketRecord, TokenRecord, VersionRecord, VersionSpec
from peer.rpc import wire
from peer.rpc.auth import ClientAuth
from peer.rpc.observe import Call, current_call
from peer.rpc.status import maps_errors, maps_stream_errors
from peer.rpc.validation import file_ref, version_spec
from peer.security.s3keys import S3KeyInfo
from peer.transfer.download import Piece
from proto import dfs_pb2 as pb
from proto import dfs_pb2_grpc as pb_grpc

__all__ = ["ClientLimits", "FileStoreServicer", "UploadItem", "add_to_server"]

log = logging.getLogger(__name__)


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
        policy=rec.policy,
        delete_marker=rec.delete_marker,
    )
    if with_chunks:
        info.chunks.extend(
            pb.ChunkPlacement(chunk_id=c.chunk_id, size=c.size, peers=list(c.peers), fragments=list(c.fragments))
            for c in rec.chunks
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


def token_info(rec: TokenRecord) -> pb.TokenInfo:
    return pb.TokenInfo(token_id=rec.token_id, role=rec.role, name=rec.name, created_at=rec.created_at,
                        revoked_at=rec.revoked_at or 0.0)


def s3_key_info(info: S3KeyInfo) -> pb.S3KeyInfo:
    return pb.S3KeyInfo(access_key_id=info.access_key_id, role=info.role, name=info.name,
                        created_at=info.created_at, revoked_at=info.revoked_at or 0.0)


def bucket_info(rec: BucketRecord) -> pb.BucketInfo:
    return pb.BucketInfo(name=rec.name, created_at=rec.created_at, versioning=rec.versioning, policy=rec.policy)


def _upload_reply(record: VersionRecord) -> pb.UploadReply:
    peers = sorted({p for c in record.chunks for p in c.peers})
    return pb.UploadReply(version=version_info(record, with_chunks=True), peers=peers)


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


async def _upload_data(
    requests: AsyncIterator[UploadItem], proof: UploadProof, idle_s: float, call: Call
) -> AsyncIterator[memoryview]:
    """The data messages after an Upload's header, counted into `call`. The trailer goes into
    `proof`; a stream that stalls, or sends anything but data and then one trailer, is refused."""
    while (item := await _next_message(requests, idle_s)) is not None:
        if proof.trailer is not None:
            raise InvalidRequest("nothing may follow the upload trailer")
        if isinstance(item, memoryview):
            call.received += len(item)
            yield item
        elif isinstance(item, pb.UploadRequest) and item.WhichOneof("msg") == "trailer":
            proof.trailer = Trailer(item.trailer.size, item.trailer.sha256)
        else:
            raise _not_data(item)


async def _one_piece(data: bytes) -> AsyncIterator[memoryview]:
    yield memoryview(data)


def _declared(header: pb.UploadHeader) -> int | None:
    return header.size if header.HasField("size") else None


def _policy(header: pb.UploadHeader) -> str | None:
    """The header's policy; None (unset or empty) leaves the choice to the name's bucket, else the cluster."""
    return header.policy or None


def _not_data(item: UploadItem) -> InvalidRequest:
    if isinstance(item, wire.Malformed):
        return InvalidRequest("an upload message could not be parsed as an UploadRequest")
    return InvalidRequest("only data messages and one trailer may follow the upload header")


def _retrieve(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()


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
        files: FileService,
        snapshot: Callable[[], Awaitable[ClusterSnapshot]],
        *,
        auth: ClientAuth | None = None,
        buckets: BucketService | None = None,
    ) -> None:
        self._files = files
        self._snapshot = snapshot
        self._auth = auth or ClientAuth(None)
        self._buckets = buckets

    @maps_errors
    async def Upload(  # noqa: N802 - gRPC method names
        self, request_iterator: AsyncIterator[UploadItem], context: grpc.aio.ServicerContext
    ) -> pb.UploadReply:
        self._files.require_metadata()  # before reading the stream: a doomed upload is refused at once
        requests = aiter(request_iterator)
        idle_s = self._files.limits.idle_timeout_s
        first = await _next_message(requests, idle_s)
        if isinstance(first, wire.Malformed):
            raise _not_data(first)
        if not isinstance(first, pb.UploadRequest) or first.WhichOneof("msg") != "header":
            raise InvalidRequest("the first upload message must be a header")
        header = first.header
        call = current_call()
        call.name = header.name
        proof = UploadProof(declared=_declared(header))
        record = await self._files.put(header.name, _upload_data(requests, proof, idle_s, call), proof,
                                       content_type=header.content_type, user_metadata=header.metadata,
                                       policy=_policy(header))
        return _upload_reply(record)

    @maps_errors
    async def Put(self, request: pb.PutRequest, context: grpc.aio.ServicerContext) -> pb.UploadReply:  # noqa: N802
        """An Upload in one message: the same rules, applied to the data and trailer it carries."""
        if not request.HasField("trailer"):
            raise InvalidRequest("a Put needs a trailer (the size and SHA-256 of its data); nothing was stored")
        header = request.header
        proof = UploadProof(_declared(header), Trailer(request.trailer.size, request.trailer.sha256))
        record = await self._files.put(header.name, _one_piece(request.data), proof,
                                       content_type=header.content_type, user_metadata=header.metadata,
                                       policy=_policy(header))
        return _upload_reply(record)

    @maps_stream_errors
    async def Download(  # noqa: N802
        self, request: pb.DownloadRequest, context: grpc.aio.ServicerContext
    ) -> None:
        """Writes with a deadline per message: a client that stops reading holds the handler (and
        the chunks fetched ahead for it) only until the idle timeout. Data pieces are written as
        their bytes; `add_to_server` registers the serializer that frames them. When asked, each
        chunk's data follows a small marker (its id, size and offset), which lets the client verify
        chunk by chunk while the header stays the same size for any file."""
        record, rng, data = await self._files.open(
            file_ref(request.file), version_spec(request.version), request.offset, request.length
        )
        markers = request.chunk_markers
        header = pb.DownloadHeader(
            version=version_info(record), offset=rng.offset, length=rng.length, chunk_markers=markers
        )
        await self._write(context, pb.DownloadReply(header=header))
        call = current_call()
        async for piece in data:
            if markers:
                await self._write(context, pb.DownloadReply(marker=chunk_marker(piece)))
            await self._write(context, piece.data)
            call.sent += len(piece.data)

    @maps_errors
    async def Get(self, request: pb.GetRequest, context: grpc.aio.ServicerContext) -> pb.GetReply:  # noqa: N802
        """Download in one reply for a small range: the same version lookup, holders and per-chunk
        verification, at the cost of one unary call; a larger range gets the header alone."""
        wanted = request.request
        read = await self._files.read_small(
            file_ref(wanted.file), version_spec(wanted.version), wanted.offset, wanted.length, request.max_bytes
        )
        header = pb.DownloadHeader(
            version=version_info(read.record), offset=read.range.offset, length=read.range.length,
            chunk_markers=wanted.chunk_markers,
        )
        if read.pieces is None:
            return pb.GetReply(header=header)
        markers = [chunk_marker(piece) for piece in read.pieces] if wanted.chunk_markers else []
        return pb.GetReply(header=header, data=b"".join(piece.data for piece in read.pieces), markers=markers)

    async def _write(self, context: grpc.aio.ServicerContext, reply: pb.DownloadReply | bytes | memoryview) -> None:
        """A write that flow control holds cannot be cancelled in gRPC (a cancelled await of it
        goes on waiting for the client), so it runs as its own task and is left behind, to end with
        the call, when the client reads nothing for the idle timeout."""
        idle_s = self._files.limits.idle_timeout_s
        write = asyncio.ensure_future(context.write(reply))
        write.add_done_callback(_retrieve)  # a write left behind fails when the call ends: not an error to log
        done, _ = await asyncio.wait([write], timeout=idle_s)
        if not done:
            raise ClientTooSlow(f"the client read nothing for {idle_s:g} s; the download was cancelled")
        write.result()

    @maps_errors
    async def Stat(self, request: pb.StatRequest, context: grpc.aio.ServicerContext) -> pb.VersionInfo:  # noqa: N802
        rec = await self._files.stat(file_ref(request.file), version_spec(request.version))
        return version_info(rec, with_chunks=True)

    @maps_errors
    async def List(self, request: pb.ListRequest, context: grpc.aio.ServicerContext) -> pb.ListReply:  # noqa: N802
        page = await self._files.list_files(request.prefix, request.page_size, request.page_token, request.delimiter)
        return pb.ListReply(
            files=[version_info(r) for r in page.files], next_page_token=page.next_token,
            common_prefixes=page.prefixes,
        )

    @maps_errors
    async def ListVersions(  # noqa: N802
        self, request: pb.ListVersionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListVersionsReply:
        records = await self._files.versions(file_ref(request.file))
        return pb.ListVersionsReply(versions=[version_info(r) for r in records])

    @maps_errors
    async def Delete(self, request: pb.DeleteRequest, context: grpc.aio.ServicerContext) -> pb.DeleteReply:  # noqa: N802
        """An unset version selector (or one that names no version) deletes the whole file."""
        ref = file_ref(request.file)
        version: VersionSpec | None = None
        if request.HasField("version") and request.version.WhichOneof("selector"):
            version = version_spec(request.version)
        deleted = await self._files.delete(ref, version)
        return pb.DeleteReply(deleted=[version_info(r) for r in deleted])

    @maps_errors
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
            default_policy=snap.default_policy,
        )

    @maps_errors
    async def CreateToken(  # noqa: N802
        self, request: pb.CreateTokenRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateTokenReply:
        token, record = await self._files.create_token(request.role, request.name)
        return pb.CreateTokenReply(token=token, info=token_info(record))

    @maps_errors
    async def ListTokens(  # noqa: N802
        self, request: pb.ListTokensRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTokensReply:
        return pb.ListTokensReply(tokens=[token_info(r) for r in await self._files.list_tokens()])

    @maps_errors
    async def RevokeToken(  # noqa: N802
        self, request: pb.RevokeTokenRequest, context: grpc.aio.ServicerContext
    ) -> pb.TokenInfo:
        return token_info(await self._files.revoke_token(request.token_id))

    @maps_errors
    async def CreateS3Key(  # noqa: N802
        self, request: pb.CreateS3KeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateS3KeyReply:
        made = await self._files.create_s3_key(request.role, request.name)
        return pb.CreateS3KeyReply(secret_access_key=made.secret, info=s3_key_info(made.info))

    @maps_errors
    async def ListS3Keys(  # noqa: N802
        self, request: pb.ListS3KeysRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListS3KeysReply:
        return pb.ListS3KeysReply(keys=[s3_key_info(k) for k in await self._files.list_s3_keys()])

    @maps_errors
    async def RevokeS3Key(  # noqa: N802
        self, request: pb.RevokeS3KeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.S3KeyInfo:
        return s3_key_info(await self._files.revoke_s3_key(request.access_key_id))

    @maps_errors
    async def SetBucketPolicy(  # noqa: N802
        self, request: pb.SetBucketPolicyRequest, context: grpc.aio.ServicerContext
    ) -> pb.BucketInfo:
        return bucket_info(await self._bucket_service().set_policy(request.bucket, request.policy))

    @maps_errors
    async def ListBuckets(  # noqa: N802
        self, request: pb.ListBucketsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListBucketsReply:
        return pb.ListBucketsReply(buckets=[bucket_info(b) for b in await self._bucket_service().list()])

    def _bucket_service(self) -> BucketService:
        if self._buckets is None:
            raise ConfigError("this peer serves no buckets")
        return self._buckets

    @maps_errors
    async def WhoAmI(self, request: pb.WhoAmIRequest, context: grpc.aio.ServicerContext) -> pb.TokenInfo:  # noqa: N802
        who = await self._auth.principal(context.invocation_metadata())
        record = await self._files.token(who.token_id)
        if record is not None:
            return token_info(record)
        return pb.TokenInfo(token_id=who.token_id, role=who.role, name=who.name)
