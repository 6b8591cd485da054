"""S3's XML documents: the answers the peer writes and the request bodies it reads.

Answers are built with ElementTree, which escapes every value. Request bodies come from anyone and
are parsed with defusedxml: a DTD, an entity declaration or an external reference is refused, so an
entity expansion bomb or an external entity cannot make the parser allocate without bound or reach a
file. Anything unreadable, or not the document the operation expects, is `MalformedXML`. Element
names are read without their namespace: clients send S3's namespace, or none.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import quote

import defusedxml
import defusedxml.ElementTree

from peer.s3.conditions import iso_time
from peer.s3.errors import S3Error

NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
CONTENT_TYPE = "application/xml"
MAX_REQUEST_XML = 2 * 1024 * 1024
"""Largest request document read: a Delete of 1000 keys of 1024 bytes fits, with room to spare."""
MAX_DELETE_KEYS = 1000
VERSIONING_STATES = ("Enabled", "Suspended")
# Characters XML 1.0 cannot carry at all (escaping does not help); a message quoting a client's bad
# input could hold one, and one such character would make the whole answer unreadable.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True)
class Owner:
    id: str
    display_name: str


@dataclass(frozen=True)
class ObjectEntry:
    """One object of a listing."""

    key: str
    last_modified: float
    etag: str
    size: int
    checksum_algorithms: tuple[str, ...] = ()


@dataclass(frozen=True)
class Listing:
    """One page of a listing, keys relative to the bucket, in UTF-8 binary order."""

    bucket: str
    prefix: str
    delimiter: str
    max_keys: int
    objects: Sequence[ObjectEntry]
    common_prefixes: Sequence[str]
    truncated: bool
    url_encoded: bool


def render(root: ET.Element) -> bytes:
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8", xml_declaration=False)


def _root(tag: str) -> ET.Element:
    return ET.Element(tag, xmlns=NAMESPACE)


def _add(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    child = ET.SubElement(parent, tag)
    if text is not None:
        child.text = _NOT_XML.sub("\ufffd", text)
    return child


def _owner(parent: ET.Element, owner: Owner, tag: str = "Owner") -> None:
    element = _add(parent, tag)
    _add(element, "ID", owner.id)
    _add(element, "DisplayName", owner.display_name)


def error_document(code: str, message: str, resource: str, request_id: str,
                   extra: Iterable[tuple[str, str]] = ()) -> bytes:
    root = ET.Element("Error")
    _add(root, "Code", code)
    _add(root, "Message", message)
    for name, value in extra:
        _add(root, name, value)
    _add(root, "Resource", resource)
    _add(root, "RequestId", request_id)
    return render(root)


def list_buckets(owner: Owner, buckets: Iterable[tuple[str, float]]) -> bytes:
    root = _root("ListAllMyBucketsResult")
    _owner(root, owner)
    container = _add(root, "Buckets")
    for name, created_at in buckets:
        bucket = _add(container, "Bucket")
        _add(bucket, "Name", name)
        _add(bucket, "CreationDate", iso_time(created_at))
    return render(root)


def location(constraint: str) -> bytes:
    root = _root("LocationConstraint")
    if constraint:
        root.text = constraint
    return render(root)


def versioning(state: str) -> bytes:
    root = _root("VersioningConfiguration")
    if state:
        _add(root, "Status", state)
    return render(root)


def access_control_policy(owner: Owner) -> bytes:
    """The one ACL there is: the owner has FULL_CONTROL."""
    root = _root("AccessControlPolicy")
    _owner(root, owner)
    grant = _add(_add(root, "AccessControlList"), "Grant")
    grantee = _add(grant, "Grantee")
    grantee.set("xmlns:xsi", "http://www.w3.org/2001/XMLSchema-instance")
    grantee.set("xsi:type", "CanonicalUser")
    _add(grantee, "ID", owner.id)
    _add(grantee, "DisplayName", owner.display_name)
    _add(grant, "Permission", "FULL_CONTROL")
    return render(root)


def list_objects_v2(page: Listing, *, owner: Owner | None, continuation_token: str, next_token: str,
                    start_after: str) -> bytes:
    root = _root("ListBucketResult")
    _listing_head(root, page)
    if continuation_token:
        _add(root, "ContinuationToken", continuation_token)
    if next_token:
        _add(root, "NextContinuationToken", next_token)
    if start_after:
        _add(root, "StartAfter", _encoded(page, start_after))
    _add(root, "KeyCount", str(len(page.objects) + len(page.common_prefixes)))
    _listing_body(root, page, owner)
    return render(root)


def list_objects_v1(page: Listing, *, owner: Owner, marker: str, next_marker: str) -> bytes:
    root = _root("ListBucketResult")
    _listing_head(root, page)
    _add(root, "Marker", _encoded(page, marker))
    if next_marker:
        _add(root, "NextMarker", _encoded(page, next_marker))
    _listing_body(root, page, owner)
    return render(root)


def _listing_head(root: ET.Element, page: Listing) -> None:
    _add(root, "Name", page.bucket)
    _add(root, "Prefix", _encoded(page, page.prefix))
    if page.delimiter:
        _add(root, "Delimiter", _encoded(page, page.delimiter))
    _add(root, "MaxKeys", str(page.max_keys))
    if page.url_encoded:
        _add(root, "EncodingType", "url")
    _add(root, "IsTruncated", "true" if page.truncated else "false")


def _listing_body(root: ET.Element, page: Listing, owner: Owner | None) -> None:
    for entry in page.objects:
        contents = _add(root, "Contents")
        _add(contents, "Key", _encoded(page, entry.key))
        _add(contents, "LastModified", iso_time(entry.last_modified))
        _add(contents, "ETag", f'"{entry.etag}"')
        for algorithm in entry.checksum_algorithms:
            _add(contents, "ChecksumAlgorithm", algorithm.upper())
        _add(contents, "Size", str(entry.size))
        if owner is not None:
            _owner(contents, owner)
        _add(contents, "StorageClass", "STANDARD")
    for prefix in page.common_prefixes:
        _add(_add(root, "CommonPrefixes"), "Prefix", _encoded(page, prefix))


def _encoded(page: Listing, value: str) -> str:
    """encoding-type=url: the value percent-encoded (UTF-8), "/" kept, as S3 encodes it."""
    return quote(value, safe="/") if page.url_encoded else value


def delete_result(deleted: Iterable[tuple[str, str | None, str | None]],
                  errors: Iterable[tuple[str, str | None, str, str]]) -> bytes:
    """`deleted`: (key, version id asked or None, version id of the delete marker written or deleted,
    or None); `errors`: (key, version id or None, code, message)."""
    root = _root("DeleteResult")
    for key, version_id, marker_version_id in deleted:
        element = _add(root, "Deleted")
        _add(element, "Key", key)
        if version_id:
            _add(element, "VersionId", version_id)
        if marker_version_id:
            _add(element, "DeleteMarker", "true")
            _add(element, "DeleteMarkerVersionId", marker_version_id)
    for key, version_id, code, message in errors:
        element = _add(root, "Error")
        _add(element, "Key", key)
        if version_id:
            _add(element, "VersionId", version_id)
        _add(element, "Code", code)
        _add(element, "Message", message)
    return render(root)


def copy_object_result(etag: str, last_modified: float) -> bytes:
    root = _root("CopyObjectResult")
    _add(root, "LastModified", iso_time(last_modified))
    _add(root, "ETag", f'"{etag}"')
    return render(root)


@dataclass(frozen=True)
class VersionEntry:
    """One version of a version listing: an object's version, or a delete marker (no ETag, no size)."""

    key: str
    version_id: str
    latest: bool
    last_modified: float
    delete_marker: bool
    etag: str = ""
    size: int = 0


