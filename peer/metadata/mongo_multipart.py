"""The multipart-upload records of the MongoDB backend: collections `multipart_uploads` and `multipart_parts`.

An upload document's `_id` is its upload id; a part document's `_id` is `UPLOAD_ID:NUMBER`, so storing
a part again replaces it with one upsert (which MongoDB retries itself when two race). A part
document carries `chunk_ids` (indexed), so garbage collection finds a chunk that only a part
references as it finds one a version references.

Without transactions, the invariants rest on the order of single-document steps, as for versions:
- a part is stored only after its upload's touch time was moved up (which fails for an upload that
  is gone), and is removed again if its upload is gone once it is stored, so a part racing an abort
  never outlives it;
- an abort or an expiry removes the upload document first, then its parts; a crash between the two
  leaves parts without an upload, which a later expiry removes;
- `referenced_chunks` reads the parts before the versions, and a completion commits its version
  before it removes the upload, so a chunk passing from the parts to the version is never missed.
This module uses the collections the backend hands it and imports no driver of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from peer.errors import InvalidRequest, UploadNotFound, VersionNotFound
from peer.metadata.common import chunk_docs, chunks_of_docs, prefix_upper_bound, stored_ids
from peer.metadata.store import MultipartUpload, PartRecord

__all__ = ["MongoMultipart"]

Doc = dict[str, Any]


class MongoMultipart:
    """The multipart methods of `MongoStore`, which provides the collections and the error guard."""

    _uploads: Any
    _parts: Any
    _versions: Any

    def _guard(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def ensure_multipart_indexes(self) -> None:
        self._uploads.create_index([("name", 1), ("_id", 1)])
        self._uploads.create_index("touched_at")
        self._parts.create_index([("upload_id", 1), ("part_number", 1)])
        self._parts.create_index("chunk_ids")
        self._parts.create_index("created_at")

    def part_chunks(self, chunk_ids: Sequence[str]) -> set[str]:
        """The chunk ids among `chunk_ids` that some part references (inside the caller's guard)."""
        found: set[str] = set()
        for doc in self._parts.find({"chunk_ids": {"$in": list(chunk_ids)}}, {"_id": False, "chunk_ids": True}):
            found.update(doc["chunk_ids"])
        return found.intersection(chunk_ids)

    def create_upload(self, upload: MultipartUpload) -> None:
        with self._guard():
            result = self._uploads.update_one(
                {"_id": upload.upload_id}, {"$setOnInsert": _upload_doc(upload)}, upsert=True
            )
        if result.upserted_id is None:
            raise InvalidRequest(f"multipart upload {upload.upload_id} already exists")

    def get_upload(self, upload_id: str, touched_at: float | None = None) -> MultipartUpload:
        with self._guard():
            if touched_at is not None:
                self._uploads.update_one({"_id": upload_id}, {"$max": {"touched_at": touched_at}})
            doc = self._uploads.find_one({"_id": upload_id})
        if doc is None:
            raise UploadNotFound(upload_id)
        return _upload(doc)

    def put_part(self, part: PartRecord, source_version: str = "") -> None:
        key = f"{part.upload_id}:{part.part_number}"
        with self._guard():
            touched = self._uploads.update_one({"_id": part.upload_id}, {"$max": {"touched_at": part.created_at}})
            if touched.matched_count == 0:
                raise UploadNotFound(part.upload_id)
            self._parts.replace_one({"_id": key}, _part_doc(part), upsert=True)
            if self._uploads.find_one({"_id": part.upload_id}, {"_id": True}) is None:
                self._parts.delete_one({"_id": key})  # aborted meanwhile: the part must not outlive it
                raise UploadNotFound(part.upload_id)
            if source_version and self._versions.find_one({"version_id": source_version}, {"_id": True}) is None:
                self._parts.delete_one({"_id": key})
                raise VersionNotFound(f"the source of part {part.part_number}", source_version)

    def list_parts(self, upload_id: str, after: int, limit: int) -> list[PartRecord]:
        with self._guard():
            if self._uploads.find_one({"_id": upload_id}, {"_id": True}) is None:
                raise UploadNotFound(upload_id)
            cursor = self._parts.find({"upload_id": upload_id, "part_number": {"$gt": after}})
            docs = list(cursor.sort("part_number", 1).limit(limit))
        return [_part(doc) for doc in docs]

    def list_uploads(
        self, prefix: str, key_marker: str, upload_id_marker: str | None, limit: int
    ) -> list[MultipartUpload]:
        name_range: Doc = {"$gte": prefix}
        upper = prefix_upper_bound(prefix)
        if upper is not None:
            name_range["$lt"] = upper
        query: Doc = {"name": name_range}
        if upload_id_marker is not None:
            query["$or"] = [{"name": {"$gt": key_marker}}, {"name": key_marker, "_id": {"$gt": upload_id_marker}}]
        else:
            name_range["$gt"] = key_marker
        with self._guard():
            docs = list(self._uploads.find(query).sort([("name", 1), ("_id", 1)]).limit(limit))
        return [_upload(doc) for doc in docs]

    def delete_upload(self, upload_id: str) -> MultipartUpload:
        with self._guard():
            doc = self._uploads.find_one_and_delete({"_id": upload_id})
            if doc is None:
                raise UploadNotFound(upload_id)
            self._parts.delete_many({"upload_id": upload_id})
        return _upload(doc)

    def expire_uploads(self, touched_before: float, limit: int) -> list[MultipartUpload]:
        expired: list[MultipartUpload] = []
        with self._guard():
            stale = list(self._uploads.find({"touched_at": {"$lt": touched_before}}).sort("touched_at", 1).limit(limit))
            for candidate in stale:
                # Conditional: a part stored since the find above keeps its upload.
                still_stale = {"_id": candidate["_id"], "touched_at": {"$lt": touched_before}}
                doc = self._uploads.find_one_and_delete(still_stale)
                if doc is not None:
                    self._parts.delete_many({"upload_id": doc["_id"]})
                    expired.append(_upload(doc))
            # Parts a crash left without their upload (between the two steps of an abort or expiry).
            for upload_id in self._parts.distinct("upload_id", {"created_at": {"$lt": touched_before}})[:limit]:
                if self._uploads.find_one({"_id": upload_id}, {"_id": True}) is None:
                    self._parts.delete_many({"upload_id": upload_id, "created_at": {"$lt": touched_before}})
        return expired


def _upload_doc(upload: MultipartUpload) -> Doc:
    return {
        "name": upload.name,
        "created_at": upload.created_at,
        "touched_at": upload.touched_at or upload.created_at,
        "content_type": upload.content_type,
        # Pairs, not a sub-document: user keys may contain "." or start with "$".
        "metadata": [[key, value] for key, value in upload.metadata.items()],
        "policy": upload.policy,
    }


def _upload(doc: Mapping[str, Any]) -> MultipartUpload:
    return MultipartUpload(
        upload_id=doc["_id"], name=doc["name"], created_at=doc["created_at"], content_type=doc["content_type"],
        metadata={key: value for key, value in doc["metadata"]}, touched_at=doc["touched_at"],
        policy=doc.get("policy", ""),  # absent from an upload opened before policies
    )


def _part_doc(part: PartRecord) -> Doc:
    return {
        "upload_id": part.upload_id,
        "part_number": part.part_number,
        "size": part.size,
        "etag": part.etag,
        "sha256": part.sha256,
        "chunks": chunk_docs(part.chunks),
        "chunk_ids": stored_ids(part.chunks),
        "created_at": part.created_at,
        "policy": part.policy,
        "checksums": [[key, value] for key, value in part.checksums.items()],
    }


def _part(doc: Mapping[str, Any]) -> PartRecord:
    return PartRecord(
        upload_id=doc["upload_id"], part_number=doc["part_number"], size=doc["size"], etag=doc["etag"],
        sha256=doc["sha256"], chunks=chunks_of_docs(doc["chunks"]),
        created_at=doc["created_at"], policy=doc["policy"], checksums={key: value for key, value in doc["checksums"]},
    )
