"""The file service every client edge calls: one set of rules, limits and health checks for all of them.

No wire format is known here (no grpc, aiohttp or protobuf); an edge converts its requests to these
calls and maps the DfsError they raise to its own status once.
"""

from peer.files.cluster import ClusterSnapshot, MemberSnapshot
from peer.files.limits import ClientLimits
from peer.files.proof import Trailer, UploadProof
from peer.files.service import FileService, SmallRead

__all__ = [
    "ClientLimits",
    "ClusterSnapshot",
    "FileService",
    "MemberSnapshot",
    "SmallRead",
    "Trailer",
    "UploadProof",
]