@dataclass(frozen=True)
class VersionListing:
    """One page of ListObjectVersions, keys relative to the bucket."""

    bucket: str
    prefix: str
    delimiter: str
    max_keys: int
    key_marker: str
    version_id_marker: str
    versions: Sequence[VersionEntry]
    common_prefixes: Sequence[str]
    next_key_marker: str  # "" on the last page
    next_version_id_marker: str
    url_encoded: bool


def list_versions(page: VersionListing, owner: Owner) -> bytes:
    root = _root("ListVersionsResult")
    encoded = Listing(page.bucket, page.prefix, page.delimiter, page.max_keys, (), (), bool(page.next_key_marker),
                      page.url_encoded)
    _add(root, "Name", page.bucket)
    _add(root, "Prefix", _encoded(encoded, page.prefix))
    _add(root, "KeyMarker", _encoded(encoded, page.key_marker))
    _add(root, "VersionIdMarker", page.version_id_marker)
    if page.next_key_marker:
        _add(root, "NextKeyMarker", _encoded(encoded, page.next_key_marker))
        if page.next_version_id_marker:
            _add(root, "NextVersionIdMarker", page.next_version_id_marker)
    _add(root, "MaxKeys", str(page.max_keys))
    if page.delimiter:
        _add(root, "Delimiter", _encoded(encoded, page.delimiter))
    if page.url_encoded:
        _add(root, "EncodingType", "url")
    _add(root, "IsTruncated", "true" if page.next_key_marker else "false")
    for entry in page.versions:
        element = _add(root, "DeleteMarker" if entry.delete_marker else "Version")
        _add(element, "Key", _encoded(encoded, entry.key))
        _add(element, "VersionId", entry.version_id)
        _add(element, "IsLatest", "true" if entry.latest else "false")
        _add(element, "LastModified", iso_time(entry.last_modified))
        if not entry.delete_marker:
            _add(element, "ETag", f'"{entry.etag}"')
            _add(element, "Size", str(entry.size))
            _add(element, "StorageClass", "STANDARD")
        _owner(element, owner)
    for prefix in page.common_prefixes:
        _add(_add(root, "CommonPrefixes"), "Prefix", _encoded(encoded, prefix))
    return render(root)


