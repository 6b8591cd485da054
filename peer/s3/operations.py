"""Which S3 operation a request is, and the role it needs: from its method, bucket, key and query.

S3 names an operation by the method and by a "sub-resource" in the query (`?versioning`, `?acl`,
`?uploads`...). The query's other names are parameters of an operation (`prefix`, `versionId`, the
presigned `X-Amz-*`...) and never change which one it is. A request this table does not serve is
still named (for the log line and the `NotImplemented` answer) and still authenticated first.

Roles: read for every GET, HEAD and listing; write for PUT and DELETE of objects (and DeleteObjects);
admin for what changes a bucket itself (create, delete, versioning).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

READ, WRITE, ADMIN = "read", "write", "admin"

PARAMETERS = frozenset({
    "continuation-token", "delimiter", "encoding-type", "fetch-owner", "list-type", "marker", "max-keys",
    "prefix", "start-after", "versionId", "x-id",
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
}

# Names of operations not served yet, for the log line and the NotImplemented message.
_NOT_YET: dict[tuple[str, str, str], str] = {
    ("bucket", "GET", "versions"): "ListObjectVersions",
    ("bucket", "GET", "uploads"): "ListMultipartUploads",
    ("object", "POST", "uploads"): "CreateMultipartUpload",
    ("object", "PUT", "uploadId"): "UploadPart",
    ("object", "GET", "uploadId"): "ListParts",
    ("object", "POST", "uploadId"): "CompleteMultipartUpload",
    ("object", "DELETE", "uploadId"): "AbortMultipartUpload",
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
        return Operation("CopyObject", WRITE, implemented=False)
    found = _TABLE.get((level, method, sub))
    if found is not None:
        return found
    name = _NOT_YET.get((level, method, sub)) or " ".join(filter(None, (method, level, sub and f"?{sub}")))
    return Operation(name, READ, implemented=False)
