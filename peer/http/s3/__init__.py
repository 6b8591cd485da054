"""The S3-compatible API: an HTTP edge that turns S3 requests into file and bucket service calls.

It owns only S3's concerns (addressing, SigV4 and roles, XML, error codes, headers); every byte
goes through `FileService` like a gRPC upload or download, so objects are the same files `dfs` sees.
"""

from peer.http.s3.app import s3_app
from peer.http.s3.auth import KeyLookup

__all__ = ["KeyLookup", "s3_app"]