# ---------------------------------------------------------------------------------- request bodies


def _parse(body: bytes, expected: str) -> ET.Element:
    try:
        root = defusedxml.ElementTree.fromstring(body, forbid_dtd=True)
    except (ET.ParseError, defusedxml.DefusedXmlException, ValueError) as exc:
        raise _malformed() from exc
    if _local(root.tag) != expected:
        raise _malformed()
    return root


def _malformed() -> S3Error:
    return S3Error("MalformedXML", "The XML you provided was not well-formed or did not validate against our "
                                   "published schema.")


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [child for child in element if _local(child.tag) == name]


def _text(element: ET.Element, name: str) -> str | None:
    found = _children(element, name)
    if len(found) > 1:
        raise _malformed()
    return None if not found else (found[0].text or "")


def parse_create_bucket(body: bytes) -> str:
    """The LocationConstraint of a CreateBucketConfiguration ("" for none, or no body)."""
    if not body.strip():
        return ""
    root = _parse(body, "CreateBucketConfiguration")
    return (_text(root, "LocationConstraint") or "").strip()


def parse_versioning(body: bytes) -> str:
    """The Status of a VersioningConfiguration: Enabled or Suspended."""
    root = _parse(body, "VersioningConfiguration")
    status = (_text(root, "Status") or "").strip()
    if status not in VERSIONING_STATES:
        raise S3Error("IllegalVersioningConfigurationException",
                      "The Versioning element must be specified as Enabled or Suspended.")
    if (_text(root, "MfaDelete") or "Disabled").strip() != "Disabled":
        raise S3Error("NotImplemented", "MFA Delete is not implemented.")
    return status


def parse_delete(body: bytes) -> tuple[bool, list[tuple[str, str | None]]]:
    """(quiet, [(key, version id or None)]) of a Delete document of 1 to 1000 objects."""
    root = _parse(body, "Delete")
    quiet = (_text(root, "Quiet") or "false").strip().lower() == "true"
    objects: list[tuple[str, str | None]] = []
    for element in _children(root, "Object"):
        key = _text(element, "Key")
        if not key:
            raise _malformed()
        version_id = _text(element, "VersionId")
        objects.append((key, version_id.strip() if version_id else None))
    if not 1 <= len(objects) <= MAX_DELETE_KEYS:
        raise _malformed()
    return quiet, objects
