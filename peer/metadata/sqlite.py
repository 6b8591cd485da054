"""SQLite metadata backend: one WAL-mode database file shared by the peer processes of one host.

Every write runs in BEGIN IMMEDIATE, so the per-file counter files.last_version is read and bumped
under SQLite's single writer lock: concurrent commits from any thread or process get distinct,
consecutive numbers, and a number is never handed out twice, even after its version is deleted.
WAL needs shared memory between the processes, so the file must be on a local filesystem.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from peer.errors import (
    BucketExists,
    BucketNotFound,
    ConfigError,
    FileNotFound,
    InvalidRequest,
    MetadataUnavailable,
    PreconditionFailed,
    S3KeyNotFound,
    TokenNotFound,
    VersionNotFound,
)
from peer.metadata.common import (
    S3_KEY_FIELDS,
    TOKEN_FIELDS,
    check_limit,
    check_version_spec,
    chunk_rows,
    chunks_of_rows,
    decode_token,
    encode_token,
    page_keys,
    page_versions,
    placements_in,
    prefix_upper_bound,
    skipped_policy,
    sorted_placements,
    stored_ids,
)
from peer.metadata.sqlite_multipart import MULTIPART_SCHEMA, SqliteMultipart, parts_referencing
from peer.metadata.store import (
    BucketRecord,
    ChunkRef,
    CodedVersion,
    FileRefSpec,
    ListPage,
    NewVersion,
    Placed,
    S3KeyRecord,
    TokenRecord,
    VersionPage,
    VersionRecord,
    VersionSpec,
)

SCHEMA_VERSION = 1
# A writer waits this long for another process's transaction before the call reports unavailable.
BUSY_TIMEOUT_S = 10.0
_MAX_IDLE_CONNECTIONS = 8
_IN_BATCH = 500  # well under SQLITE_MAX_VARIABLE_NUMBER on every SQLite version

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS files (
        file_id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL,
        last_version INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS versions (
        version_id TEXT PRIMARY KEY,
        file_id TEXT NOT NULL REFERENCES files (file_id) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        name TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        chunks TEXT NOT NULL,
        content_type TEXT NOT NULL,
        metadata TEXT NOT NULL,
        created_at REAL NOT NULL,
        policy TEXT NOT NULL DEFAULT '',
        UNIQUE (file_id, version)
    )""",
    # A version may hold one chunk id several times (repeated content); one row per pair is enough.
    """CREATE TABLE IF NOT EXISTS chunk_refs (
        version_id TEXT NOT NULL REFERENCES versions (version_id) ON DELETE CASCADE,
        chunk_id TEXT NOT NULL,
        PRIMARY KEY (version_id, chunk_id)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS chunk_refs_by_chunk ON chunk_refs (chunk_id)",
    # Added without a schema bump: IF NOT EXISTS adds it to older files when a newer peer opens them,
    # and peers that predate tokens still read and write the other tables unchanged.
    """CREATE TABLE IF NOT EXISTS tokens (
        token_id TEXT PRIMARY KEY,
        secret_sha256 TEXT NOT NULL,
        role TEXT NOT NULL,
        name TEXT NOT NULL,
        created_at REAL NOT NULL,
        revoked_at REAL
    )""",
    # S3 access keys, added the same way as tokens (no schema bump); the secret only sealed.
    """CREATE TABLE IF NOT EXISTS s3_keys (
        access_key_id TEXT PRIMARY KEY,
        secret_ciphertext TEXT NOT NULL,
        nonce TEXT NOT NULL,
        key_id TEXT NOT NULL,
        role TEXT NOT NULL,
        name TEXT NOT NULL,
        created_at REAL NOT NULL,
        revoked_at REAL
    )""",
)

# S3 buckets, added the same way as tokens (no schema bump): a name space of the file names.
_BUCKETS_SCHEMA = """CREATE TABLE IF NOT EXISTS buckets (
    name TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    versioning TEXT NOT NULL DEFAULT ''
)"""
_BUCKET_COLUMNS = "name, created_at, versioning, policy"  # BucketRecord's fields, in order

# Columns added to a table after its first release, each with the definition that adds it to an
# older file. No schema bump, as for the tokens table: the DEFAULT fills the rows already there, and
# a peer that predates the column still reads and inserts with its own column lists, so peers of
# both releases can share one file during a rolling upgrade.
_ADDED_COLUMNS = (
    ("versions", "policy", "TEXT NOT NULL DEFAULT ''"),
    ("versions", "delete_marker", "INTEGER NOT NULL DEFAULT 0"),
    ("versions", "null_version", "INTEGER NOT NULL DEFAULT 0"),
    # Whether the file's latest version is a delete marker, kept by every commit and version delete,
    # so a listing's name scan leaves such a file out without reading its versions.
    ("files", "deleted", "INTEGER NOT NULL DEFAULT 0"),
    # A bucket's default redundancy policy and the one an open multipart upload writes its parts with.
    ("buckets", "policy", "TEXT NOT NULL DEFAULT ''"),
    ("multipart_uploads", "policy", "TEXT NOT NULL DEFAULT ''"),
)

_COLUMNS = (
    "v.file_id, v.version_id, v.version, v.name, v.size, v.sha256, v.chunks, v.content_type,"
    " v.metadata, v.created_at, v.policy, v.delete_marker, v.null_version"
)
_MAX_VERSION = "(SELECT MAX(w.version) FROM versions AS w WHERE w.file_id = v.file_id)"
_SELECT = f"SELECT {_COLUMNS}, v.version = {_MAX_VERSION} FROM versions AS v"
_SELECT_TOKEN = f"SELECT {', '.join(TOKEN_FIELDS)} FROM tokens"
_SELECT_S3_KEY = f"SELECT {', '.join(S3_KEY_FIELDS)} FROM s3_keys"
_LIST = (
    f"SELECT {_COLUMNS}, 1 FROM files AS f JOIN versions AS v ON v.file_id = f.file_id"
    f" WHERE v.version = {_MAX_VERSION} AND v.delete_marker = 0 AND f.name >= ? AND f.name > ?"
)


class SqliteStore(SqliteMultipart):
    """MetadataStore on a local SQLite file; safe to share between threads and processes. The
    multipart-upload methods come from `SqliteMultipart` (peer/metadata/sqlite_multipart.py)."""

    backend = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # Connections are pooled rather than pinned to threads: asyncio.to_thread hands calls to
        # whichever worker is free, and a pool lets close() reach every idle connection.
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._commit_lock = threading.Lock()
        self._pending: list[tuple[NewVersion, Future[VersionRecord]]] = []
        self._leading = False
        try:
            self._init_schema()
        except BaseException:
            self.close()
            raise

    # -- MetadataStore ---------------------------------------------------------------------------

    def commit_version(self, new: NewVersion) -> VersionRecord:
        """Group commit: concurrent callers of this process share one transaction and one fsync.

        With synchronous=FULL every transaction costs an fsync under the database-wide write lock,
        which caps a host at a few hundred commits per second. The first caller to arrive becomes
        the leader and commits everything queued behind it in one transaction; the others wait for
        their result. Each still gets its own consecutive number, and none returns before the
        transaction holding its version is durable.
        """
        if not new.name:
            raise InvalidRequest("file name must not be empty")
        waiter: Future[VersionRecord] = Future()
        with self._commit_lock:
            self._pending.append((new, waiter))
            lead = not self._leading
            self._leading = True
        if lead:
            self._lead_commits()
        return waiter.result()

    def _lead_commits(self) -> None:
        while True:
            with self._commit_lock:
                batch, self._pending = self._pending, []
                if not batch:
                    self._leading = False
                    return
            try:
                records = self._commit_batch([new for new, _ in batch])
            except BaseException as exc:  # every waiter of the failed transaction learns why
                for _, waiter in batch:
                    waiter.set_exception(exc)
                continue
            for (_, waiter), record in zip(batch, records, strict=True):
                if isinstance(record, VersionRecord):
                    waiter.set_result(record)
                else:
                    waiter.set_exception(record)

    def _commit_batch(self, batch: list[NewVersion]) -> list[VersionRecord | PreconditionFailed | VersionNotFound]:
        """Each commit's conditions are checked before it writes anything, so one whose condition
        fails leaves the transaction as it found it, and only its own caller learns why."""
        records: list[VersionRecord | PreconditionFailed | VersionNotFound] = []
        with self._transaction("BEGIN IMMEDIATE") as conn:
            for new in batch:
                try:
                    _check_conditions(conn, new)
                except (PreconditionFailed, VersionNotFound) as exc:
                    records.append(exc)
                    continue
                created_at = new.created_at or time.time()
                version_id = uuid.uuid4().hex
                file_id, number = _claim_number(conn, new.name, created_at)
                if new.null_version:  # cascades to the chunk references of the version it replaces
                    conn.execute("DELETE FROM versions WHERE file_id = ? AND null_version = 1", (file_id,))
                conn.execute(
                    "INSERT INTO versions (version_id, file_id, version, name, size, sha256, chunks, content_type,"
                    " metadata, created_at, policy, delete_marker, null_version)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (version_id, file_id, number, new.name, new.size, new.sha256, _dump_chunks(new.chunks),
                     new.content_type, json.dumps(dict(new.metadata)), created_at, new.policy,
                     int(new.delete_marker), int(new.null_version)),
                )
                conn.executemany(
                    "INSERT OR IGNORE INTO chunk_refs (version_id, chunk_id) VALUES (?, ?)",
                    [(version_id, stored) for stored in stored_ids(new.chunks)],
                )
                conn.execute("UPDATE files SET deleted = ? WHERE file_id = ?", (int(new.delete_marker), file_id))
                records.append(VersionRecord(
                    file_id=file_id, version_id=version_id, version=number, name=new.name, size=new.size,
                    sha256=new.sha256, chunks=tuple(new.chunks), content_type=new.content_type,
                    metadata=dict(new.metadata), created_at=created_at, latest=True, policy=new.policy,
                    delete_marker=new.delete_marker, null_version=new.null_version,
                ))
        return records

    def get_version(self, ref: FileRefSpec, version: VersionSpec) -> VersionRecord:
        check_version_spec(version)
        with self._transaction("BEGIN") as conn:
            return _find_version(conn, ref, version)

    def list_files(self, prefix: str, limit: int, page_token: str, delimiter: str = "") -> ListPage:
        if delimiter:
            return self._list_rolled_up(prefix, limit, page_token, delimiter)
        check_limit(limit)
        sql, args = _LIST, [prefix, decode_token(page_token)]
        upper = prefix_upper_bound(prefix)
        if upper is not None:
            sql += " AND f.name < ?"
            args.append(upper)
        with self._transaction("BEGIN") as conn:
            rows = conn.execute(f"{sql} ORDER BY f.name LIMIT ?", [*args, limit + 1]).fetchall()
        records = [_record(row) for row in rows[:limit]]
        next_token = encode_token(records[-1].name) if len(rows) > limit else ""
        return ListPage(files=tuple(records), next_token=next_token)

    def _list_rolled_up(self, prefix: str, limit: int, page_token: str, delimiter: str) -> ListPage:
        """The keys come from name-only range reads of the files table's unique index, the records
        of the page's files from one lookup, all in one read snapshot."""
        upper = prefix_upper_bound(prefix)
        within = "name >= ?" if upper is None else "name >= ? AND name < ?"
        limits = [prefix] if upper is None else [prefix, upper]
        with self._transaction("BEGIN") as conn:

            def scan(bound: str, inclusive: bool, count: int) -> list[str]:
                sql = f"SELECT name FROM files WHERE {within} AND deleted = 0 AND name {'>=' if inclusive else '>'} ?"
                rows = conn.execute(f"{sql} ORDER BY name LIMIT ?", [*limits, bound, count])
                return [row[0] for row in rows]

            keys = page_keys(prefix, delimiter, limit, page_token, scan)
            records = _latest_named(conn, keys.names)
        return ListPage(files=tuple(records), next_token=keys.next_token, prefixes=tuple(keys.prefixes))

    def list_versions(self, ref: FileRefSpec) -> list[VersionRecord]:
        with self._transaction("BEGIN") as conn:
            return _versions_of(conn, _file_id(conn, ref))

    def list_all_versions(
        self, prefix: str, limit: int, after_name: str = "", after_version: str = "", delimiter: str = ""
    ) -> VersionPage:
        """Names from range reads of the files table's unique index (files whose latest version is a
        delete marker included), each file's versions from its (file_id, version) index, all in one
        read snapshot."""
        upper = prefix_upper_bound(prefix)
        within = "name >= ?" if upper is None else "name >= ? AND name < ?"
        limits = [prefix] if upper is None else [prefix, upper]
        named = f"{_SELECT} JOIN files AS f ON f.file_id = v.file_id WHERE f.name = ?"
        with self._transaction("BEGIN") as conn:

            def scan(bound: str, inclusive: bool, count: int) -> list[str]:
                sql = f"SELECT name FROM files WHERE {within} AND name {'>=' if inclusive else '>'} ?"
                rows = conn.execute(f"{sql} ORDER BY name LIMIT ?", [*limits, bound, count])
                return [row[0] for row in rows]

            def versions(name: str, below: int | None, count: int) -> list[VersionRecord]:
                older = "" if below is None else f" AND v.version < {int(below)}"
                rows = conn.execute(f"{named}{older} ORDER BY v.version DESC LIMIT ?", (name, count))
                return [_record(row) for row in rows]

            def number_of(name: str, version_id: str) -> int | None:
                row = conn.execute(
                    "SELECT v.version FROM versions AS v JOIN files AS f ON f.file_id = v.file_id"
                    " WHERE f.name = ? AND v.version_id = ?", (name, version_id),
                ).fetchone()
                return None if row is None else int(row[0])

            return page_versions(prefix, delimiter, limit, after_name, after_version, scan, versions, number_of)

    def delete_version(self, ref: FileRefSpec, version: VersionSpec) -> VersionRecord:
        check_version_spec(version)
        with self._transaction("BEGIN IMMEDIATE") as conn:
            record = _find_version(conn, ref, version)
            conn.execute("DELETE FROM versions WHERE version_id = ?", (record.version_id,))
            remaining = conn.execute(
                "SELECT 1 FROM versions WHERE file_id = ? LIMIT 1", (record.file_id,)
            ).fetchone()
            if remaining is None:  # a file without versions does not exist: its name starts over
                conn.execute("DELETE FROM files WHERE file_id = ?", (record.file_id,))
            else:  # deleting a latest delete marker brings the file back
                conn.execute(
                    "UPDATE files SET deleted = (SELECT delete_marker FROM versions WHERE file_id = ?"
                    " ORDER BY version DESC LIMIT 1) WHERE file_id = ?", (record.file_id, record.file_id),
                )
        return record

    def delete_file(self, ref: FileRefSpec) -> list[VersionRecord]:
        with self._transaction("BEGIN IMMEDIATE") as conn:
            file_id = _file_id(conn, ref)
            records = _versions_of(conn, file_id)
            conn.execute("DELETE FROM files WHERE file_id = ?", (file_id,))  # cascades to versions
        return records

    def referenced_chunks(self, chunk_ids: Sequence[str]) -> set[str]:
        wanted = list(dict.fromkeys(chunk_ids))
        found: set[str] = set()
        with self._transaction("BEGIN") as conn:  # one snapshot: the parts and the versions of one moment
            for start in range(0, len(wanted), _IN_BATCH):
                batch = wanted[start : start + _IN_BATCH]
                found.update(parts_referencing(conn, batch))
                marks = ", ".join("?" * len(batch))
                rows = conn.execute(f"SELECT chunk_id FROM chunk_refs WHERE chunk_id IN ({marks})", batch)
                found.update(row[0] for row in rows)
        return found

    def placements(self, stored: Sequence[str], default_policy: str) -> dict[str, tuple[Placed, ...]]:
        wanted = list(dict.fromkeys(stored))
        found: dict[str, set[Placed]] = {}
        with self._transaction("BEGIN") as conn:
            seen: set[str] = set()
            for start in range(0, len(wanted), _IN_BATCH):
                batch = wanted[start : start + _IN_BATCH]
                marks = ", ".join("?" * len(batch))
                rows = conn.execute(
                    "SELECT DISTINCT v.version_id, v.policy, v.chunks FROM chunk_refs r"
                    " JOIN versions v ON v.version_id = r.version_id"
                    f" WHERE r.chunk_id IN ({marks}) AND v.policy NOT IN ('', ?)",
                    [*batch, skipped_policy(default_policy)])
                for version_id, policy, chunks in rows:
                    if version_id not in seen:
                        seen.add(version_id)
                        placements_in(policy, chunks_of_rows(json.loads(chunks)), set(wanted), found)
        return sorted_placements(found)

    def coded_versions(self, after: str, limit: int) -> list[CodedVersion]:
        check_limit(limit)
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT version_id, policy, chunks FROM versions WHERE policy LIKE 'ec:%' AND version_id > ?"
                " ORDER BY version_id LIMIT ?", (after, limit)).fetchall()
        return [CodedVersion(v, p, chunks_of_rows(json.loads(c))) for v, p, c in rows]

    # Tokens change rarely and by hand, so each write is a plain BEGIN IMMEDIATE transaction rather
    # than joining commit_version's group commit.

    def add_token(self, record: TokenRecord) -> None:
        columns = ", ".join(TOKEN_FIELDS)
        marks = ", ".join("?" * len(TOKEN_FIELDS))
        with self._transaction("BEGIN IMMEDIATE") as conn:
            # OR IGNORE rather than catching IntegrityError, which would also cost the connection.
            cursor = conn.execute(
                f"INSERT OR IGNORE INTO tokens ({columns}) VALUES ({marks})", dataclasses.astuple(record)
            )
            if cursor.rowcount == 0:
                raise InvalidRequest(f"token {record.token_id} already exists")

    def get_token(self, token_id: str) -> TokenRecord | None:
        with self._transaction("BEGIN") as conn:
            return _find_token(conn, token_id)

    def list_tokens(self) -> list[TokenRecord]:
        with self._transaction("BEGIN") as conn:
            rows = conn.execute(f"{_SELECT_TOKEN} ORDER BY created_at, token_id").fetchall()
        return [TokenRecord(*row) for row in rows]

    def revoke_token(self, token_id: str, revoked_at: float) -> TokenRecord:
        with self._transaction("BEGIN IMMEDIATE") as conn:
            conn.execute(
                "UPDATE tokens SET revoked_at = ? WHERE token_id = ? AND revoked_at IS NULL",
                (revoked_at, token_id),
            )
            record = _find_token(conn, token_id)
        if record is None:
            raise TokenNotFound(token_id)
        return record

    def add_s3_key(self, record: S3KeyRecord) -> None:
        columns = ", ".join(S3_KEY_FIELDS)
        marks = ", ".join("?" * len(S3_KEY_FIELDS))
        with self._transaction("BEGIN IMMEDIATE") as conn:
            cursor = conn.execute(
                f"INSERT OR IGNORE INTO s3_keys ({columns}) VALUES ({marks})", dataclasses.astuple(record)
            )
            if cursor.rowcount == 0:
                raise InvalidRequest(f"S3 access key {record.access_key_id} already exists")

    def get_s3_key(self, access_key_id: str) -> S3KeyRecord | None:
        with self._transaction("BEGIN") as conn:
            return _find_s3_key(conn, access_key_id)

    def list_s3_keys(self) -> list[S3KeyRecord]:
        with self._transaction("BEGIN") as conn:
            rows = conn.execute(f"{_SELECT_S3_KEY} ORDER BY created_at, access_key_id").fetchall()
        return [S3KeyRecord(*row) for row in rows]

    def revoke_s3_key(self, access_key_id: str, revoked_at: float) -> S3KeyRecord:
        with self._transaction("BEGIN IMMEDIATE") as conn:
            conn.execute(
                "UPDATE s3_keys SET revoked_at = ? WHERE access_key_id = ? AND revoked_at IS NULL",
                (revoked_at, access_key_id),
            )
            record = _find_s3_key(conn, access_key_id)
        if record is None:
            raise S3KeyNotFound(access_key_id)
        return record

    def add_bucket(self, record: BucketRecord) -> None:
        with self._transaction("BEGIN IMMEDIATE") as conn:
            cursor = conn.execute(
                f"INSERT OR IGNORE INTO buckets ({_BUCKET_COLUMNS}) VALUES (?, ?, ?, ?)",
                (record.name, record.created_at, record.versioning, record.policy),
            )
            if cursor.rowcount == 0:
                raise BucketExists(record.name)

    def get_bucket(self, name: str) -> BucketRecord | None:
        with self._transaction("BEGIN") as conn:
            row = conn.execute(f"SELECT {_BUCKET_COLUMNS} FROM buckets WHERE name = ?", (name,)).fetchone()
        return None if row is None else BucketRecord(*row)

    def list_buckets(self) -> list[BucketRecord]:
        with self._transaction("BEGIN") as conn:
            rows = conn.execute(f"SELECT {_BUCKET_COLUMNS} FROM buckets ORDER BY name").fetchall()
        return [BucketRecord(*row) for row in rows]

    def set_bucket_versioning(self, name: str, versioning: str) -> BucketRecord:
        return self._set_bucket(name, "versioning", versioning)

    def set_bucket_policy(self, name: str, policy: str) -> BucketRecord:
        return self._set_bucket(name, "policy", policy)

    def _set_bucket(self, name: str, column: str, value: str) -> BucketRecord:
        with self._transaction("BEGIN IMMEDIATE") as conn:
            conn.execute(f"UPDATE buckets SET {column} = ? WHERE name = ?", (value, name))
            row = conn.execute(f"SELECT {_BUCKET_COLUMNS} FROM buckets WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise BucketNotFound(name)
        return BucketRecord(*row)

    def delete_bucket(self, name: str) -> None:
        with self._transaction("BEGIN IMMEDIATE") as conn:
            if conn.execute("DELETE FROM buckets WHERE name = ?", (name,)).rowcount == 0:
                raise BucketNotFound(name)

    def ping(self) -> None:
        with self._connection() as conn:
            conn.execute("SELECT 1 FROM files LIMIT 1").fetchall()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # -- connections and transactions ------------------------------------------------------------

    def _init_schema(self) -> None:
        with self._connection() as conn:
            _enable_wal(conn, self.path)
        with self._transaction("BEGIN IMMEDIATE") as conn:
            found = conn.execute("PRAGMA user_version").fetchone()[0]
            if found > SCHEMA_VERSION:
                raise ConfigError(
                    f"sqlite metadata {self.path} has schema {found}; this peer reads up to {SCHEMA_VERSION}"
                )
            for statement in (*_SCHEMA, _BUCKETS_SCHEMA, *MULTIPART_SCHEMA):
                conn.execute(statement)
            _add_missing_columns(conn)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _open(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise MetadataUnavailable("sqlite", f"cannot open {self.path}: {exc}") from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA foreign_keys = ON")
            # FULL fsyncs the WAL at every commit. NORMAL would only fsync at checkpoints, so a power
            # cut could take back a version whose upload was already acknowledged (its chunks were
            # fsynced); one more fsync per upload is cheap next to the chunk writes it follows.
            conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            conn.close()
            raise MetadataUnavailable("sqlite", f"cannot open {self.path}: {exc}") from exc
        return conn

    def _acquire(self) -> sqlite3.Connection:
        with self._lock:
            if self._closed:
                raise MetadataUnavailable("sqlite", f"{self.path}: store is closed")
            if self._idle:
                return self._idle.pop()
        return self._open()

    def _release(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < _MAX_IDLE_CONNECTIONS:
                self._idle.append(conn)
                return
        conn.close()

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """A pooled connection; sqlite3 outages leave as MetadataUnavailable and drop the connection."""
        conn = self._acquire()
        try:
            yield conn
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError):
            conn.close()
            raise
        except sqlite3.DatabaseError as exc:  # locked past the timeout, I/O error, not a database
            conn.close()
            raise MetadataUnavailable("sqlite", f"{self.path}: {exc}") from exc
        except BaseException:
            self._release(conn)
            raise
        self._release(conn)

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE for writes, so the writer lock is taken before anything is read;
        a plain BEGIN gives reads one consistent snapshot."""
        with self._connection() as conn:
            conn.execute(begin)
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:  # some errors (disk full, I/O) have already rolled it back
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")


def _enable_wal(conn: sqlite3.Connection, path: Path) -> None:
    """Switches a new database file to WAL; WAL mode then persists in the file for every process.

    SQLite answers a mode switch that meets another connection's lock with SQLITE_BUSY at once,
    without its busy handler, so peers creating the same file together retry here, up to the timeout.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    pause = 0.005
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if mode != "wal":
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.1)
    if mode != "wal":
        raise ConfigError(f"sqlite metadata {path}: cannot use WAL journal mode here (got {mode!r})")


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    """Adds each of _ADDED_COLUMNS that an older file lacks (inside the schema transaction, so two
    peers opening the file at once cannot both add it)."""
    for table, column, definition in _ADDED_COLUMNS:
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")


def _claim_number(conn: sqlite3.Connection, name: str, now: float) -> tuple[str, int]:
    """The file id for name (created on first upload) and its next version number."""
    row = conn.execute("SELECT file_id, last_version FROM files WHERE name = ?", (name,)).fetchone()
    if row is None:
        file_id = uuid.uuid4().hex
        conn.execute(
            "INSERT INTO files (file_id, name, created_at, last_version) VALUES (?, ?, ?, 1)",
            (file_id, name, now),
        )
        return file_id, 1
    file_id, number = row[0], row[1] + 1
    conn.execute("UPDATE files SET last_version = ? WHERE file_id = ?", (number, file_id))
    return file_id, number


def _check_conditions(conn: sqlite3.Connection, new: NewVersion) -> None:
    """Raises when the commit's conditions do not hold in this transaction (NewVersion.if_latest,
    NewVersion.source_version)."""
    if new.source_version:
        found = conn.execute("SELECT 1 FROM versions WHERE version_id = ?", (new.source_version,)).fetchone()
        if found is None:
            raise VersionNotFound("the copy source", new.source_version)
    if new.if_latest is None:
        return
    row = conn.execute(
        "SELECT v.version_id, v.delete_marker FROM files AS f JOIN versions AS v ON v.file_id = f.file_id"
        " WHERE f.name = ? ORDER BY v.version DESC LIMIT 1", (new.name,),
    ).fetchone()
    current = "" if row is None or row[1] else str(row[0])
    if current != new.if_latest:
        raise PreconditionFailed(_condition_failure(new.name, new.if_latest))


def _condition_failure(name: str, expected: str) -> str:
    if not expected:
        return f"{name} exists already"
    return f"the latest version of {name} is no longer {expected}"


def _file_id(conn: sqlite3.Connection, ref: FileRefSpec) -> str:
    if ref.name is not None:
        row = conn.execute("SELECT file_id FROM files WHERE name = ?", (ref.name,)).fetchone()
    else:
        row = conn.execute("SELECT file_id FROM files WHERE file_id = ?", (ref.file_id,)).fetchone()
    if row is None:
        raise FileNotFound(str(ref))
    return str(row[0])


def _find_version(conn: sqlite3.Connection, ref: FileRefSpec, spec: VersionSpec) -> VersionRecord:
    file_id = _file_id(conn, ref)
    args: tuple[object, ...]
    if spec.number is not None:
        where, args = "v.file_id = ? AND v.version = ?", (file_id, spec.number)
    elif spec.version_id is not None:
        where, args = "v.file_id = ? AND v.version_id = ?", (file_id, spec.version_id)
    else:
        where, args = "v.file_id = ? ORDER BY v.version DESC LIMIT 1", (file_id,)
    row = conn.execute(f"{_SELECT} WHERE {where}", args).fetchone()
    if row is None:
        raise VersionNotFound(str(ref), str(spec))
    return _record(row)


def _latest_named(conn: sqlite3.Connection, names: Sequence[str]) -> list[VersionRecord]:
    """The latest version of each named file, in the order given (name order)."""
    found: dict[str, VersionRecord] = {}
    for start in range(0, len(names), _IN_BATCH):
        batch = names[start : start + _IN_BATCH]
        marks = ", ".join("?" * len(batch))
        sql = (f"SELECT {_COLUMNS}, 1 FROM files AS f JOIN versions AS v ON v.file_id = f.file_id"
               f" WHERE v.version = {_MAX_VERSION} AND v.delete_marker = 0 AND f.name IN ({marks})")
        found.update((record.name, record) for record in map(_record, conn.execute(sql, batch)))
    return [found[name] for name in names if name in found]


def _versions_of(conn: sqlite3.Connection, file_id: str) -> list[VersionRecord]:
    rows = conn.execute(f"{_SELECT} WHERE v.file_id = ? ORDER BY v.version DESC", (file_id,))
    return [_record(row) for row in rows]


def _find_token(conn: sqlite3.Connection, token_id: str) -> TokenRecord | None:
    row = conn.execute(f"{_SELECT_TOKEN} WHERE token_id = ?", (token_id,)).fetchone()
    return None if row is None else TokenRecord(*row)


def _find_s3_key(conn: sqlite3.Connection, access_key_id: str) -> S3KeyRecord | None:
    row = conn.execute(f"{_SELECT_S3_KEY} WHERE access_key_id = ?", (access_key_id,)).fetchone()
    return None if row is None else S3KeyRecord(*row)


def _dump_chunks(chunks: Sequence[ChunkRef]) -> str:
    return json.dumps(chunk_rows(chunks))


def _record(row: Sequence[Any]) -> VersionRecord:
    (file_id, version_id, number, name, size, sha256, chunks, content_type, metadata, created_at, policy,
     delete_marker, null_version, latest) = row
    return VersionRecord(
        file_id=file_id, version_id=version_id, version=number, name=name, size=size, sha256=sha256,
        chunks=chunks_of_rows(json.loads(chunks)),
        content_type=content_type, metadata=json.loads(metadata), created_at=created_at,
        latest=bool(latest), policy=policy, delete_marker=bool(delete_marker), null_version=bool(null_version),
    )
