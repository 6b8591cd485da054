"""Bucket operations and listings: ListBuckets, Create/Head/DeleteBucket, GetBucketLocation,
Get/PutBucketVersioning, GetBucketAcl, ListObjects (v1 and v2) and DeleteObjects.

A listing is one `FileService.list_files` page under the prefix `BUCKET/` + the client's prefix,
with the bucket's part cut off every key and common prefix: the store pages by name (code point
order, which is UTF-8 binary order) and resumes after the last key of a page, file or common prefix,
so no page size drops or repeats a key. The continuation token is the store's page token; v1's
marker and v2's start-after resume after the key they name (after its whole common prefix when it
falls in one, so a NextMarker that is a common prefix continues past it).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from peer.errors import BucketExists, DfsError
from peer.http.s3.bodies import read_document
from peer.http.s3.call import S3Call, S3Services
from peer.http.s3.errors import s3_error_of
from peer.http.s3.versions import delete_key
from peer.metadata.store import ListPage
from peer.s3 import S3Error, xmldoc
from peer.s3.names import bucket_prefix, check_bucket_name, key_of, object_name
from peer.s3.objectmeta import checksum_algorithms, etag_of

__all__ = [
    "create_bucket", "delete_bucket", "delete_objects", "get_bucket_acl", "get_bucket_location",
    "get_bucket_versioning", "head_bucket", "list_buckets", "list_objects", "list_objects_v2",
    "put_bucket_versioning",
]

REGION = "us-east-1"
"""The region every bucket reports: clients sign for any region, and this one needs no LocationConstraint."""
MAX_KEYS = 1000
DELETE_CONCURRENCY = 16


def _xml(body: bytes, status: int = 200) -> web.Response:
    return web.Response(status=status, body=body, content_type=xmldoc.CONTENT_TYPE)


async def list_buckets(services: S3Services, call: S3Call) -> web.StreamResponse:
    records = await services.buckets.list()
    return _xml(xmldoc.list_buckets(services.owner, [(r.name, r.created_at) for r in records]))


async def create_bucket(services: S3Services, call: S3Call) -> web.StreamResponse:
    check_bucket_name(call.bucket)
    if (call.header("x-amz-bucket-object-lock-enabled") or "").lower() == "true":
        raise S3Error("NotImplemented", "Object Lock is not implemented.")
    document = await read_document(call.request, call.auth, call.head, services.idle_s, xmldoc.MAX_REQUEST_XML)
    xmldoc.parse_create_bucket(document)  # any LocationConstraint is accepted: the peers are the region
    try:
        await services.buckets.create(call.bucket)
    except BucketExists as exc:
        raise S3Error("BucketAlreadyOwnedByYou", "Your previous request to create the named bucket succeeded "
                      "and you already own it.", extra={"BucketName": call.bucket}) from exc
    return web.Response(status=200, headers={"Location": f"/{call.bucket}"})


async def head_bucket(services: S3Services, call: S3Call) -> web.StreamResponse:
    await services.buckets.get(call.bucket)
    return web.Response(status=200, headers={"x-amz-bucket-region": REGION})


async def delete_bucket(services: S3Services, call: S3Call) -> web.StreamResponse:
    await services.buckets.delete(call.bucket)
    return web.Response(status=204)


async def get_bucket_location(services: S3Services, call: S3Call) -> web.StreamResponse:
    await services.buckets.get(call.bucket)
    return _xml(xmldoc.location(""))  # "" is us-east-1 in S3's answer


async def get_bucket_versioning(services: S3Services, call: S3Call) -> web.StreamResponse:
    record = await services.buckets.get(call.bucket)
    return _xml(xmldoc.versioning(record.versioning))


async def put_bucket_versioning(services: S3Services, call: S3Call) -> web.StreamResponse:
    await services.buckets.get(call.bucket)
    document = await read_document(call.request, call.auth, call.head, services.idle_s, xmldoc.MAX_REQUEST_XML)
    await services.buckets.set_versioning(call.bucket, xmldoc.parse_versioning(document))
    return web.Response(status=200)


async def get_bucket_acl(services: S3Services, call: S3Call) -> web.StreamResponse:
    await services.buckets.get(call.bucket)
    return _xml(xmldoc.access_control_policy(services.owner))


# -------------------------------------------------------------------------------------- listings


async def list_objects_v2(services: S3Services, call: S3Call) -> web.StreamResponse:
    token = call.query.get("continuation-token", "")
    start_after = call.query.get("start-after", "")
    page, listing = await _list(services, call, token, "" if token else start_after)
    owner = services.owner if call.query.get("fetch-owner", "").lower() == "true" else None
    return _xml(xmldoc.list_objects_v2(listing, owner=owner, continuation_token=token,
                                       next_token=page.next_token, start_after=start_after))


async def list_objects(services: S3Services, call: S3Call) -> web.StreamResponse:
    marker = call.query.get("marker", "")
    page, listing = await _list(services, call, "", marker)
    next_marker = ""
    if page.next_token:  # the last key of the page, file or common prefix, resumes the listing
        last = [*(entry.key for entry in listing.objects), *listing.common_prefixes]
        next_marker = max(last) if last else ""
    return _xml(xmldoc.list_objects_v1(listing, owner=services.owner, marker=marker, next_marker=next_marker))


async def _list(services: S3Services, call: S3Call, token: str, start_after: str) -> tuple[ListPage, xmldoc.Listing]:
    await services.buckets.get(call.bucket)
    prefix = call.query.get("prefix", "")
    delimiter = call.query.get("delimiter", "")
    encoding = call.query.get("encoding-type")
    if encoding is not None and encoding != "url":
        raise S3Error("InvalidArgument", "Invalid Encoding Method specified in Request",
                      extra={"ArgumentName": "encoding-type", "ArgumentValue": encoding})
    max_keys = _max_keys(call.query.get("max-keys"))
    base = bucket_prefix(call.bucket)
    if max_keys == 0:
        page = ListPage(files=(), next_token="")
    else:
        page = await services.files.list_files(base + prefix, max_keys, token, delimiter,
                                               start_after=base + start_after if start_after else "")
    objects = [
        xmldoc.ObjectEntry(
            key=key_of(call.bucket, record.name), last_modified=record.created_at,
            etag=etag_of(record.metadata, record.sha256), size=record.size,
            checksum_algorithms=checksum_algorithms(record.metadata),
        )
        for record in page.files
    ]
    listing = xmldoc.Listing(
        bucket=call.bucket, prefix=prefix, delimiter=delimiter, max_keys=max_keys, objects=objects,
        common_prefixes=[key_of(call.bucket, p) for p in page.prefixes], truncated=bool(page.next_token),
        url_encoded=encoding == "url",
    )
    return page, listing


def _max_keys(value: str | None) -> int:
    if value is None:
        return MAX_KEYS
    if not value.strip().isdigit():
        raise S3Error("InvalidArgument", "max-keys must be an integer from 0 to 2147483647",
                      extra={"ArgumentName": "max-keys", "ArgumentValue": value})
    return min(int(value), MAX_KEYS)


# -------------------------------------------------------------------------------- DeleteObjects


async def delete_objects(services: S3Services, call: S3Call) -> web.StreamResponse:
    """Each key as DeleteObject deletes it (peer.http.s3.versions.delete_key): a delete marker in a
    versioned bucket, reported as DeleteMarker with its version id."""
    bucket = await services.buckets.get(call.bucket)
    document = await read_document(call.request, call.auth, call.head, services.idle_s, xmldoc.MAX_REQUEST_XML)
    quiet, objects = xmldoc.parse_delete(document)
    gate = asyncio.Semaphore(DELETE_CONCURRENCY)

    async def delete(key: str, version_id: str | None) -> str | tuple[str, str]:
        """The version id of the delete marker written or deleted ("" for none); else (code, message)."""
        async with gate:
            try:
                deletion = await delete_key(services.files, bucket.versioning, object_name(call.bucket, key),
                                            version_id)
            except S3Error as exc:
                return exc.code, exc.message
            except DfsError as exc:
                error = s3_error_of(exc)
                return error.code, error.message
            return (deletion.version_id or "") if deletion.delete_marker else ""

    outcomes = await asyncio.gather(*(delete(key, version_id) for key, version_id in objects))
    deleted = [(key, version_id, outcome or None) for (key, version_id), outcome in zip(objects, outcomes, strict=True)
               if isinstance(outcome, str) and not quiet]
    errors = [(key, version_id, *outcome) for (key, version_id), outcome in zip(objects, outcomes, strict=True)
              if not isinstance(outcome, str)]
    return _xml(xmldoc.delete_result(deleted, errors))
