"""The multipart-upload records of the SQLite backend: open uploads, their parts and the parts' chunks.

Three tables, added like the tokens table (IF NOT EXISTS, no schema bump): `multipart_uploads`, one
row per open upload; `multipart_parts`, one row per part (its chunk list as JSON, like a version's);
`multipart_chunk_refs`, one row per (part, chunk id) pair, indexed by chunk id, so garbage collection
finds a chunk that only a part references as it finds one a version references. Deleting an upload
cascades to its parts and their chunk rows. Every write is one BEGIN IMMEDIATE transaction, so a
part stored while its upload is aborted either lands before the abort (and goes with it) or finds no
upload and is refused.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from peer.errors import InvalidRequest, UploadNotFound, VersionNotFound
from peer.metadata.common import chunk_rows, chunks_of_rows, prefix_upper_bound, stored_ids
from peer.metadata.store import ChunkRef, MultipartUpload, PartRecord

__all__ = ["MULTIPART_SCHEMA", "SqliteMultipart", "parts_referencing"]

MULTIPART_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS multipart_uploads (
        upload_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        created_at REAL NOT NULL,
        touched_at REAL NOT NULL,
        content_type TEXT NOT NULL,
        metadata TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS multipart_uploads_by_name ON multipart_uploads (name, upload_id)",
    "CREATE INDEX IF NOT EXISTS multipart_uploads_by_touch ON multipart_uploads (touched_at)",
    """CREATE TABLE IF NOT EXISTS multipart_parts (
        upload_id TEXT NOT NULL REFERENCES multipart_uploads (upload_id) ON DELETE CASCADE,
        part_number INTEGER NOT NULL,
        size INTEGER NOT NULL,
        etag TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        chunks TEXT NOT NULL,
        created_at REAL NOT NULL,
        policy TEXT NOT NULL,
        checksums TEXT NOT NULL,
        PRIMARY KEY (upload_id, part_number)
    )""",
    """CREATE TABLE IF NOT EXISTS multipart_chunk_refs (
        upload_id TEXT NOT NULL,
        part_number INTEGER NOT NULL,
        chunk_id TEXT NOT NULL,
        PRIMARY KEY (upload_id, part_number, chunk_id),
        FOREIGN KEY (upload_id, part_number) REFERENCES multipart_parts (upload_id, part_number)
            ON DELETE CASCADE
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS multipart_chunk_refs_by_chunk ON multipart_chunk_refs (chunk_id)",
)

_UPLOAD_COLUMNS = "upload_id, name, created_at, content_type, metadata, touched_at, policy"
_PART_COLUMNS = "upload_id, part_number, size, etag, sha256, chunks, created_at, policy, checksums"


def parts_referencing(conn: sqlite3.Connection, chunk_ids: Sequence[str]) -> set[str]:
    """The chunk ids among `chunk_ids` (at most a few hundred) that some part references."""
    marks = ", ".join("?" * len(chunk_ids))
    rows = conn.execute(f"SELECT chunk_id FROM multipart_chunk_refs WHERE chunk_id IN ({marks})", list(chunk_ids))
    return {row[0] for row in rows}


