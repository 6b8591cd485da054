"""Which S3 operation a request is, and the role it needs: from its method, bucket, key and query.

S3 names an operation by the method and by a "sub-resource" in the query (`?versioning`, `?acl`,
`?uploads`...). The query's other names are parameters of an operation (`prefix`, `versionId`, the
presigned `X-Amz-*`...) and never change which one it is. A request this table does not serve is
still named (for the log line and the `NotImplemented` answer) and still authenticated first.

Roles: read for every GET, HEAD and listing; write for PUT and DELETE of objects (and DeleteObjects)
and for the multipart operations that change an upload; admin for what changes a bucket itself
(create, delete, versioning).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

READ, WRITE, ADMIN = "read", "write", "admin"

PARAMETERS = frozenset({
    "continuation-token", "delimiter", "encoding-type", "fetch-owner", "key-marker", "list-type", "marker",
    "max-keys", "prefix", "start-after", "version-id-marker", "versionId", "x-id",
    "max-parts", "max-uploads", "part-number-marker", "upload-id-marker",  # ListParts, ListMultipartUploads
    "response-cache-control", "response-content-disposition", "response-content-encoding",
    "response-content-language", "response-content-type", "response-expires",
    "AWSAccessKeyId", "Expires", "Signature",  # a SigV2 presigned URL's: refused by authentication, not here
})
"""Query names that are parameters of an operation, not sub-resources (besides the presigned X-Amz-*)."""


@dataclass(frozen=True)
class Operation:
    name: str
    role: str
    implemented: bool = True


# (level, method, sub-resource) -> operation; level is "service", "bucket" or "object".
_TABLE: dict[tuple[str, str, str], Operation] = {
    ("service", "GET", ""): Operation("ListBuckets", READ),
    ("bucket", "GET", ""): Operation("ListObjects", READ),
    ("bucket", "GET", "location"): Operation("GetBucketLocation", READ),
    ("bucket", "GET", "versioning"): Operation("GetBucketVersioning", READ),
    ("bucket", "GET", "acl"): Operation("GetBucketAcl", READ),
    ("bucket", "GET", "versions"): Operation("ListObjectVersions", READ),
    ("bucket", "HEAD", ""): Operation("HeadBucket", READ),
    ("bucket", "PUT", ""): Operation("CreateBucket", ADMIN),
    ("bucket", "PUT", "versioning"): Operation("PutBucketVersioning", ADMIN),
    ("bucket", "DELETE", ""): Operation("DeleteBucket", ADMIN),
    ("bucket", "POST", "delete"): Operation("DeleteObjects", WRITE),
    ("object", "GET", ""): Operation("GetObject", READ),
    ("object", "GET", "acl"): Operation("GetObjectAcl", READ),
    ("object", "HEAD", ""): Operation("HeadObject", READ),
    ("object", "PUT", ""): Operation("PutObject", WRITE),
    ("object", "DELETE", ""): Operation("DeleteObject", WRITE),
    ("bucket", "GET", "uploads"): Operation("ListMultipartUploads", READ),
    ("object", "POST", "uploads"): Operation("CreateMultipartUpload", WRITE),
    ("object", "PUT", "uploadId"): Operation("UploadPart", WRITE),
    ("object", "GET", "uploadId"): Operation("ListParts", READ),
    ("object", "POST", "uploadId"): Operation("CompleteMultipartUpload", WRITE),
    ("object", "DELETE", "uploadId"): Operation("AbortMultipartUpload", WRITE),
}

# Names of operations not served yet, for the log line and the NotImplemented message.
_NOT_YET: dict[tuple[str, str, str], str] = {
    ("object", "GET", "partNumber"): "GetObject (partNumber)",
    ("object", "HEAD", "partNumber"): "HeadObject (partNumber)",
}


def resolve(method: str, bucket: str, key: str, query: Mapping[str, str], copy_source: bool) -> Operation:
    """The operation of a request: `query` its parameters (names as sent), `copy_source` whether it
    carries x-amz-copy-source."""
    level = "service" if not bucket else "object" if key else "bucket"
    subresources = sorted(name for name in query if name not in PARAMETERS and not name.startswith("X-Amz-"))
    if "uploadId" in subresources and "partNumber" in subresources:
        subresources.remove("partNumber")
    sub = subresources[0] if len(subresources) == 1 else "" if not subresources else "+".join(subresources)
    if level == "bucket" and method == "GET" and not sub and query.get("list-type") == "2":
        return Operation("ListObjectsV2", READ)
    if level == "object" and method == "PUT" and not sub and copy_source:
        return Operation("CopyObject", WRITE)
    if level == "object" and method == "PUT" and sub == "uploadId" and copy_source:
        return Operation("UploadPartCopy", WRITE)
    found = _TABLE.get((level, method, sub))
    if found is not None:
        return found
    name = _NOT_YET.get((level, method, sub)) or " ".join(filter(None, (method, level, sub and f"?{sub}")))
    return Operation(name, READ, implemented=False)
