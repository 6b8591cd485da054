"""The multipart-upload records of the PostgreSQL backend: open uploads, their parts and the parts' chunks.

The same three tables as SQLite's (peer/metadata/sqlite_multipart.py): `multipart_uploads`, one row
per open upload; `multipart_parts`, one row per part (its chunk list as JSON text, like a version's);
`multipart_chunk_refs`, one row per (part, stored id) pair, indexed by the id, so garbage collection
finds a chunk only a part references as it finds one a version references. Deleting an upload
cascades to its parts and their chunk rows. A part's write first updates its upload's row (the touch),
which locks it: an abort (which deletes that row) either comes after the part and takes it along, or
came before and the part finds no upload and is refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg

from peer.errors import InvalidRequest, UploadNotFound, VersionNotFound
from peer.metadata.common import chunk_rows, chunks_of_rows, prefix_upper_bound, stored_ids
from peer.metadata.store import MultipartUpload, PartRecord

__all__ = ["MULTIPART_SCHEMA", "READ", "WRITE", "PostgresMultipart", "parts_referencing"]

T = TypeVar("T")
Conn = psycopg.Connection[tuple[Any, ...]]

# How both modules begin a transaction: writes in READ COMMITTED with row locks, reads in one snapshot.
WRITE = "BEGIN ISOLATION LEVEL READ COMMITTED"
READ = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"

MULTIPART_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS multipart_uploads (
        upload_id TEXT COLLATE "C" PRIMARY KEY,
        name TEXT COLLATE "C" NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        touched_at DOUBLE PRECISION NOT NULL,
        content_type TEXT NOT NULL,
        metadata TEXT NOT NULL,
        policy TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX IF NOT EXISTS multipart_uploads_by_name ON multipart_uploads (name, upload_id)",
    "CREATE INDEX IF NOT EXISTS multipart_uploads_by_touch ON multipart_uploads (touched_at)",
    """CREATE TABLE IF NOT EXISTS multipart_parts (
        upload_id TEXT COLLATE "C" NOT NULL REFERENCES multipart_uploads (upload_id) ON DELETE CASCADE,
        part_number INTEGER NOT NULL,
        size BIGINT NOT NULL,
        etag TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        chunks TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        policy TEXT NOT NULL,
        checksums TEXT NOT NULL,
        PRIMARY KEY (upload_id, part_number)
    )""",
    """CREATE TABLE IF NOT EXISTS multipart_chunk_refs (
        upload_id TEXT COLLATE "C" NOT NULL,
        part_number INTEGER NOT NULL,
        chunk_id TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (upload_id, part_number, chunk_id),
        FOREIGN KEY (upload_id, part_number) REFERENCES multipart_parts (upload_id, part_number)
            ON DELETE CASCADE
    )""",
    "CREATE INDEX IF NOT EXISTS multipart_chunk_refs_by_chunk ON multipart_chunk_refs (chunk_id)",
)

_UPLOAD_COLUMNS = "upload_id, name, created_at, content_type, metadata, touched_at, policy"
_PART_COLUMNS = "upload_id, part_number, size, etag, sha256, chunks, created_at, policy, checksums"


def parts_referencing(conn: Conn, chunk_ids: list[str]) -> set[str]:
    """The ids among `chunk_ids` that some part references."""
    rows = conn.execute("SELECT DISTINCT chunk_id FROM multipart_chunk_refs WHERE chunk_id = ANY(%s)", (chunk_ids,))
    return {row[0] for row in rows}


class PostgresMultipart:
    """The multipart methods of `PostgresStore`, which provides the transactions."""

    def _transaction(self, begin: str, body: Callable[[Conn], T]) -> T:
        raise NotImplementedError

    def create_upload(self, upload: MultipartUpload) -> None:
        inserted = self._transaction(WRITE, lambda conn: conn.execute(
            f"INSERT INTO multipart_uploads ({_UPLOAD_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (upload.upload_id, upload.name, upload.created_at, upload.content_type,
             json.dumps(dict(upload.metadata)), upload.touched_at or upload.created_at, upload.policy),
        ).rowcount)
        if inserted == 0:
            raise InvalidRequest(f"multipart upload {upload.upload_id} already exists")

    def get_upload(self, upload_id: str, touched_at: float | None = None) -> MultipartUpload:
        if touched_at is None:
            return self._transaction(READ, lambda conn: _find_upload(conn, upload_id))

        def touch(conn: Conn) -> MultipartUpload:
            _touch(conn, upload_id, touched_at)
            return _find_upload(conn, upload_id)

        return self._transaction(WRITE, touch)

    def put_part(self, part: PartRecord, source_version: str = "") -> None:
        def put(conn: Conn) -> None:
            _touch(conn, part.upload_id, part.created_at)
            if source_version and conn.execute(
                "SELECT 1 FROM versions WHERE version_id = %s FOR SHARE", (source_version,)
            ).fetchone() is None:
                raise VersionNotFound(f"the source of part {part.part_number}", source_version)
            key = (part.upload_id, part.part_number)
            conn.execute("DELETE FROM multipart_parts WHERE upload_id = %s AND part_number = %s", key)
            conn.execute(
                f"INSERT INTO multipart_parts ({_PART_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (*key, part.size, part.etag, part.sha256, json.dumps(chunk_rows(part.chunks)), part.created_at,
                 part.policy, json.dumps(dict(part.checksums))),
            )
            conn.execute(
                "INSERT INTO multipart_chunk_refs (upload_id, part_number, chunk_id)"
                " SELECT %s, %s, unnest(%s::text[]) ON CONFLICT DO NOTHING", (*key, stored_ids(part.chunks)),
            )

        self._transaction(WRITE, put)

    def list_parts(self, upload_id: str, after: int, limit: int) -> list[PartRecord]:
        def parts(conn: Conn) -> list[PartRecord]:
            _find_upload(conn, upload_id)
            rows = conn.execute(
                f"SELECT {_PART_COLUMNS} FROM multipart_parts WHERE upload_id = %s AND part_number > %s"
                " ORDER BY part_number LIMIT %s", (upload_id, after, limit))
            return [_part(row) for row in rows]

        return self._transaction(READ, parts)

    def list_uploads(
        self, prefix: str, key_marker: str, upload_id_marker: str | None, limit: int
    ) -> list[MultipartUpload]:
        where = ["name >= %s"]
        args: list[Any] = [prefix]
        upper = prefix_upper_bound(prefix)
        if upper is not None:
            where.append("name < %s")
            args.append(upper)
        if upload_id_marker is not None:
            where.append("(name > %s OR (name = %s AND upload_id > %s))")
            args += [key_marker, key_marker, upload_id_marker]
        else:
            where.append("name > %s")
            args.append(key_marker)
        sql = f"SELECT {_UPLOAD_COLUMNS} FROM multipart_uploads WHERE {' AND '.join(where)}"
        rows = self._transaction(
            READ, lambda conn: conn.execute(f"{sql} ORDER BY name, upload_id LIMIT %s", [*args, limit]).fetchall())
        return [_upload(row) for row in rows]

    def delete_upload(self, upload_id: str) -> MultipartUpload:
        def delete(conn: Conn) -> MultipartUpload:
            row = conn.execute(
                f"DELETE FROM multipart_uploads WHERE upload_id = %s RETURNING {_UPLOAD_COLUMNS}", (upload_id,),
            ).fetchone()  # cascades to the parts and their chunk rows
            if row is None:
                raise UploadNotFound(upload_id)
            return _upload(row)

        return self._transaction(WRITE, delete)

    def expire_uploads(self, touched_before: float, limit: int) -> list[MultipartUpload]:
        """A part stored meanwhile moves its upload's touch time past the cutoff: the row lock makes
        the delete see it, and the upload stays."""
        def expire(conn: Conn) -> list[MultipartUpload]:
            rows = conn.execute(
                f"DELETE FROM multipart_uploads WHERE upload_id IN (SELECT upload_id FROM multipart_uploads"
                f" WHERE touched_at < %s ORDER BY touched_at LIMIT %s FOR UPDATE) AND touched_at < %s"
                f" RETURNING {_UPLOAD_COLUMNS}", (touched_before, limit, touched_before))
            return sorted((_upload(row) for row in rows), key=lambda u: (u.touched_at, u.upload_id))

        return self._transaction(WRITE, expire)


def _touch(conn: Conn, upload_id: str, when: float) -> None:
    cursor = conn.execute(
        "UPDATE multipart_uploads SET touched_at = GREATEST(touched_at, %s) WHERE upload_id = %s", (when, upload_id)
    )
    if cursor.rowcount == 0:
        raise UploadNotFound(upload_id)


def _find_upload(conn: Conn, upload_id: str) -> MultipartUpload:
    row = conn.execute(f"SELECT {_UPLOAD_COLUMNS} FROM multipart_uploads WHERE upload_id = %s", (upload_id,)).fetchone()
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
