"""One S3 request as the handlers see it, and what every handler may use.

The bucket and key are read from the raw request target (path style) or from the Host header and
the path (virtual-hosted style, under `--s3-domain`), percent-decoded once: the key is exactly the
bytes the client named, "+" included, never normalized ("a//b" and "a/./b" are keys of their own).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from aiohttp import web

from peer.files import FileService
from peer.files.buckets import BucketService
from peer.metadata.store import BucketRecord
from peer.ring.policy import InvalidPolicy, Policy
from peer.s3 import AuthResult, RequestHead, S3Error
from peer.s3.canonical import parse_query
from peer.s3.operations import Operation
from peer.s3.storageclass import requested_policy
from peer.s3.xmldoc import Owner

__all__ = ["S3Call", "S3Services", "Target", "parse_target", "storage_policy"]


@dataclass(frozen=True)
class Target:
    bucket: str
    key: str
    query: Mapping[str, str]
    """Each parameter's first value, decoded; names as sent."""


def parse_target(head: RequestHead, domain: str) -> Target:
    """The bucket, key and parameters a request names."""
    query: dict[str, str] = {}
    for name, value in parse_query(head.raw_query):
        query.setdefault(name, value)
    path = _decode(head.raw_path)
    if not path.startswith("/"):
        raise S3Error("InvalidRequest", "The request target must be an absolute path.")
    host_bucket = _bucket_of_host(head.header("host") or "", domain)
    if host_bucket is not None:
        return Target(host_bucket, path[1:], query)
    bucket, _, key = path[1:].partition("/")
    return Target(bucket, key, query)


def _decode(raw_path: str) -> str:
    return unquote_to_bytes(raw_path).decode("utf-8", errors="surrogateescape")


def _bucket_of_host(host: str, domain: str) -> str | None:
    """The bucket of a virtual-hosted request (`bucket.DOMAIN[:port]`); None for path style."""
    if not domain:
        return None
    name = host.strip().lower()
    if name.startswith("["):  # an IPv6 literal is never a bucket's host
        return None
    name = name.rsplit(":", 1)[0] if ":" in name else name
    suffix = "." + domain.lower().strip(".")
    return name[: -len(suffix)] if name.endswith(suffix) and len(name) > len(suffix) else None


@dataclass(frozen=True)
class S3Call:
    request: web.Request
    head: RequestHead
    target: Target
    operation: Operation
    auth: AuthResult
    request_id: str

    @property
    def bucket(self) -> str:
        return self.target.bucket

    @property
    def key(self) -> str:
        return self.target.key

    @property
    def query(self) -> Mapping[str, str]:
        return self.target.query

    def header(self, name: str) -> str | None:
        return self.head.header(name)


def storage_policy(call: S3Call, bucket: BucketRecord) -> str:
    """The redundancy policy of the object `call` writes: the one its `x-amz-storage-class` maps to
    (peer/s3/storageclass.py), else the bucket's default, else "" (the cluster's). A class whose
    policy this peer cannot store is InvalidStorageClass, as S3 answers a class it does not offer."""
    header = call.header("x-amz-storage-class")
    policy = requested_policy(header)
    if policy is None:
        return bucket.policy
    try:
        Policy.parse(policy)
    except InvalidPolicy as exc:
        raise S3Error("InvalidStorageClass", f"The storage class {(header or '').strip()} is stored as {policy}, "
                      f"which this cluster does not offer: {exc}") from exc
    return policy


@dataclass(frozen=True)
class S3Services:
    """The services behind the S3 API and what its answers need besides."""

    files: FileService
    buckets: BucketService
    owner: Owner
    idle_s: float
    """How long a body may stay silent, or a reader may not read, before the call is ended."""
