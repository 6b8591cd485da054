"""S3's XML documents of multipart uploads, built and parsed as `xmldoc` builds and parses the others
(ElementTree for answers; defusedxml, no DTD and no entities, for the CompleteMultipartUpload body).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from peer.s3.conditions import iso_time
from peer.s3.xmldoc import Owner, _add, _children, _malformed, _owner, _parse, _root, _text, render

__all__ = [
    "PartEntry",
    "UploadEntry",
    "complete_result",
    "copy_part_result",
    "initiate_result",
    "list_parts",
    "list_uploads",
    "parse_complete",
]

MAX_COMPLETE_PARTS = 10_000


@dataclass(frozen=True)
class PartEntry:
    number: int
    last_modified: float
    etag: str
    size: int
    checksums: Mapping[str, str]


@dataclass(frozen=True)
class UploadEntry:
    key: str
    upload_id: str
    initiated: float


def initiate_result(bucket: str, key: str, upload_id: str) -> bytes:
    root = _root("InitiateMultipartUploadResult")
    _add(root, "Bucket", bucket)
    _add(root, "Key", key)
    _add(root, "UploadId", upload_id)
    return render(root)


def copy_part_result(etag: str, last_modified: float) -> bytes:
    root = _root("CopyPartResult")
    _add(root, "LastModified", iso_time(last_modified))
    _add(root, "ETag", f'"{etag}"')
    return render(root)


def complete_result(location: str, bucket: str, key: str, etag: str) -> bytes:
    root = _root("CompleteMultipartUploadResult")
    _add(root, "Location", location)
    _add(root, "Bucket", bucket)
    _add(root, "Key", key)
    _add(root, "ETag", f'"{etag}"')
    return render(root)


def list_parts(bucket: str, key: str, upload_id: str, owner: Owner, *, marker: int, max_parts: int,
               parts: Sequence[PartEntry], truncated: bool) -> bytes:
    root = _root("ListPartsResult")
    _add(root, "Bucket", bucket)
    _add(root, "Key", key)
    _add(root, "UploadId", upload_id)
    _add(root, "PartNumberMarker", str(marker))
    _add(root, "NextPartNumberMarker", str(parts[-1].number if parts else marker))
    _add(root, "MaxParts", str(max_parts))
    _add(root, "IsTruncated", "true" if truncated else "false")
    for part in parts:
        element = _add(root, "Part")
        _add(element, "PartNumber", str(part.number))
        _add(element, "LastModified", iso_time(part.last_modified))
        _add(element, "ETag", f'"{part.etag}"')
        _add(element, "Size", str(part.size))
        for algorithm, value in sorted(part.checksums.items()):
            _add(element, "Checksum" + algorithm.upper(), value)
    _owner(root, owner, "Initiator")
    _owner(root, owner)
    _add(root, "StorageClass", "STANDARD")
    return render(root)


def list_uploads(bucket: str, owner: Owner, *, prefix: str, delimiter: str, key_marker: str,
                 upload_id_marker: str, max_uploads: int, uploads: Sequence[UploadEntry],
                 common_prefixes: Sequence[str], truncated: bool, next_key_marker: str,
                 next_upload_id_marker: str, url_encoded: bool) -> bytes:
    def encoded(value: str) -> str:
        return quote(value, safe="/") if url_encoded else value

    root = _root("ListMultipartUploadsResult")
    _add(root, "Bucket", bucket)
    _add(root, "KeyMarker", encoded(key_marker))
    _add(root, "UploadIdMarker", upload_id_marker)
    if truncated:
        _add(root, "NextKeyMarker", encoded(next_key_marker))
        _add(root, "NextUploadIdMarker", next_upload_id_marker)
    if prefix:
        _add(root, "Prefix", encoded(prefix))
    if delimiter:
        _add(root, "Delimiter", encoded(delimiter))
    _add(root, "MaxUploads", str(max_uploads))
    if url_encoded:
        _add(root, "EncodingType", "url")
    _add(root, "IsTruncated", "true" if truncated else "false")
    for upload in uploads:
        element = _add(root, "Upload")
        _add(element, "Key", encoded(upload.key))
        _add(element, "UploadId", upload.upload_id)
        _owner(element, owner, "Initiator")
        _owner(element, owner)
        _add(element, "StorageClass", "STANDARD")
        _add(element, "Initiated", iso_time(upload.initiated))
    for common in common_prefixes:
        _add(_add(root, "CommonPrefixes"), "Prefix", encoded(common))
    return render(root)


def parse_complete(body: bytes) -> list[tuple[int, str]]:
    """The (part number, ETag) pairs of a CompleteMultipartUpload document, in the order given: 1 to
    10,000 parts, each with a PartNumber and an ETag (checksum elements are accepted and not needed)."""
    root = _parse(body, "CompleteMultipartUpload")
    parts: list[tuple[int, str]] = []
    for element in _children(root, "Part"):
        number = (_text(element, "PartNumber") or "").strip()
        etag = _text(element, "ETag")
        if not number.isdigit() or len(number) > 6 or etag is None:
            raise _malformed()
        parts.append((int(number), etag))
    if not 1 <= len(parts) <= MAX_COMPLETE_PARTS:
        raise _malformed()
    return parts
