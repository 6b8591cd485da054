from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FileRef(_message.Message):
    __slots__ = ("name", "file_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    file_id: str
    def __init__(self, name: _Optional[str] = ..., file_id: _Optional[str] = ...) -> None: ...

class VersionSelector(_message.Message):
    __slots__ = ("number", "version_id")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    number: int
    version_id: str
    def __init__(self, number: _Optional[int] = ..., version_id: _Optional[str] = ...) -> None: ...

class UploadHeader(_message.Message):
    __slots__ = ("name", "content_type", "metadata", "size", "policy")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    name: str
    content_type: str
    metadata: _containers.ScalarMap[str, str]
    size: int
    policy: str
    def __init__(self, name: _Optional[str] = ..., content_type: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., size: _Optional[int] = ..., policy: _Optional[str] = ...) -> None: ...

class UploadTrailer(_message.Message):
    __slots__ = ("size", "sha256")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    size: int
    sha256: str
    def __init__(self, size: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class UploadRequest(_message.Message):
    __slots__ = ("header", "data", "trailer")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TRAILER_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    data: bytes
    trailer: UploadTrailer
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., data: _Optional[bytes] = ..., trailer: _Optional[_Union[UploadTrailer, _Mapping]] = ...) -> None: ...

class PutRequest(_message.Message):
    __slots__ = ("header", "data", "trailer")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    TRAILER_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    data: bytes
    trailer: UploadTrailer
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., data: _Optional[bytes] = ..., trailer: _Optional[_Union[UploadTrailer, _Mapping]] = ...) -> None: ...

class ChunkPlacement(_message.Message):
    __slots__ = ("chunk_id", "size", "peers", "fragments")
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    FRAGMENTS_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    size: int
    peers: _containers.RepeatedScalarFieldContainer[str]
    fragments: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, chunk_id: _Optional[str] = ..., size: _Optional[int] = ..., peers: _Optional[_Iterable[str]] = ..., fragments: _Optional[_Iterable[str]] = ...) -> None: ...

class VersionInfo(_message.Message):
    __slots__ = ("file_id", "version_id", "version", "name", "size", "sha256", "chunk_count", "content_type", "metadata", "created_at", "latest", "chunks", "policy", "delete_marker")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LATEST_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    DELETE_MARKER_FIELD_NUMBER: _ClassVar[int]
    file_id: str
    version_id: str
    version: int
    name: str
    size: int
    sha256: str
    chunk_count: int
    content_type: str
    metadata: _containers.ScalarMap[str, str]
    created_at: float
    latest: bool
    chunks: _containers.RepeatedCompositeFieldContainer[ChunkPlacement]
    policy: str
    delete_marker: bool
    def __init__(self, file_id: _Optional[str] = ..., version_id: _Optional[str] = ..., version: _Optional[int] = ..., name: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ..., chunk_count: _Optional[int] = ..., content_type: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., created_at: _Optional[float] = ..., latest: _Optional[bool] = ..., chunks: _Optional[_Iterable[_Union[ChunkPlacement, _Mapping]]] = ..., policy: _Optional[str] = ..., delete_marker: _Optional[bool] = ...) -> None: ...

class UploadReply(_message.Message):
    __slots__ = ("version", "peers")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    version: VersionInfo
    peers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, version: _Optional[_Union[VersionInfo, _Mapping]] = ..., peers: _Optional[_Iterable[str]] = ...) -> None: ...

