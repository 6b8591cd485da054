"""Buckets as name spaces of the product's file names: S3's bucket naming rules and the key mapping.

Object KEY in bucket B is the file named `B/KEY`, so a file uploaded with `dfs upload --name B/KEY`
is that object and an object PUT over S3 is that file. A bucket name holds no "/", so the first "/"
of a file name always separates the bucket from the key, and the files of one bucket are exactly the
names that start with `B/`. Bucket names follow S3's rules for general purpose buckets, so a name
that works here also works against S3, in path style and in virtual-hosted style alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote_to_bytes

from peer.s3.errors import S3Error

MIN_BUCKET_CHARS = 3
MAX_BUCKET_CHARS = 63
MAX_KEY_BYTES = 1024
"""S3's limit on a key and the product's on a file name (`B/KEY`): a key has 1024 bytes less the
bucket's name and its "/"."""

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]*[a-z0-9]")
_IP_ADDRESS = re.compile(r"\d{1,3}(\.\d{1,3}){3}")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def bucket_name_problem(name: str) -> str | None:
    """Why `name` is not a valid bucket name; None when it is."""
    if not MIN_BUCKET_CHARS <= len(name) <= MAX_BUCKET_CHARS:
        return f"a bucket name has {MIN_BUCKET_CHARS} to {MAX_BUCKET_CHARS} characters"
    if not _BUCKET.fullmatch(name):
        return ("a bucket name holds lower-case letters, digits, dots and hyphens, and begins and ends "
                "with a letter or digit")
    if ".." in name:
        return "a bucket name has no two adjacent dots"
    if _IP_ADDRESS.fullmatch(name):
        return "a bucket name is not formatted as an IP address"
    if name.startswith(_RESERVED_PREFIXES) or name.endswith(_RESERVED_SUFFIXES):
        return "a bucket name does not use a prefix or suffix S3 reserves"
    return None


def check_bucket_name(name: str) -> str:
    problem = bucket_name_problem(name)
    if problem is not None:
        raise S3Error("InvalidBucketName", f"The specified bucket is not valid: {problem}.",
                      extra={"BucketName": name})
    return name


def bucket_prefix(bucket: str) -> str:
    """The beginning every file name of the bucket's objects shares."""
    return bucket + "/"


def object_name(bucket: str, key: str) -> str:
    """The file name of object `key` in `bucket`; KeyTooLongError past S3's key limit."""
    if not key:
        raise S3Error("InvalidArgument", "An object key must not be empty.")
    prefix = bucket_prefix(bucket)
    room = MAX_KEY_BYTES - len(prefix.encode())
    if len(key.encode("utf-8", "surrogatepass")) > room:
        raise S3Error("KeyTooLongError", "Your key is too long.", extra={"MaxSizeAllowed": str(room)})
    return prefix + key


@dataclass(frozen=True)
class CopySource:
    """What `x-amz-copy-source` names: a bucket, a key and optionally one of its versions."""

    bucket: str
    key: str
    version_id: str | None = None


def parse_copy_source(value: str) -> CopySource:
    """`x-amz-copy-source` (`[/]BUCKET/KEY[?versionId=ID]`, the path URL-encoded) as S3 reads it: the
    query is split off before the path is percent-decoded once, so an encoded `?` stays in the key."""
    path, _, query = value.strip().partition("?")
    version_id = None
    for name, given in parse_qsl(query, keep_blank_values=True):
        if name == "versionId":
            version_id = given
    decoded = unquote_to_bytes(path).decode("utf-8", errors="surrogateescape")
    bucket, slash, key = decoded.removeprefix("/").partition("/")
    if not bucket or not slash or not key or version_id == "":
        raise S3Error("InvalidArgument", "Copy Source must mention the source bucket and key: sourcebucket/sourcekey.",
                      extra={"ArgumentName": "x-amz-copy-source", "ArgumentValue": value[:1100]})
    return CopySource(bucket, key, version_id)


def key_of(bucket: str, name: str) -> str:
    """The object key of a file name inside `bucket` (the inverse of `object_name`)."""
    prefix = bucket_prefix(bucket)
    if not name.startswith(prefix):
        raise ValueError(f"{name!r} is not in bucket {bucket!r}")
    return name[len(prefix):]
