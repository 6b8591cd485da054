"""Client (also importable as DfsClient): a synchronous client of one peer's public FileStore API.

Any peer of the mesh serves any request, so a client talks to exactly one. Every grpc.RpcError is
translated by `from_rpc_error` here, at the only place that calls the stub; callers see SDK types only.
`timeout` is the deadline of each RPC (one page of a listing, a whole upload or download), None for none.

Security: with a CA certificate (`tls_ca`, or env DFS_TLS_CA) the channel is TLS and the peer's
certificate must be signed by that CA and name the address dialed (host name or IP). With a token
(`token`, or env DFS_TOKEN) every call, streaming ones included, carries `authorization: Bearer <token>`.
The token is kept only in that metadata: it never appears in repr() or in error messages.
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import io
import itertools
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, overload

import grpc
import grpc.experimental

from client.atomic import check_destination, write_atomically
from client.errors import DfsClientError, InvalidArgument, NotFoundError, ServerError, from_rpc_error
from client.models import (
    TOKEN_ROLES,
    BucketInfo,
    ClusterStatus,
    S3KeyInfo,
    TokenInfo,
    UploadResult,
    VersionInfo,
    bucket_from_proto,
    s3_key_from_proto,
    status_from_proto,
    token_from_proto,
    upload_from_proto,
    version_from_proto,
)
from client.refs import file_ref_candidates, version_selector
from client.streams import (
    DownloadDest,
    DownloadStream,
    OneReply,
    Progress,
    UploadFeed,
    UploadSource,
    decode_download_reply,
    encode_upload_request,
    open_source,
    verify_stored,
)
from proto import dfs_pb2, dfs_pb2_grpc

DEFAULT_PEER = "127.0.0.1:50051"
ENV_TLS_CA = "DFS_TLS_CA"
ENV_TOKEN = "DFS_TOKEN"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
PIECE_SIZE = 1024 * 1024
GET_MAX_BYTES = PIECE_SIZE  # a range up to this size is fetched with one unary Get
UPLOAD_METHOD = "/dfs.v1.FileStore/Upload"
DOWNLOAD_METHOD = "/dfs.v1.FileStore/Download"

T = TypeVar("T")


class Client:
    """Client of the peer at `peer` ("host:port"); close it, or use it as a context manager.

    `tls_ca`: path of the PEM CA certificate that signed the peers' certificates; None reads env
    DFS_TLS_CA, and "" (or an unset variable) means a plain-text channel. `token`: the bearer token
    sent with every call; None reads env DFS_TOKEN, "" means none.
    """

    def __init__(
        self,
        peer: str = DEFAULT_PEER,
        timeout: float | None = None,
        tls_ca: str | os.PathLike[str] | None = None,
        token: str | None = None,
    ) -> None:
        if not peer.strip():
            raise InvalidArgument("the peer address is empty; expected HOST:PORT")
        ca_path = os.fspath(tls_ca) if tls_ca is not None else os.environ.get(ENV_TLS_CA, "")
        self.peer = peer
        self.timeout = timeout
        self.tls = bool(ca_path)
        """Whether the channel uses TLS."""
        self._metadata = _auth_metadata(token if token is not None else os.environ.get(ENV_TOKEN, ""))
        self._channel = _open_channel(peer, ca_path)
        self._stub: Any = dfs_pb2_grpc.FileStoreStub(self._channel)
        # The data-carrying calls frame their data pieces by hand (see client/streams.py).
        self._upload: Any = self._channel.stream_unary(
            UPLOAD_METHOD,
            request_serializer=encode_upload_request,
            response_deserializer=dfs_pb2.UploadReply.FromString,
        )
        self._get_supported = True
        self._download: Any = self._channel.unary_stream(
            DOWNLOAD_METHOD,
            request_serializer=dfs_pb2.DownloadRequest.SerializeToString,
            response_deserializer=decode_download_reply,
        )

    @property
    def has_token(self) -> bool:
        """Whether calls carry a bearer token (the token itself is not readable back)."""
        return self._metadata is not None

    def close(self) -> None:
        """Closes the channel, cancelling any call still running on it."""
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(peer={self.peer!r}, timeout={self.timeout!r}, tls={self.tls},"
            f" token={self.has_token})"
        )

    # ------------------------------------------------------------------ data

    def upload(
        self,
        source: UploadSource,
        name: str | None = None,
        content_type: str = "",
        metadata: Mapping[str, str] | None = None,
        progress: Progress | None = None,
        piece_size: int = PIECE_SIZE,
        *,
        policy: str | None = None,
    ) -> UploadResult:
        """Stores `source` as a new version of `name`; returns the version and the peers holding it.

        `source` is a local path (str or os.PathLike), the bytes themselves, a binary file object or
        any iterable of byte pieces; it is read piece by piece, never whole. `name` None means a
        path's basename, and is required for every other source; an empty name is refused.
        `policy` is the redundancy policy to store the version with, e.g. "rep:3" or "ec:4+2"; None
        means the default of the bucket the name falls in (`BUCKET/...`), else the cluster's. A policy
        the cluster cannot meet is refused with ClusterUnavailable (nothing is stored), an unknown one
        with InvalidArgument.
        Raises IntegrityError when the SHA-256 or size the peer stored differs from what was sent.
        """
        if not 0 < piece_size <= MAX_MESSAGE_BYTES // 2:
            raise InvalidArgument(f"piece_size must be between 1 and {MAX_MESSAGE_BYTES // 2} bytes")
        wanted = _checked_policy(policy)
        with ExitStack() as stack:
            pieces, file_name = open_source(source, name, piece_size, stack)
            header = dfs_pb2.UploadHeader(
                name=file_name, content_type=content_type, metadata=dict(metadata or {}), policy=wanted
            )
            first = next(pieces, b"")
            second = next(pieces, None)
            if second is None:  # the whole file is one piece: one unary Put instead of a stream
                result = self._put(header, first, progress)
                if result is not None:
                    return _stored_under(result, wanted)
                pieces = iter((first,))
            else:
                pieces = itertools.chain((first, second), pieces)
            feed = UploadFeed(header, pieces, progress)
            # A blocking call rather than a future: a future costs a thread per call to drive it
            # (a quarter of the client's CPU per small upload). Ctrl-C still interrupts the wait,
            # and grpc then cancels the call, so nothing more is sent and nothing is committed.
            try:
                reply = self._upload(iter(feed), **self._options())
            except grpc.RpcError as exc:
                if feed.error is not None:
                    raise feed.error from None
                raise self._error(exc) from exc
        result = upload_from_proto(reply)
        feed.verify(result.version)
        return _stored_under(result, wanted)

    def _put(self, header: dfs_pb2.UploadHeader, data: bytes, progress: Progress | None) -> UploadResult | None:
        """Stores a file that fits in one message with one unary call, which costs the client and the
        peer a fraction of a streamed upload; None when the peer predates Put (use Upload then)."""
        sha256 = hashlib.sha256(data).hexdigest()
        request = dfs_pb2.PutRequest(
            header=header, data=data, trailer=dfs_pb2.UploadTrailer(size=len(data), sha256=sha256)
        )
        try:
            reply = self._stub.Put(request, **self._options())
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                return None
            raise self._error(exc) from exc
        if progress is not None:
            progress(len(data))
        result = upload_from_proto(reply)
        verify_stored(result.version, sha256, len(data))
        return result

    def iter_download(
        self, ref: str, version: int | str | None = None, offset: int = 0, length: int = 0
    ) -> DownloadStream:
        """Opens a download and waits for its header, so `.info` is known before any data is written.

        `length` 0 means to the end of the file. Iterate the result for the data pieces, each verified
        as DownloadStream describes; close it (or use `with`) to cancel a download left unfinished.
        """
        if offset < 0 or length < 0:
            raise InvalidArgument("offset and length must not be negative")
        selector = version_selector(version)

        def start(file_ref: dfs_pb2.FileRef) -> DownloadStream:
            request = dfs_pb2.DownloadRequest(
                file=file_ref, version=selector, offset=offset, length=length, chunk_markers=True
            )
            if self._get_supported:
                small = self._get(request)
                if small is not None:
                    return small
            call = self._download(request, **self._options())
            try:
                first = next(call)
            except StopIteration:
                raise ServerError("the peer ended the download without a header") from None
            except BaseException:
                call.cancel()
                raise
            if not isinstance(first, dfs_pb2.DownloadReply) or first.WhichOneof("msg") != "header":
                call.cancel()
                raise ServerError("the peer sent download data before the header")
            return DownloadStream(call, first.header, self.peer)

        return self._resolve(ref, start)

    def _get(self, request: dfs_pb2.DownloadRequest) -> DownloadStream | None:
        """A small range in one unary Get (a fraction of a streamed download's cost for both sides).
        For a larger one the peer sends only the header, and `request` is narrowed to that version,
        so the Download that follows reads the very version this call found. None: use Download."""
        try:
            reply = self._stub.Get(dfs_pb2.GetRequest(request=request, max_bytes=GET_MAX_BYTES), **self._options())
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise
            self._get_supported = False  # a peer that predates Get
            return None
        if not reply.HasField("data"):
            request.version.CopyFrom(dfs_pb2.VersionSelector(version_id=reply.header.version.version_id))
            return None
        return DownloadStream(OneReply(reply), reply.header, self.peer)

    @overload
    def download(
        self, ref: str, dest: None = None, *, version: int | str | None = None, offset: int = 0,
        length: int = 0, progress: Progress | None = None,
    ) -> DownloadStream: ...

    @overload
    def download(
        self, ref: str, dest: DownloadDest, *, version: int | str | None = None, offset: int = 0,
        length: int = 0, progress: Progress | None = None,
    ) -> VersionInfo: ...

    def download(
        self,
        ref: str,
        dest: DownloadDest | None = None,
        *,
        version: int | str | None = None,
        offset: int = 0,
        length: int = 0,
        progress: Progress | None = None,
    ) -> DownloadStream | VersionInfo:
        """Downloads the file (or the byte range; `length` 0 means to the end), verified.

        `dest` a path (str or os.PathLike): the data goes to a temporary file in the same directory,
        which is fsynced and then renamed over the path; on any failure (integrity, network, Ctrl-C)
        it is removed and a file already at the path is left untouched. Returns the VersionInfo.
        `dest` a binary file object: the data is written to it as it arrives, so on a failure it
        holds what arrived before. Returns the VersionInfo.
        `dest` None: returns the open DownloadStream, an iterator of the data pieces in which each
        chunk is verified before its bytes are yielded (see DownloadStream for what is checked, and
        for peers that predate chunk markers); close it, or use it with `with`, to cancel the
        download when it is not read to the end. The VersionInfo is its `.info`.
        `progress` is called with the size of each piece delivered.
        """
        if dest is not None and not isinstance(dest, str | os.PathLike) and not hasattr(dest, "write"):
            raise InvalidArgument(
                f"cannot download to a {type(dest).__name__}: give a path, a binary file object or None"
            )
        path = Path(dest) if isinstance(dest, str | os.PathLike) else None
        if path is not None:
            check_destination(path)
        stream = self.iter_download(ref, version, offset, length)
        stream.progress = progress
        if dest is None:
            return stream
        with stream:
            if path is not None:
                write_atomically(stream, path)
            elif not isinstance(dest, str | os.PathLike):
                for piece in stream:
                    dest.write(piece)
        return stream.info

    def read(self, ref: str, version: int | str | None = None, offset: int = 0, length: int = 0) -> bytes:
        """The verified content (or byte range) in memory: meant for small files and tests."""
        buffer = io.BytesIO()
        self.download(ref, buffer, version=version, offset=offset, length=length)
        return buffer.getvalue()

    # -------------------------------------------------------------- metadata

    def info(self, ref: str, version: int | str | None = None) -> VersionInfo:
        """The version (default: the latest) with its chunk placements."""
        selector = _version_kwargs(version)
        reply = self._resolve(
            ref, lambda f: self._stub.Stat(dfs_pb2.StatRequest(file=f, **selector), **self._options())
        )
        return version_from_proto(reply)

    stat = info

    def versions(self, ref: str) -> builtins.list[VersionInfo]:
        """Every version of the file, newest first."""
        reply = self._resolve(
            ref, lambda f: self._stub.ListVersions(dfs_pb2.ListVersionsRequest(file=f), **self._options())
        )
        return [version_from_proto(v) for v in reply.versions]

    def delete(self, ref: str, version: int | str | None = None) -> builtins.list[VersionInfo]:
        """Deletes one version, or with `version` None the whole file; returns what was deleted."""
        selector = _version_kwargs(version)
        reply = self._resolve(
            ref, lambda f: self._stub.Delete(dfs_pb2.DeleteRequest(file=f, **selector), **self._options())
        )
        return [version_from_proto(v) for v in reply.deleted]

    def status(self) -> ClusterStatus:
        """The answering peer's view of the cluster: members, ring and metadata store health."""
        reply = self._unary(self._stub.ClusterStatus, dfs_pb2.ClusterStatusRequest())
        return status_from_proto(reply)

    def list(self, prefix: str = "", page_size: int = 0) -> Iterator[VersionInfo]:
        """The latest version of every file whose name starts with `prefix`, fetching pages lazily.

        `page_size` 0 lets the peer choose. RPC errors surface while iterating.
        """
        if page_size < 0:
            raise InvalidArgument("page_size must not be negative")
        return (version_from_proto(info) for reply in self._pages(prefix, page_size, "") for info in reply.files)

    def ls(self, prefix: str = "", delimiter: str = "/", page_size: int = 0) -> Iterator[str | VersionInfo]:
        """One level of the name tree under `prefix`, as a directory listing shows it, fetching pages lazily.

        Yields each common prefix (a str: `prefix` plus the text up to and including the first
        `delimiter` after it, standing for every name below it) and the latest VersionInfo of each
        file directly under `prefix`. Each page brings its common prefixes first, then its files,
        each group in name order (as S3 lists a page); `page_size` (0: the peer's default) counts
        both. `delimiter` "" lists every file below `prefix`, as `list` does. A peer that predates
        delimiters returns every name; they are rolled up here then, at the cost of reading them all.
        RPC errors surface while iterating.
        """
        if page_size < 0:
            raise InvalidArgument("page_size must not be negative")
        return self._entries(prefix, delimiter, page_size)

    def _entries(self, prefix: str, delimiter: str, page_size: int) -> Iterator[str | VersionInfo]:
        rolled = ""  # the last common prefix made here from the names of a peer that did not roll up
        for reply in self._pages(prefix, page_size, delimiter):
            yield from reply.common_prefixes
            for info in reply.files:
                cut = info.name.find(delimiter, len(prefix)) if delimiter else -1
                if cut < 0:
                    yield version_from_proto(info)
                elif info.name[: cut + len(delimiter)] != rolled:
                    rolled = info.name[: cut + len(delimiter)]
                    yield rolled

    def _pages(self, prefix: str, page_size: int, delimiter: str) -> Iterator[dfs_pb2.ListReply]:
        token = ""
        while True:
            request = dfs_pb2.ListRequest(prefix=prefix, page_size=page_size, page_token=token, delimiter=delimiter)
            reply: dfs_pb2.ListReply = self._unary(self._stub.List, request)
            yield reply
            if not reply.next_page_token or reply.next_page_token == token:
                return
            token = reply.next_page_token

    # ---------------------------------------------------------------- tokens

    def create_token(self, role: str, name: str = "") -> tuple[str, TokenInfo]:
        """A new token of `role` (read, write or admin): its secret string, shown only this once, and its info.

        Needs an admin token. Store the secret right away: peers keep only a hash of it.
        """
        if role not in TOKEN_ROLES:
            raise InvalidArgument(f"invalid role {role[:20]!r}: expected one of {', '.join(TOKEN_ROLES)}")
        reply = self._unary(self._stub.CreateToken, dfs_pb2.CreateTokenRequest(role=role, name=name))
        return reply.token, token_from_proto(reply.info)

    def list_tokens(self) -> builtins.list[TokenInfo]:
        """Every token the cluster knows, revoked ones included (never their secrets). Needs an admin token."""
        reply = self._unary(self._stub.ListTokens, dfs_pb2.ListTokensRequest())
        return [token_from_proto(t) for t in reply.tokens]

    def revoke_token(self, token_id: str) -> TokenInfo:
        """Revokes the token with this public id; returns its info, now with `revoked_at`. Needs an admin token."""
        token_id = token_id.strip()
        if not token_id:
            raise InvalidArgument("a token id is required")
        return token_from_proto(self._unary(self._stub.RevokeToken, dfs_pb2.RevokeTokenRequest(token_id=token_id)))

    def whoami(self) -> TokenInfo:
        """The token this client sends as the peer sees it; role "admin" on a peer running without auth."""
        return token_from_proto(self._unary(self._stub.WhoAmI, dfs_pb2.WhoAmIRequest()))

    # ---------------------------------------------------------------- S3 access keys

    def create_s3_key(self, role: str, name: str = "") -> tuple[str, S3KeyInfo]:
        """A new S3 access key of `role` (read, write or admin): its secret, shown only this once, and its
        info (`info.access_key_id` is the id S3 clients send). Needs an admin token."""
        if role not in TOKEN_ROLES:
            raise InvalidArgument(f"invalid role {role[:20]!r}: expected one of {', '.join(TOKEN_ROLES)}")
        reply = self._unary(self._stub.CreateS3Key, dfs_pb2.CreateS3KeyRequest(role=role, name=name))
        return reply.secret_access_key, s3_key_from_proto(reply.info)

    def list_s3_keys(self) -> builtins.list[S3KeyInfo]:
        """Every S3 access key, revoked ones included (never their secrets). Needs an admin token."""
        reply = self._unary(self._stub.ListS3Keys, dfs_pb2.ListS3KeysRequest())
        return [s3_key_from_proto(k) for k in reply.keys]

    def revoke_s3_key(self, access_key_id: str) -> S3KeyInfo:
        """Revokes the S3 access key with this id; returns its info, now with `revoked_at`. Needs an admin token."""
        access_key_id = access_key_id.strip()
        if not access_key_id:
            raise InvalidArgument("an access key id is required")
        request = dfs_pb2.RevokeS3KeyRequest(access_key_id=access_key_id)
        return s3_key_from_proto(self._unary(self._stub.RevokeS3Key, request))

    # ---------------------------------------------------------------- buckets

    def set_bucket_policy(self, bucket: str, policy: str) -> BucketInfo:
        """Sets the default redundancy policy of the bucket's uploads (files named `BUCKET/...` that
        name no policy, S3 PUTs of STANDARD class), e.g. "rep:3"; "" clears it, so the cluster's
        applies. Versions already stored keep their policy. Needs an admin token."""
        bucket = bucket.strip()
        if not bucket:
            raise InvalidArgument("a bucket name is required")
        request = dfs_pb2.SetBucketPolicyRequest(bucket=bucket, policy=_checked_policy(policy or None))
        return bucket_from_proto(self._unary(self._stub.SetBucketPolicy, request))

    def list_buckets(self) -> builtins.list[BucketInfo]:
        """Every S3 bucket by name, with its versioning state and default policy."""
        reply = self._unary(self._stub.ListBuckets, dfs_pb2.ListBucketsRequest())
        return [bucket_from_proto(b) for b in reply.buckets]

    # ------------------------------------------------------------- internals

    def _options(self) -> dict[str, Any]:
        """Keyword arguments of every stub call: the deadline and the credentials."""
        return {"timeout": self.timeout, "metadata": self._metadata}

    def _error(self, exc: grpc.RpcError) -> DfsClientError:
        return from_rpc_error(exc, peer=self.peer, tls=self.tls)

    def _unary(self, method: Callable[..., T], request: Any) -> T:
        return self._call(functools.partial(method, request, **self._options()))

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except grpc.RpcError as exc:
            raise self._error(exc) from exc

    def _resolve(self, ref: str, fn: Callable[[dfs_pb2.FileRef], T]) -> T:
        """Runs `fn` with each FileRef `ref` may mean, moving to the next only when one is not found."""
        candidates = file_ref_candidates(ref)
        for index, file_ref in enumerate(candidates):
            try:
                return fn(file_ref)
            except grpc.RpcError as exc:
                error = self._error(exc)
                if isinstance(error, NotFoundError) and index + 1 < len(candidates):
                    continue
                raise error from exc
        raise AssertionError("file_ref_candidates returned no candidate")


DfsClient = Client
"""The name the SDK first shipped under; the same class."""


def _open_channel(peer: str, ca_path: str) -> grpc.Channel:
    options = [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        # A download's replies are read by the thread iterating it, not by a helper thread gRPC
        # would otherwise start per call: a quarter less client CPU per small download.
        (grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1),
    ]
    if not ca_path:
        return grpc.insecure_channel(peer, options=options)
    credentials = grpc.ssl_channel_credentials(root_certificates=_read_ca(ca_path))
    return grpc.secure_channel(peer, credentials, options=options)


def _read_ca(path: str) -> bytes:
    """The CA certificate's PEM bytes, checked here so a bad path fails at once and not as a handshake error."""
    try:
        with open(path, "rb") as fh:
            pem = fh.read()
    except OSError as exc:
        raise InvalidArgument(f"cannot read the TLS CA certificate {path}: {exc.strerror or exc}") from exc
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise InvalidArgument(f"the TLS CA file {path} holds no PEM certificate")
    return pem


def _auth_metadata(token: str) -> tuple[tuple[str, str], ...] | None:
    """The call metadata carrying `token`, or None without one. gRPC metadata values must be printable
    ASCII, so anything else (a pasted line break, a quote mark) is refused here, without echoing it."""
    token = token.strip()
    if not token:
        return None
    if not token.isascii() or not token.isprintable() or any(c.isspace() for c in token):
        raise InvalidArgument("the token contains spaces or characters outside printable ASCII")
    return (("authorization", f"Bearer {token}"),)


MAX_POLICY_CHARS = 32


def _checked_policy(policy: str | None) -> str:
    """The policy as the header carries it ("" for None: the default). Only its shape is checked
    here; which kinds exist and whether the cluster can meet one, the peer judges."""
    if policy is None:
        return ""
    if not isinstance(policy, str) or not policy:
        raise InvalidArgument("policy must be a non-empty string such as 'rep:3' or 'ec:4+2', or None")
    if len(policy) > MAX_POLICY_CHARS or not policy.isascii() or not policy.isprintable() or " " in policy:
        raise InvalidArgument(f"invalid redundancy policy {policy[:MAX_POLICY_CHARS]!r}: expected rep:R or ec:K+M")
    return policy


def _stored_under(result: UploadResult, policy: str) -> UploadResult:
    """The result, once the version is known to carry the policy asked for: a peer that predates
    per-upload policies ignores the header and stores under the cluster's, which must not pass
    silently for the one asked."""
    if policy and result.version.policy != policy:
        raise ServerError(
            f"the peer stored {result.version.name} version {result.version.version} under policy"
            f" {result.version.policy or 'its default'}, not {policy}: it does not support per-upload policies"
        )
    return result


def _version_kwargs(version: int | str | None) -> dict[str, dfs_pb2.VersionSelector]:
    selector = version_selector(version)
    return {} if selector is None else {"version": selector}
