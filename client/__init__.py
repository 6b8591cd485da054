"""Python SDK and `dfs` command line of the dfs file store: talk to any one peer of the mesh.

from client import Client

with Client("127.0.0.1:50051") as dfs:
    result = dfs.upload("photo.jpg")                      # a path, bytes or a binary file object
    dfs.download(result.version.file_id, "copy.jpg")      # verified, then renamed into place
    for piece in dfs.download("photo.jpg"):               # each chunk verified before it is yielded
        ...
    for entry in dfs.ls("albums/"):                       # "albums/2024/" (a str) or a VersionInfo
        ...

On a secured cluster: Client(peer, tls_ca="certs/ca.crt", token="dfs_...") (or env DFS_TLS_CA, DFS_TOKEN).
A program that moves large files may call `client.tune_allocator()` once (see client/allocator.py).
`DfsClient` is the same class under its earlier name.

Names are imported on first use (PEP 562), so that `import client.cli` can configure grpc's logging
before grpc is first imported (see client/_grpc_logging.py).
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from client.allocator import tune_allocator
    from client.errors import (
        AuthenticationError,
        ClusterUnavailable,
        DfsClientError,
        IntegrityError,
        InvalidArgument,
        NotFoundError,
        PeerUnreachable,
        PermissionDeniedError,
        ServerError,
        from_rpc_error,
    )
    from client.models import (
        TOKEN_ROLES,
        BucketInfo,
        ChunkPlacement,
        ClusterStatus,
        MemberStatus,
        PeerStats,
        S3KeyInfo,
        TokenInfo,
        UploadResult,
        VersionInfo,
        WorkerStatus,
    )
    from client.refs import is_file_id
    from client.sdk import DEFAULT_PEER, Client, DfsClient
    from client.streams import DownloadStream

__all__ = [
    "DEFAULT_PEER",
    "TOKEN_ROLES",
    "AuthenticationError",
    "BucketInfo",
    "ChunkPlacement",
    "Client",
    "ClusterStatus",
    "ClusterUnavailable",
    "DfsClient",
    "DfsClientError",
    "DownloadStream",
    "IntegrityError",
    "InvalidArgument",
    "MemberStatus",
    "NotFoundError",
    "PeerStats",
    "PeerUnreachable",
    "PermissionDeniedError",
    "S3KeyInfo",
    "ServerError",
    "TokenInfo",
    "UploadResult",
    "VersionInfo",
    "WorkerStatus",
    "from_rpc_error",
    "is_file_id",
    "tune_allocator",
]

_HOMES = {
    "DEFAULT_PEER": "client.sdk",
    "Client": "client.sdk",
    "DfsClient": "client.sdk",
    "DownloadStream": "client.streams",
    "is_file_id": "client.refs",
    "tune_allocator": "client.allocator",
    **dict.fromkeys(
        ["AuthenticationError", "ClusterUnavailable", "DfsClientError", "IntegrityError", "InvalidArgument",
         "NotFoundError", "PeerUnreachable", "PermissionDeniedError", "ServerError", "from_rpc_error"],
        "client.errors",
    ),
    **dict.fromkeys(
        ["TOKEN_ROLES", "BucketInfo", "ChunkPlacement", "ClusterStatus", "MemberStatus", "PeerStats", "S3KeyInfo",
         "TokenInfo", "UploadResult", "VersionInfo", "WorkerStatus"],
        "client.models",
    ),
}  # fmt: skip


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