class SqliteMultipart:
    """The multipart methods of `SqliteStore`, which provides the transactions."""

    def _transaction(self, begin: str) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def create_upload(self, upload: MultipartUpload) -> None:
        with self._transaction("BEGIN IMMEDIATE") as conn:
            cursor = conn.execute(
                f"INSERT OR IGNORE INTO multipart_uploads ({_UPLOAD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (upload.upload_id, upload.name, upload.created_at, upload.content_type,
                 json.dumps(dict(upload.metadata)), upload.touched_at or upload.created_at, upload.policy),
            )
            if cursor.rowcount == 0:
                raise InvalidRequest(f"multipart upload {upload.upload_id} already exists")

    def get_upload(self, upload_id: str, touched_at: float | None = None) -> MultipartUpload:
        if touched_at is None:
            with self._transaction("BEGIN") as conn:
                return _find_upload(conn, upload_id)
        with self._transaction("BEGIN IMMEDIATE") as conn:
            _touch(conn, upload_id, touched_at)
            return _find_upload(conn, upload_id)

    def put_part(self, part: PartRecord, source_version: str = "") -> None:
        with self._transaction("BEGIN IMMEDIATE") as conn:
            _touch(conn, part.upload_id, part.created_at)
            if source_version and conn.execute(
                "SELECT 1 FROM versions WHERE version_id = ?", (source_version,)
            ).fetchone() is None:
                raise VersionNotFound(f"the source of part {part.part_number}", source_version)
            key = (part.upload_id, part.part_number)
            conn.execute("DELETE FROM multipart_parts WHERE upload_id = ? AND part_number = ?", key)
            conn.execute(
                f"INSERT INTO multipart_parts ({_PART_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*key, part.size, part.etag, part.sha256, _dump_chunks(part.chunks), part.created_at,
                 part.policy, json.dumps(dict(part.checksums))),
            )
            conn.executemany(
                "INSERT OR IGNORE INTO multipart_chunk_refs (upload_id, part_number, chunk_id) VALUES (?, ?, ?)",
                [(*key, stored) for stored in stored_ids(part.chunks)],
            )

    def list_parts(self, upload_id: str, after: int, limit: int) -> list[PartRecord]:
        with self._transaction("BEGIN") as conn:
            _find_upload(conn, upload_id)
            rows = conn.execute(
                f"SELECT {_PART_COLUMNS} FROM multipart_parts WHERE upload_id = ? AND part_number > ?"
                " ORDER BY part_number LIMIT ?",
                (upload_id, after, limit),
            ).fetchall()
        return [_part(row) for row in rows]

    def list_uploads(
        self, prefix: str, key_marker: str, upload_id_marker: str | None, limit: int
    ) -> list[MultipartUpload]:
        where = ["name >= ?"]
        args: list[Any] = [prefix]
        upper = prefix_upper_bound(prefix)
        if upper is not None:
            where.append("name < ?")
            args.append(upper)
        if upload_id_marker is not None:
            where.append("(name > ? OR (name = ? AND upload_id > ?))")
            args += [key_marker, key_marker, upload_id_marker]
        else:
            where.append("name > ?")
            args.append(key_marker)
        sql = f"SELECT {_UPLOAD_COLUMNS} FROM multipart_uploads WHERE {' AND '.join(where)}"
        with self._transaction("BEGIN") as conn:
            rows = conn.execute(f"{sql} ORDER BY name, upload_id LIMIT ?", [*args, limit]).fetchall()
        return [_upload(row) for row in rows]

    def delete_upload(self, upload_id: str) -> MultipartUpload:
        with self._transaction("BEGIN IMMEDIATE") as conn:
            upload = _find_upload(conn, upload_id)
            conn.execute("DELETE FROM multipart_uploads WHERE upload_id = ?", (upload_id,))  # cascades
        return upload

    def expire_uploads(self, touched_before: float, limit: int) -> list[MultipartUpload]:
        with self._transaction("BEGIN IMMEDIATE") as conn:
            rows = conn.execute(
                f"SELECT {_UPLOAD_COLUMNS} FROM multipart_uploads WHERE touched_at < ? ORDER BY touched_at LIMIT ?",
                (touched_before, limit),
            ).fetchall()
            expired = [_upload(row) for row in rows]
            conn.executemany("DELETE FROM multipart_uploads WHERE upload_id = ?",
                             [(upload.upload_id,) for upload in expired])
        return expired


def _touch(conn: sqlite3.Connection, upload_id: str, when: float) -> None:
    cursor = conn.execute(
        "UPDATE multipart_uploads SET touched_at = MAX(touched_at, ?) WHERE upload_id = ?", (when, upload_id)
    )
    if cursor.rowcount == 0:
        raise UploadNotFound(upload_id)


def _find_upload(conn: sqlite3.Connection, upload_id: str) -> MultipartUpload:
    row = conn.execute(f"SELECT {_UPLOAD_COLUMNS} FROM multipart_uploads WHERE upload_id = ?", (upload_id,)).fetchone()
    if row is None:
        raise UploadNotFound(upload_id)
    return _upload(row)


def _upload(row: Sequence[Any]) -> MultipartUpload:
    upload_id, name, created_at, content_type, metadata, touched_at, policy = row
    return MultipartUpload(upload_id=upload_id, name=name, created_at=created_at, content_type=content_type,
                           metadata=json.loads(metadata), touched_at=touched_at, policy=policy)


def _part(row: Sequence[Any]) -> PartRecord:
    upload_id, number, part_size, etag, sha256, chunks, created_at, policy, checksums = row
    return PartRecord(
        upload_id=upload_id, part_number=number, size=part_size, etag=etag, sha256=sha256,
        chunks=chunks_of_rows(json.loads(chunks)),
        created_at=created_at, policy=policy, checksums=json.loads(checksums),
    )


def _dump_chunks(chunks: Sequence[ChunkRef]) -> str:
    return json.dumps(chunk_rows(chunks))
