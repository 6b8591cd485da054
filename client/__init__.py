"""Python SDK and `dfs` command line of the dfs file store: talk to any one peer of the mesh.

with DfsClient("127.0.0.1:50051") as dfs:
    result = dfs.upload("photo.jpg")
    data = dfs.read(result.version.file_id)
"""

from client.errors import (
    ClusterUnavailable,
    DfsClientError,
    IntegrityError,
    InvalidArgument,
    NotFoundError,
    PeerUnreachable,
    ServerError,
    from_rpc_error,
)
from client.models import ChunkPlacement, ClusterStatus, MemberStatus, PeerStats, UploadResult, VersionInfo
from client.refs import is_file_id
from client.sdk import DEFAULT_PEER, DfsClient
from client.streams import DownloadStream

__all__ = [
    "DEFAULT_PEER",
    "ChunkPlacement",
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
    "ServerError",
    "UploadResult",
    "VersionInfo",
    "from_rpc_error",
    "is_file_id",
]
