"""S3 versioning over the product's versions: version ids, delete markers and ListObjectVersions.

Every PUT stores a new version of the file whatever the bucket's versioning state; the state decides
what S3 sees of it:
- never configured: a DeleteObject without a version id deletes the file with every version;
- Enabled: a DeleteObject without a version id writes a delete marker, a version without content
  that makes the key read as deleted until the marker itself is deleted;
- Suspended: a PUT writes the key's null version (version id `null`), replacing the previous null
  version, and a DeleteObject writes a null delete marker, which replaces it too.
Deleting by version id removes that version only, whatever the state; deleting a marker restores the
version below it. `null` names the key's null version wherever S3 takes a version id.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from peer.errors import NotFound
from peer.files import FileService
from peer.http.s3.call import S3Call, S3Services
from peer.metadata.store import FileRefSpec, VersionRecord, VersionSpec
from peer.s3 import S3Error, xmldoc
from peer.s3.names import bucket_prefix, key_of, object_name
from peer.s3.objectmeta import etag_of

__all__ = [
    "ENABLED", "NULL_VERSION", "SUSPENDED", "Deletion", "delete_key", "list_object_versions", "s3_version_id",
    "version_spec",
]

NULL_VERSION = "null"
ENABLED, SUSPENDED = "Enabled", "Suspended"
MAX_KEYS = 1000


def s3_version_id(record: VersionRecord) -> str:
    """The version id S3 clients see: `null` for a null version, else the product's own."""
    return NULL_VERSION if record.null_version else record.version_id


async def version_spec(files: FileService, name: str, version_id: str | None) -> VersionSpec:
    """The version a `versionId` names (None: the latest); `null` is the file's null version
    (VersionNotFound when it has none)."""
    if version_id is None:
        return VersionSpec()
    if version_id == NULL_VERSION:
        record = await files.null_version(FileRefSpec(name=name))
        return VersionSpec(version_id=record.version_id)
    return VersionSpec(version_id=version_id)


@dataclass(frozen=True)
class Deletion:
    """What a DeleteObject did, as its answer tells it."""

    version_id: str | None
    """The version the request named (`x-amz-version-id`), or the delete marker it wrote."""
    delete_marker: bool
    """A delete marker was written, or the version deleted was one."""


async def delete_key(files: FileService, versioning: str, name: str, version_id: str | None) -> Deletion:
    """DeleteObject of the file `name` in a bucket whose versioning state is `versioning`; deleting
    what does not exist succeeds, as in S3."""
    ref = FileRefSpec(name=name)
    if version_id is None:
        if versioning in (ENABLED, SUSPENDED):
            marker = await files.delete_marker(name, null_version=versioning == SUSPENDED)
            return Deletion(s3_version_id(marker), True)
        try:
            await files.delete(ref)
        except NotFound:
            pass
        return Deletion(None, False)
    try:
        deleted = await files.delete(ref, await version_spec(files, name, version_id))
    except NotFound:
        return Deletion(version_id, False)
    return Deletion(version_id, any(record.delete_marker for record in deleted))


def deletion_headers(deletion: Deletion) -> dict[str, str]:
    headers = {}
    if deletion.version_id is not None:
        headers["x-amz-version-id"] = deletion.version_id
    if deletion.delete_marker:
        headers["x-amz-delete-marker"] = "true"
    return headers


async def list_object_versions(services: S3Services, call: S3Call) -> web.StreamResponse:
    await services.buckets.get(call.bucket)
    prefix = call.query.get("prefix", "")
    delimiter = call.query.get("delimiter", "")
    encoding = call.query.get("encoding-type")
    if encoding is not None and encoding != "url":
        raise S3Error("InvalidArgument", "Invalid Encoding Method specified in Request",
                      extra={"ArgumentName": "encoding-type", "ArgumentValue": encoding})
    max_keys = _max_keys(call.query.get("max-keys"))
    key_marker = call.query.get("key-marker", "")
    version_marker = call.query.get("version-id-marker", "")
    if version_marker and not key_marker:
        raise S3Error("InvalidArgument", "A version-id marker cannot be specified without a key marker.",
                      extra={"ArgumentName": "version-id-marker", "ArgumentValue": version_marker})
    base = bucket_prefix(call.bucket)
    versions: list[xmldoc.VersionEntry] = []
    prefixes: list[str] = []
    next_key = next_version = ""
    if max_keys > 0:
        after_name = object_name(call.bucket, key_marker) if key_marker else ""
        after_version = version_marker
        if version_marker == NULL_VERSION:
            try:
                after_version = (await services.files.null_version(FileRefSpec(name=after_name))).version_id
            except NotFound as exc:
                raise S3Error("InvalidArgument", "Invalid version id specified",
                              extra={"ArgumentName": "version-id-marker", "ArgumentValue": version_marker}) from exc
        page = await services.files.list_all_versions(base + prefix, max_keys, after_name, after_version, delimiter)
        versions = [_entry(call.bucket, record) for record in page.versions]
        prefixes = [key_of(call.bucket, p) for p in page.prefixes]
        if page.next_name:
            next_key = key_of(call.bucket, page.next_name)
            last = page.versions[-1] if page.versions and page.versions[-1].name == page.next_name else None
            next_version = page.next_version_id if last is None else s3_version_id(last)
    listing = xmldoc.VersionListing(
        bucket=call.bucket, prefix=prefix, delimiter=delimiter, max_keys=max_keys, key_marker=key_marker,
        version_id_marker=version_marker, versions=versions, common_prefixes=prefixes, next_key_marker=next_key,
        next_version_id_marker=next_version, url_encoded=encoding == "url",
    )
    return web.Response(body=xmldoc.list_versions(listing, services.owner), content_type=xmldoc.CONTENT_TYPE)


def _entry(bucket: str, record: VersionRecord) -> xmldoc.VersionEntry:
    return xmldoc.VersionEntry(
        key=key_of(bucket, record.name), version_id=s3_version_id(record), latest=record.latest,
        last_modified=record.created_at, delete_marker=record.delete_marker,
        etag="" if record.delete_marker else etag_of(record.metadata, record.sha256), size=record.size,
    )


def _max_keys(value: str | None) -> int:
    if value is None:
        return MAX_KEYS
    if not value.strip().isdigit():
        raise S3Error("InvalidArgument", "max-keys must be an integer from 0 to 2147483647",
                      extra={"ArgumentName": "max-keys", "ArgumentValue": value})
    return min(int(value), MAX_KEYS)