class DownloadRequest(_message.Message):
    __slots__ = ("file", "version", "offset", "length", "chunk_markers")
    FILE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    CHUNK_MARKERS_FIELD_NUMBER: _ClassVar[int]
    file: FileRef
    version: VersionSelector
    offset: int
    length: int
    chunk_markers: bool
    def __init__(self, file: _Optional[_Union[FileRef, _Mapping]] = ..., version: _Optional[_Union[VersionSelector, _Mapping]] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ..., chunk_markers: _Optional[bool] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("request", "max_bytes")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    request: DownloadRequest
    max_bytes: int
    def __init__(self, request: _Optional[_Union[DownloadRequest, _Mapping]] = ..., max_bytes: _Optional[int] = ...) -> None: ...

class GetReply(_message.Message):
    __slots__ = ("header", "data", "markers")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    MARKERS_FIELD_NUMBER: _ClassVar[int]
    header: DownloadHeader
    data: bytes
    markers: _containers.RepeatedCompositeFieldContainer[ChunkMarker]
    def __init__(self, header: _Optional[_Union[DownloadHeader, _Mapping]] = ..., data: _Optional[bytes] = ..., markers: _Optional[_Iterable[_Union[ChunkMarker, _Mapping]]] = ...) -> None: ...

class DownloadHeader(_message.Message):
    __slots__ = ("version", "offset", "length", "chunk_markers")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    CHUNK_MARKERS_FIELD_NUMBER: _ClassVar[int]
    version: VersionInfo
    offset: int
    length: int
    chunk_markers: bool
    def __init__(self, version: _Optional[_Union[VersionInfo, _Mapping]] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ..., chunk_markers: _Optional[bool] = ...) -> None: ...

class ChunkMarker(_message.Message):
    __slots__ = ("chunk_id", "size", "offset")
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    size: int
    offset: int
    def __init__(self, chunk_id: _Optional[str] = ..., size: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class DownloadReply(_message.Message):
    __slots__ = ("header", "data", "marker")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    MARKER_FIELD_NUMBER: _ClassVar[int]
    header: DownloadHeader
    data: bytes
    marker: ChunkMarker
    def __init__(self, header: _Optional[_Union[DownloadHeader, _Mapping]] = ..., data: _Optional[bytes] = ..., marker: _Optional[_Union[ChunkMarker, _Mapping]] = ...) -> None: ...

class StatRequest(_message.Message):
    __slots__ = ("file", "version")
    FILE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    file: FileRef
    version: VersionSelector
    def __init__(self, file: _Optional[_Union[FileRef, _Mapping]] = ..., version: _Optional[_Union[VersionSelector, _Mapping]] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("prefix", "page_size", "page_token", "delimiter")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    DELIMITER_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    page_size: int
    page_token: str
    delimiter: str
    def __init__(self, prefix: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., delimiter: _Optional[str] = ...) -> None: ...

class ListReply(_message.Message):
    __slots__ = ("files", "next_page_token", "common_prefixes")
    FILES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    COMMON_PREFIXES_FIELD_NUMBER: _ClassVar[int]
    files: _containers.RepeatedCompositeFieldContainer[VersionInfo]
    next_page_token: str
    common_prefixes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, files: _Optional[_Iterable[_Union[VersionInfo, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., common_prefixes: _Optional[_Iterable[str]] = ...) -> None: ...

class ListVersionsRequest(_message.Message):
    __slots__ = ("file",)
    FILE_FIELD_NUMBER: _ClassVar[int]
    file: FileRef
    def __init__(self, file: _Optional[_Union[FileRef, _Mapping]] = ...) -> None: ...

class ListVersionsReply(_message.Message):
    __slots__ = ("versions",)
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[VersionInfo]
    def __init__(self, versions: _Optional[_Iterable[_Union[VersionInfo, _Mapping]]] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("file", "version")
    FILE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    file: FileRef
    version: VersionSelector
    def __init__(self, file: _Optional[_Union[FileRef, _Mapping]] = ..., version: _Optional[_Union[VersionSelector, _Mapping]] = ...) -> None: ...

class DeleteReply(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: _containers.RepeatedCompositeFieldContainer[VersionInfo]
    def __init__(self, deleted: _Optional[_Iterable[_Union[VersionInfo, _Mapping]]] = ...) -> None: ...

class ClusterStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MemberStatus(_message.Message):
    __slots__ = ("node_id", "state", "grpc_addr", "gossip_addr", "incarnation", "heartbeat", "chunk_count", "chunk_bytes", "on_ring", "last_seen_s", "stats", "zone")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDR_FIELD_NUMBER: _ClassVar[int]
    GOSSIP_ADDR_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    ON_RING_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_S_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
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
    stats: PeerStats
    zone: str
    def __init__(self, node_id: _Optional[str] = ..., state: _Optional[str] = ..., grpc_addr: _Optional[str] = ..., gossip_addr: _Optional[str] = ..., incarnation: _Optional[int] = ..., heartbeat: _Optional[int] = ..., chunk_count: _Optional[int] = ..., chunk_bytes: _Optional[int] = ..., on_ring: _Optional[bool] = ..., last_seen_s: _Optional[float] = ..., stats: _Optional[_Union[PeerStats, _Mapping]] = ..., zone: _Optional[str] = ...) -> None: ...

class ClusterStatusReply(_message.Message):
    __slots__ = ("node_id", "ring_digest", "replicas", "vnodes", "chunk_size", "members", "metadata_backend", "metadata_healthy", "metadata_error", "default_policy")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    RING_DIGEST_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    VNODES_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    METADATA_BACKEND_FIELD_NUMBER: _ClassVar[int]
    METADATA_HEALTHY_FIELD_NUMBER: _ClassVar[int]
    METADATA_ERROR_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_POLICY_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    ring_digest: str
    replicas: int
    vnodes: int
    chunk_size: int
    members: _containers.RepeatedCompositeFieldContainer[MemberStatus]
    metadata_backend: str
    metadata_healthy: bool
    metadata_error: str
    default_policy: str
    def __init__(self, node_id: _Optional[str] = ..., ring_digest: _Optional[str] = ..., replicas: _Optional[int] = ..., vnodes: _Optional[int] = ..., chunk_size: _Optional[int] = ..., members: _Optional[_Iterable[_Union[MemberStatus, _Mapping]]] = ..., metadata_backend: _Optional[str] = ..., metadata_healthy: _Optional[bool] = ..., metadata_error: _Optional[str] = ..., default_policy: _Optional[str] = ...) -> None: ...

class TokenInfo(_message.Message):
    __slots__ = ("token_id", "role", "name", "created_at", "revoked_at")
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    token_id: str
    role: str
    name: str
    created_at: float
    revoked_at: float
    def __init__(self, token_id: _Optional[str] = ..., role: _Optional[str] = ..., name: _Optional[str] = ..., created_at: _Optional[float] = ..., revoked_at: _Optional[float] = ...) -> None: ...

class CreateTokenRequest(_message.Message):
    __slots__ = ("role", "name")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    role: str
    name: str
    def __init__(self, role: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class CreateTokenReply(_message.Message):
    __slots__ = ("token", "info")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    token: str
    info: TokenInfo
    def __init__(self, token: _Optional[str] = ..., info: _Optional[_Union[TokenInfo, _Mapping]] = ...) -> None: ...

class ListTokensRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTokensReply(_message.Message):
    __slots__ = ("tokens",)
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[TokenInfo]
    def __init__(self, tokens: _Optional[_Iterable[_Union[TokenInfo, _Mapping]]] = ...) -> None: ...

class RevokeTokenRequest(_message.Message):
    __slots__ = ("token_id",)
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    token_id: str
    def __init__(self, token_id: _Optional[str] = ...) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class S3KeyInfo(_message.Message):
    __slots__ = ("access_key_id", "role", "name", "created_at", "revoked_at")
    ACCESS_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    access_key_id: str
    role: str
    name: str
    created_at: float
    revoked_at: float
    def __init__(self, access_key_id: _Optional[str] = ..., role: _Optional[str] = ..., name: _Optional[str] = ..., created_at: _Optional[float] = ..., revoked_at: _Optional[float] = ...) -> None: ...

class CreateS3KeyRequest(_message.Message):
    __slots__ = ("role", "name")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    role: str
    name: str
    def __init__(self, role: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class CreateS3KeyReply(_message.Message):
    __slots__ = ("secret_access_key", "info")
    SECRET_ACCESS_KEY_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    secret_access_key: str
    info: S3KeyInfo
    def __init__(self, secret_access_key: _Optional[str] = ..., info: _Optional[_Union[S3KeyInfo, _Mapping]] = ...) -> None: ...

class ListS3KeysRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListS3KeysReply(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[S3KeyInfo]
    def __init__(self, keys: _Optional[_Iterable[_Union[S3KeyInfo, _Mapping]]] = ...) -> None: ...

class RevokeS3KeyRequest(_message.Message):
    __slots__ = ("access_key_id",)
    ACCESS_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    access_key_id: str
    def __init__(self, access_key_id: _Optional[str] = ...) -> None: ...

class BucketInfo(_message.Message):
    __slots__ = ("name", "created_at", "versioning", "policy")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    VERSIONING_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    name: str
    created_at: float
    versioning: str
    policy: str
    def __init__(self, name: _Optional[str] = ..., created_at: _Optional[float] = ..., versioning: _Optional[str] = ..., policy: _Optional[str] = ...) -> None: ...

class SetBucketPolicyRequest(_message.Message):
    __slots__ = ("bucket", "policy")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    bucket: str
    policy: str
    def __init__(self, bucket: _Optional[str] = ..., policy: _Optional[str] = ...) -> None: ...

class ListBucketsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListBucketsReply(_message.Message):
    __slots__ = ("buckets",)
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    buckets: _containers.RepeatedCompositeFieldContainer[BucketInfo]
    def __init__(self, buckets: _Optional[_Iterable[_Union[BucketInfo, _Mapping]]] = ...) -> None: ...

class DigestRequest(_message.Message):
    __slots__ = ("from_node", "ring_digest", "buckets")
    FROM_NODE_FIELD_NUMBER: _ClassVar[int]
    RING_DIGEST_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    from_node: str
    ring_digest: str
    buckets: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, from_node: _Optional[str] = ..., ring_digest: _Optional[str] = ..., buckets: _Optional[_Iterable[bytes]] = ...) -> None: ...

class BucketIds(_message.Message):
    __slots__ = ("bucket", "ids")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    bucket: int
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, bucket: _Optional[int] = ..., ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DigestReply(_message.Message):
    __slots__ = ("ring_mismatch", "differing")
    RING_MISMATCH_FIELD_NUMBER: _ClassVar[int]
    DIFFERING_FIELD_NUMBER: _ClassVar[int]
    ring_mismatch: bool
    differing: _containers.RepeatedCompositeFieldContainer[BucketIds]
    def __init__(self, ring_mismatch: _Optional[bool] = ..., differing: _Optional[_Iterable[_Union[BucketIds, _Mapping]]] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PeerStats(_message.Message):
    __slots__ = ("node_id", "chunk_count", "chunk_bytes", "under_replicated", "misplaced", "repaired", "handed_off", "scrubbed_bytes", "scrub_passes", "corrupt_found", "gc_deleted", "last_sync_s", "workers", "disk_total_bytes", "disk_free_bytes", "rss_bytes", "memory_budget_bytes", "memory_in_use_bytes")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    UNDER_REPLICATED_FIELD_NUMBER: _ClassVar[int]
    MISPLACED_FIELD_NUMBER: _ClassVar[int]
    REPAIRED_FIELD_NUMBER: _ClassVar[int]
    HANDED_OFF_FIELD_NUMBER: _ClassVar[int]
    SCRUBBED_BYTES_FIELD_NUMBER: _ClassVar[int]
    SCRUB_PASSES_FIELD_NUMBER: _ClassVar[int]
    CORRUPT_FOUND_FIELD_NUMBER: _ClassVar[int]
    GC_DELETED_FIELD_NUMBER: _ClassVar[int]
    LAST_SYNC_S_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    DISK_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    DISK_FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BUDGET_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_IN_USE_BYTES_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    chunk_count: int
    chunk_bytes: int
    under_replicated: int
    misplaced: int
    repaired: int
    handed_off: int
    scrubbed_bytes: int
    scrub_passes: int
    corrupt_found: int
    gc_deleted: int
    last_sync_s: float
    workers: _containers.RepeatedCompositeFieldContainer[WorkerState]
    disk_total_bytes: int
    disk_free_bytes: int
    rss_bytes: int
    memory_budget_bytes: int
    memory_in_use_bytes: int
    def __init__(self, node_id: _Optional[str] = ..., chunk_count: _Optional[int] = ..., chunk_bytes: _Optional[int] = ..., under_replicated: _Optional[int] = ..., misplaced: _Optional[int] = ..., repaired: _Optional[int] = ..., handed_off: _Optional[int] = ..., scrubbed_bytes: _Optional[int] = ..., scrub_passes: _Optional[int] = ..., corrupt_found: _Optional[int] = ..., gc_deleted: _Optional[int] = ..., last_sync_s: _Optional[float] = ..., workers: _Optional[_Iterable[_Union[WorkerState, _Mapping]]] = ..., disk_total_bytes: _Optional[int] = ..., disk_free_bytes: _Optional[int] = ..., rss_bytes: _Optional[int] = ..., memory_budget_bytes: _Optional[int] = ..., memory_in_use_bytes: _Optional[int] = ...) -> None: ...

class WorkerState(_message.Message):
    __slots__ = ("name", "state", "runs", "errors", "last_error", "last_error_s", "last_run_s")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_S_FIELD_NUMBER: _ClassVar[int]
    LAST_RUN_S_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: str
    runs: int
    errors: int
    last_error: str
    last_error_s: float
    last_run_s: float
    def __init__(self, name: _Optional[str] = ..., state: _Optional[str] = ..., runs: _Optional[int] = ..., errors: _Optional[int] = ..., last_error: _Optional[str] = ..., last_error_s: _Optional[float] = ..., last_run_s: _Optional[float] = ...) -> None: ...

class Chunk(_message.Message):
    __slots__ = ("chunk_id", "data", "xxh3")
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    XXH3_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    data: bytes
    xxh3: int
    def __init__(self, chunk_id: _Optional[str] = ..., data: _Optional[bytes] = ..., xxh3: _Optional[int] = ...) -> None: ...

class ChunkIds(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ids: _Optional[_Iterable[str]] = ...) -> None: ...

class PutChunksReply(_message.Message):
    __slots__ = ("stored",)
    STORED_FIELD_NUMBER: _ClassVar[int]
    stored: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, stored: _Optional[_Iterable[str]] = ...) -> None: ...
