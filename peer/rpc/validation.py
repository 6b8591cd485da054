"""Protobuf references to domain references: which file (a name or an id) and which version a request names.

Only the shape is checked here (a FileRef must set one of its fields); FileService applies the rules
on names and ids themselves (peer.files.rules), the same for every edge.
"""

from __future__ import annotations

from peer.errors import InvalidRequest
from peer.metadata.store import FileRefSpec, VersionSpec
from proto import dfs_pb2 as pb

__all__ = ["file_ref", "version_spec"]


def file_ref(msg: pb.FileRef) -> FileRefSpec:
    which = msg.WhichOneof("ref")
    if which == "name":
        return FileRefSpec(name=msg.name)
    if which == "file_id":
        return FileRefSpec(file_id=msg.file_id)
    raise InvalidRequest("a file name or file id is required")


def version_spec(msg: pb.VersionSelector) -> VersionSpec:
    """Neither a number nor an id selects the latest version."""
    which = msg.WhichOneof("selector")
    if which == "number":
        return VersionSpec(number=msg.number)
    if which == "version_id":
        return VersionSpec(version_id=msg.version_id)
    return VersionSpec()
