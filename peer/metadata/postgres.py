"""PostgreSQL metadata backend (psycopg 3): peers on many hosts share one database.

Concurrency rests on the row of the name in `files`, which every write to a file locks first:
- a commit claims its number with one upsert of that row (`last_version + 1`, inserted on the first
  upload; the unique name settles racing first uploads), so commits to one name queue on the row lock
  and get consecutive numbers, which a rolled-back transaction never consumes;
- the commit's conditions (`if_latest`, `source_version`) are read after the lock is held, in READ
  COMMITTED, so they see every commit before it and none can slip in between;
- deleting a version or a file locks the same row first, so it never interleaves with a commit.
Writes therefore run in READ COMMITTED with those locks (retried on a deadlock or a serialization
failure, which a PostgreSQL-compatible database running SERIALIZABLE may report instead); reads that
take several statements run in one REPEATABLE READ READ ONLY snapshot. Names and ids compare by code
point as in the other backends: those columns use the "C" collation on a UTF-8 database.

Outages: a connection lost or refused is MetadataUnavailable, within `connect_timeout` (3 s unless the
URI sets it); a statement waits at most `statement_timeout` (30 s unless the URI's `options` set it).
Pooled connections that died with the server are dropped and the call tried once more on a new one,
so a peer recovers by itself when the server returns. A connection lost while its COMMIT was in flight
leaves the commit in doubt; commit_version then waits, up to IN_DOUBT_WAIT_S, until the server can
tell whether that transaction committed, and answers accordingly, so an upload the client is told
failed never appears later (see `_resolve`). The schema is created on first use, under an advisory
lock, so a peer starts while the server is down and reports the outage through ping().
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

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
from peer.metadata.postgres_multipart import MULTIPART_SCHEMA, READ, WRITE, PostgresMultipart, parts_referencing
from peer.metadata.store import (
    BucketRecord,
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

log = logging.getLogger(__name__)

T = TypeVar("T")
Conn = psycopg.Connection[tuple[Any, ...]]

SCHEMA_VERSION = 1
BACKEND = "postgresql"
# How long a commit whose COMMIT was in flight when its connection broke waits for the server to say
# whether it committed, before it gives up and reports the outcome unknown.
IN_DOUBT_WAIT_S = 20.0
# libpq connection parameters used unless the URI sets them: fail within seconds when the server is
# down, and notice a dead server on an idle-looking socket (TCP only; a Unix socket fails at once).
_CONNECT_DEFAULTS = {
    "connect_timeout": "3",
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "application_name": "dfs-peer",
}
# Server settings for the session, placed before the URI's own `options` so that those win: no
# statement waits on a lock for ever, and a transaction whose peer vanished releases its locks.
_SESSION_OPTIONS = "-c statement_timeout=30000 -c idle_in_transaction_session_timeout=60000"
_RETRY_STATES = {"40001", "40P01"}  # serialization failure, deadlock detected: nothing was committed
_ATTEMPTS = 8
_MAX_IDLE_CONNECTIONS = 8
_SCHEMA_LOCK = 0x64667300  # the advisory lock that serializes schema creation across peers

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS dfs_schema (
        id INTEGER PRIMARY KEY,
        version INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS files (
        file_id TEXT COLLATE "C" PRIMARY KEY,
        name TEXT COLLATE "C" NOT NULL UNIQUE,
        created_at DOUBLE PRECISION NOT NULL,
        last_version BIGINT NOT NULL,
        deleted BOOLEAN NOT NULL DEFAULT FALSE
    )""",
    "CREATE INDEX IF NOT EXISTS files_live_by_name ON files (name) WHERE NOT deleted",
    """CREATE TABLE IF NOT EXISTS versions (
        version_id TEXT COLLATE "C" PRIMARY KEY,
        file_id TEXT COLLATE "C" NOT NULL REFERENCES files (file_id) ON DELETE CASCADE,
        version BIGINT NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        size BIGINT NOT NULL,
        sha256 TEXT NOT NULL,
        chunks TEXT NOT NULL,
        content_type TEXT NOT NULL,
        metadata TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        policy TEXT COLLATE "C" NOT NULL DEFAULT '',
        delete_marker BOOLEAN NOT NULL DEFAULT FALSE,
        null_version BOOLEAN NOT NULL DEFAULT FALSE,
        UNIQUE (file_id, version)
    )""",
    # One row per (version, stored id) pair, indexed by the id, as SQLite's: what GC and repair ask.
    """CREATE TABLE IF NOT EXISTS chunk_refs (
        version_id TEXT COLLATE "C" NOT NULL REFERENCES versions (version_id) ON DELETE CASCADE,
        chunk_id TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (version_id, chunk_id)
    )""",
    "CREATE INDEX IF NOT EXISTS chunk_refs_by_chunk ON chunk_refs (chunk_id)",
    "CREATE INDEX IF NOT EXISTS versions_coded ON versions (version_id) WHERE policy LIKE 'ec:%'",
    """CREATE TABLE IF NOT EXISTS tokens (
        token_id TEXT COLLATE "C" PRIMARY KEY,
        secret_sha256 TEXT NOT NULL,
        role TEXT NOT NULL,
        name TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        revoked_at DOUBLE PRECISION
    )""",
    """CREATE TABLE IF NOT EXISTS s3_keys (
        access_key_id TEXT COLLATE "C" PRIMARY KEY,
        secret_ciphertext TEXT NOT NULL,
        nonce TEXT NOT NULL,
        key_id TEXT NOT NULL,
        role TEXT NOT NULL,
        name TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        revoked_at DOUBLE PRECISION
    )""",
    """CREATE TABLE IF NOT EXISTS buckets (
        name TEXT COLLATE "C" PRIMARY KEY,
        created_at DOUBLE PRECISION NOT NULL,
        versioning TEXT NOT NULL DEFAULT '',
        policy TEXT NOT NULL DEFAULT ''
    )""",
)
_BUCKET_COLUMNS = "name, created_at, versioning, policy"  # BucketRecord's fields, in order

_COLUMNS = (
    "v.file_id, v.version_id, v.version, v.name, v.size, v.sha256, v.chunks, v.content_type,"
    " v.metadata, v.created_at, v.policy, v.delete_marker, v.null_version"
)
_MAX_VERSION = "(SELECT MAX(w.version) FROM versions AS w WHERE w.file_id = v.file_id)"
_SELECT = f"SELECT {_COLUMNS}, v.version = {_MAX_VERSION} FROM versions AS v"
_SELECT_TOKEN = f"SELECT {', '.join(TOKEN_FIELDS)} FROM tokens"
_SELECT_S3_KEY = f"SELECT {', '.join(S3_KEY_FIELDS)} FROM s3_keys"
_LATEST_LIVE = (
    f"SELECT {_COLUMNS}, TRUE FROM files AS f JOIN versions AS v ON v.file_id = f.file_id"
    f" WHERE v.version = {_MAX_VERSION} AND NOT v.delete_marker"
)


class CommitInDoubt(Exception):
    """The connection broke while its COMMIT was in flight: the transaction may or may not have committed."""

    def __init__(self, session: tuple[int, datetime] | None, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.session = session


class PostgresStore(PostgresMultipart):
    """MetadataStore on PostgreSQL; safe to share between threads. The multipart-upload methods come
    from `PostgresMultipart` (peer/metadata/postgres_multipart.py)."""

    backend = BACKEND

    def __init__(self, uri: str) -> None:
        self._conninfo = connection_info(uri)
        self._idle: list[Conn] = []
        self._sessions: dict[int, tuple[int, datetime] | None] = {}  # id(conn) -> (backend pid, start)
        self._lock = threading.Lock()
        self._schema_lock = threading.Lock()
        self._closed = False
        self._schema_ready = False
        try:
            self._ensure_schema()
        except MetadataUnavailable as exc:  # the server is down: the peer starts, and ping() says why
            log.warning("metadata schema not checked yet: %s", exc)

    # -- MetadataStore ---------------------------------------------------------------------------

    def commit_version(self, new: NewVersion) -> VersionRecord:
        """One transaction per commit: PostgreSQL already shares a WAL flush among commits that
        arrive together, so no group commit is needed here for throughput."""
        if not new.name:
            raise InvalidRequest("file name must not be empty")
        created_at = new.created_at or time.time()
        version_id = uuid.uuid4().hex
        written: list[VersionRecord] = []  # what the last attempt wrote, should its COMMIT go astray

        def commit(conn: Conn) -> VersionRecord:
            _check_source(conn, new)
            file_id, number = _claim_number(conn, new.name, created_at)
            _check_latest(conn, new, file_id)
            if new.null_version:  # cascades to the chunk references of the version it replaces
                conn.execute("DELETE FROM versions WHERE file_id = %s AND null_version", (file_id,))
            conn.execute(
                "INSERT INTO versions (version_id, file_id, version, name, size, sha256, chunks, content_type,"
                " metadata, created_at, policy, delete_marker, null_version)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (version_id, file_id, number, new.name, new.size, new.sha256, json.dumps(chunk_rows(new.chunks)),
                 new.content_type, json.dumps(dict(new.metadata)), created_at, new.policy,
                 new.delete_marker, new.null_version),
            )
            conn.execute(
                "INSERT INTO chunk_refs (version_id, chunk_id) SELECT %s, unnest(%s::text[])"
                " ON CONFLICT DO NOTHING", (version_id, stored_ids(new.chunks)),
            )
            conn.execute("UPDATE files SET deleted = %s WHERE file_id = %s", (new.delete_marker, file_id))
            written[:] = [VersionRecord(
                file_id=file_id, version_id=version_id, version=number, name=new.name, size=new.size,
                sha256=new.sha256, chunks=tuple(new.chunks), content_type=new.content_type,
                metadata=dict(new.metadata), created_at=created_at, latest=True, policy=new.policy,
                delete_marker=new.delete_marker, null_version=new.null_version,
            )]
            return written[0]

        try:
            return self._transaction(WRITE, commit, in_doubt=True)
        except CommitInDoubt as doubt:
            return self._resolve(doubt, written[0])

    def get_version(self, ref: FileRefSpec, version: VersionSpec) -> VersionRecord:
        check_version_spec(version)
        return self._transaction(READ, lambda conn: _find_version(conn, ref, version))

    def list_files(self, prefix: str, limit: int, page_token: str, delimiter: str = "") -> ListPage:
        if delimiter:
            return self._list_rolled_up(prefix, limit, page_token, delimiter)
        check_limit(limit)
        sql, args = f"{_LATEST_LIVE} AND f.name >= %s AND f.name > %s", [prefix, decode_token(page_token)]
        upper = prefix_upper_bound(prefix)
        if upper is not None:
            sql += " AND f.name < %s"
            args.append(upper)

        def page(conn: Conn) -> list[VersionRecord]:
            return [_record(row) for row in conn.execute(f"{sql} ORDER BY f.name LIMIT %s", [*args, limit + 1])]

        records = self._transaction(READ, page)
        next_token = encode_token(records[limit - 1].name) if len(records) > limit else ""
        return ListPage(files=tuple(records[:limit]), next_token=next_token)

    def _list_rolled_up(self, prefix: str, limit: int, page_token: str, delimiter: str) -> ListPage:
        """Keys from name-only range reads of the live files' name index, then the records of the
        page's files, all in one snapshot."""
        within, limits = _name_range(prefix)

        def page(conn: Conn) -> ListPage:
            def scan(bound: str, inclusive: bool, count: int) -> list[str]:
                sql = f"SELECT name FROM files WHERE {within} AND NOT deleted AND name {'>=' if inclusive else '>'} %s"
                return [row[0] for row in conn.execute(f"{sql} ORDER BY name LIMIT %s", [*limits, bound, count])]

            keys = page_keys(prefix, delimiter, limit, page_token, scan)
            records = _latest_named(conn, keys.names)
            return ListPage(files=tuple(records), next_token=keys.next_token, prefixes=tuple(keys.prefixes))

        return self._transaction(READ, page)

    def list_versions(self, ref: FileRefSpec) -> list[VersionRecord]:
        return self._transaction(READ, lambda conn: _versions_of(conn, _file_id(conn, ref)))

    def list_all_versions(
        self, prefix: str, limit: int, after_name: str = "", after_version: str = "", delimiter: str = ""
    ) -> VersionPage:
        within, limits = _name_range(prefix)
        named = f"{_SELECT} JOIN files AS f ON f.file_id = v.file_id WHERE f.name = %s"

        def page(conn: Conn) -> VersionPage:
            def scan(bound: str, inclusive: bool, count: int) -> list[str]:
                sql = f"SELECT name FROM files WHERE {within} AND name {'>=' if inclusive else '>'} %s"
                return [row[0] for row in conn.execute(f"{sql} ORDER BY name LIMIT %s", [*limits, bound, count])]

            def versions(name: str, below: int | None, count: int) -> list[VersionRecord]:
                older, args = ("", [name, count]) if below is None else (" AND v.version < %s", [name, below, count])
                rows = conn.execute(f"{named}{older} ORDER BY v.version DESC LIMIT %s", args)
                return [_record(row) for row in rows]

            def number_of(name: str, version_id: str) -> int | None:
                row = conn.execute(
                    "SELECT v.version FROM versions AS v JOIN files AS f ON f.file_id = v.file_id"
                    " WHERE f.name = %s AND v.version_id = %s", (name, version_id),
                ).fetchone()
                return None if row is None else int(row[0])

            return page_versions(prefix, delimiter, limit, after_name, after_version, scan, versions, number_of)

        return self._transaction(READ, page)

    def delete_version(self, ref: FileRefSpec, version: VersionSpec) -> VersionRecord:
        check_version_spec(version)

        def delete(conn: Conn) -> VersionRecord:
            file_id = _file_id(conn, ref, lock=True)
            record = _find_version(conn, FileRefSpec(file_id=file_id), version, str(ref))
            conn.execute("DELETE FROM versions WHERE version_id = %s", (record.version_id,))
            latest = conn.execute(
                "SELECT delete_marker FROM versions WHERE file_id = %s ORDER BY version DESC LIMIT 1", (file_id,)
            ).fetchone()
            if latest is None:  # a file without versions does not exist: its name starts over
                conn.execute("DELETE FROM files WHERE file_id = %s", (file_id,))
            else:  # deleting a latest delete marker brings the file back
                conn.execute("UPDATE files SET deleted = %s WHERE file_id = %s", (latest[0], file_id))
            return record

        return self._transaction(WRITE, delete)

    def delete_file(self, ref: FileRefSpec) -> list[VersionRecord]:
        def delete(conn: Conn) -> list[VersionRecord]:
            file_id = _file_id(conn, ref, lock=True)
            records = _versions_of(conn, file_id)
            conn.execute("DELETE FROM files WHERE file_id = %s", (file_id,))  # cascades to versions
            return records

        return self._transaction(WRITE, delete)

    def referenced_chunks(self, chunk_ids: Sequence[str]) -> set[str]:
        wanted = list(dict.fromkeys(chunk_ids))
        if not wanted:
            return set()

        def referenced(conn: Conn) -> set[str]:  # one snapshot: the parts and the versions of one moment
            found = parts_referencing(conn, wanted)
            rows = conn.execute("SELECT DISTINCT chunk_id FROM chunk_refs WHERE chunk_id = ANY(%s)", (wanted,))
            return found | {row[0] for row in rows}

        return self._transaction(READ, referenced)

    def placements(self, stored: Sequence[str], default_policy: str) -> dict[str, tuple[Placed, ...]]:
        wanted = list(dict.fromkeys(stored))
        if not wanted:
            return {}

        def placed(conn: Conn) -> dict[str, tuple[Placed, ...]]:
            found: dict[str, set[Placed]] = {}
            rows = conn.execute(
                "SELECT v.policy, v.chunks FROM versions AS v WHERE v.version_id IN"
                " (SELECT r.version_id FROM chunk_refs AS r WHERE r.chunk_id = ANY(%s))"
                " AND v.policy NOT IN ('', %s) ORDER BY v.version_id", (wanted, skipped_policy(default_policy)),
            )
            for policy, chunks in rows:
                placements_in(policy, chunks_of_rows(json.loads(chunks)), set(wanted), found)
            return sorted_placements(found)

        return self._transaction(READ, placed)

    def coded_versions(self, after: str, limit: int) -> list[CodedVersion]:
        check_limit(limit)

        def coded(conn: Conn) -> list[CodedVersion]:
            rows = conn.execute(
                "SELECT version_id, policy, chunks FROM versions WHERE policy LIKE 'ec:%%' AND version_id > %s"
                " ORDER BY version_id LIMIT %s", (after, limit))
            return [CodedVersion(v, p, chunks_of_rows(json.loads(c))) for v, p, c in rows]

        return self._transaction(READ, coded)

    def add_token(self, record: TokenRecord) -> None:
        if not self._insert_new("tokens", TOKEN_FIELDS, dataclasses.astuple(record)):
            raise InvalidRequest(f"token {record.token_id} already exists")

    def get_token(self, token_id: str) -> TokenRecord | None:
        return self._transaction(READ, lambda conn: _find_token(conn, token_id))

    def list_tokens(self) -> list[TokenRecord]:
        rows = self._transaction(
            READ, lambda conn: conn.execute(f"{_SELECT_TOKEN} ORDER BY created_at, token_id").fetchall())
        return [TokenRecord(*row) for row in rows]

    def revoke_token(self, token_id: str, revoked_at: float) -> TokenRecord:
        def revoke(conn: Conn) -> TokenRecord | None:
            conn.execute("UPDATE tokens SET revoked_at = %s WHERE token_id = %s AND revoked_at IS NULL",
                         (revoked_at, token_id))
            return _find_token(conn, token_id)

        record = self._transaction(WRITE, revoke)
        if record is None:
            raise TokenNotFound(token_id)
        return record

    def add_s3_key(self, record: S3KeyRecord) -> None:
        if not self._insert_new("s3_keys", S3_KEY_FIELDS, dataclasses.astuple(record)):
            raise InvalidRequest(f"S3 access key {record.access_key_id} already exists")

    def get_s3_key(self, access_key_id: str) -> S3KeyRecord | None:
        return self._transaction(READ, lambda conn: _find_s3_key(conn, access_key_id))

    def list_s3_keys(self) -> list[S3KeyRecord]:
        rows = self._transaction(
            READ, lambda conn: conn.execute(f"{_SELECT_S3_KEY} ORDER BY created_at, access_key_id").fetchall())
        return [S3KeyRecord(*row) for row in rows]

    def revoke_s3_key(self, access_key_id: str, revoked_at: float) -> S3KeyRecord:
        def revoke(conn: Conn) -> S3KeyRecord | None:
            conn.execute("UPDATE s3_keys SET revoked_at = %s WHERE access_key_id = %s AND revoked_at IS NULL",
                         (revoked_at, access_key_id))
            return _find_s3_key(conn, access_key_id)

        record = self._transaction(WRITE, revoke)
        if record is None:
            raise S3KeyNotFound(access_key_id)
        return record

    def add_bucket(self, record: BucketRecord) -> None:
        values = (record.name, record.created_at, record.versioning, record.policy)
        if not self._insert_new("buckets", tuple(_BUCKET_COLUMNS.split(", ")), values):
            raise BucketExists(record.name)

    def get_bucket(self, name: str) -> BucketRecord | None:
        row = self._transaction(READ, lambda conn: conn.execute(
            f"SELECT {_BUCKET_COLUMNS} FROM buckets WHERE name = %s", (name,)).fetchone())
        return None if row is None else BucketRecord(*row)

    def list_buckets(self) -> list[BucketRecord]:
        rows = self._transaction(READ, lambda conn: conn.execute(
            f"SELECT {_BUCKET_COLUMNS} FROM buckets ORDER BY name").fetchall())
        return [BucketRecord(*row) for row in rows]

    def set_bucket_versioning(self, name: str, versioning: str) -> BucketRecord:
        return self._set_bucket(name, "versioning", versioning)

    def set_bucket_policy(self, name: str, policy: str) -> BucketRecord:
        return self._set_bucket(name, "policy", policy)

    def _set_bucket(self, name: str, column: str, value: str) -> BucketRecord:
        row = self._transaction(WRITE, lambda conn: conn.execute(
            f"UPDATE buckets SET {column} = %s WHERE name = %s RETURNING {_BUCKET_COLUMNS}", (value, name),
        ).fetchone())
        if row is None:
            raise BucketNotFound(name)
        return BucketRecord(*row)

    def delete_bucket(self, name: str) -> None:
        deleted = self._transaction(
            WRITE, lambda conn: conn.execute("DELETE FROM buckets WHERE name = %s", (name,)).rowcount)
        if deleted == 0:
            raise BucketNotFound(name)

    def ping(self) -> None:
        self._transaction(READ, lambda conn: conn.execute("SELECT 1 FROM files LIMIT 1").fetchall())

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            self._discard(conn)

    # -- transactions ------------------------------------------------------------------------------

    def _insert_new(self, table: str, columns: Sequence[str], values: Sequence[Any]) -> bool:
        """Inserts a row unless its key exists (the first writer keeps it); whether it was inserted."""
        marks = ", ".join(["%s"] * len(columns))
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) ON CONFLICT DO NOTHING"
        return bool(self._transaction(WRITE, lambda conn: conn.execute(sql, values).rowcount))

    def _transaction(self, begin: str, body: Callable[[Conn], T], in_doubt: bool = False) -> T:
        """Runs `body` in one transaction and commits it.

        A deadlock or serialization failure rolled the transaction back, so it is run again. A
        connection that broke before COMMIT was sent committed nothing: when it came from the pool
        (and so may have died with a server that has since restarted), the call is tried once more on
        a new connection; otherwise, or again, the server is unavailable. A write whose connection
        broke while COMMIT was in flight raises CommitInDoubt when the caller resolves it
        (`in_doubt`), else MetadataUnavailable saying the change may or may not have been stored.
        """
        fresh_tried = False
        for attempt in range(_ATTEMPTS):
            conn, pooled = self._acquire()
            try:
                result = self._run(conn, begin, body)
            except _Retry:
                self._release(conn)
                time.sleep(random.uniform(0, 0.01 * 2**attempt))
                continue
            except _Broken as broken:
                self._discard(conn)
                if pooled and not fresh_tried:
                    self._drop_idle()  # the others most likely died with the same server
                    fresh_tried = True
                    continue
                raise MetadataUnavailable(BACKEND, _describe(broken.cause)) from broken.cause
            except CommitInDoubt as doubt:
                self._discard(conn)
                if in_doubt:
                    raise
                raise MetadataUnavailable(
                    BACKEND, f"connection lost while committing; the change may or may not have been stored: {doubt}"
                ) from doubt
            except BaseException:
                self._release(conn)
                raise
            self._release(conn)
            return result
        raise MetadataUnavailable(BACKEND, f"a transaction kept conflicting with others ({_ATTEMPTS} attempts)")

    def _run(self, conn: Conn, begin: str, body: Callable[[Conn], T]) -> T:
        """One attempt: psycopg's errors leave it mapped (module docstring), and the connection is
        left outside any transaction unless it broke."""
        committing = False
        try:
            conn.execute(begin)
            result = body(conn)
            committing = True
            conn.execute("COMMIT")
            return result
        except psycopg.Error as exc:
            if conn.broken or conn.closed:
                if committing and begin != READ:  # a read's COMMIT has nothing to lose
                    raise CommitInDoubt(self._sessions.get(id(conn)), exc) from exc
                raise _Broken(exc) from exc
            _roll_back(conn)
            if exc.sqlstate in _RETRY_STATES:
                raise _Retry() from exc
            if isinstance(exc, psycopg.OperationalError):  # a statement timeout, the server shutting down
                raise MetadataUnavailable(BACKEND, _describe(exc)) from exc
            if isinstance(exc, psycopg.DataError):  # a value PostgreSQL cannot store, such as a NUL
                raise InvalidRequest(f"the metadata store refused a value: {_describe(exc)}") from exc
            raise
        except BaseException:  # a domain answer (not found, a failed condition): nothing to keep
            _roll_back(conn)
            raise

    def _resolve(self, doubt: CommitInDoubt, record: VersionRecord) -> VersionRecord:
        """The outcome of a commit whose connection broke while COMMIT was in flight.

        Once the session that sent COMMIT has no transaction open any more (it is gone, as every
        session of a restarted server is, or idle: it is looked up by backend pid and start time),
        that transaction is either durable or never will be: the version id, chosen before the
        transaction, tells which. The record is the one the transaction wrote; a commit that did not
        happen is reported unavailable, and never appears later.
        """
        version_id = record.version_id
        log.warning("connection lost while committing %s v%d; waiting for the outcome", record.name, record.version)
        deadline = time.monotonic() + IN_DOUBT_WAIT_S
        while True:
            try:
                outcome = self._transaction(READ, lambda conn: _outcome(conn, doubt.session, version_id))
            except MetadataUnavailable:
                outcome = None
            if outcome is True:
                log.info("the commit of %s v%d happened", record.name, record.version)
                return record
            if outcome is False:
                raise MetadataUnavailable(BACKEND, "connection lost while committing; the version was not stored")
            if time.monotonic() >= deadline:
                raise MetadataUnavailable(
                    BACKEND, f"connection lost while committing, and whether version {version_id} was stored"
                    f" is not known after {IN_DOUBT_WAIT_S:.0f} s: list the file's versions to see")
            time.sleep(0.2)

    # -- connections -------------------------------------------------------------------------------

    def _acquire(self) -> tuple[Conn, bool]:
        """A connection, and whether it came from the pool (it may have died since it was used)."""
        with self._lock:
            if self._closed:
                raise MetadataUnavailable(BACKEND, "store is closed")
            if self._idle:
                return self._idle.pop(), True
        if not self._schema_ready:
            self._ensure_schema()
        return self._connect(), False

    def _connect(self) -> Conn:
        try:
            conn: Conn = psycopg.connect(self._conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise MetadataUnavailable(BACKEND, _describe(exc)) from exc
        try:
            row = conn.execute(
                "SELECT current_setting('synchronous_commit'), pg_backend_pid(),"
                " (SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()),"
                " current_setting('server_encoding')").fetchone()
            assert row is not None
            setting, pid, started, encoding = row
            if setting == "off":  # an acknowledged commit must be durable: never acknowledge before the flush
                conn.execute("SET synchronous_commit = on")
        except psycopg.Error as exc:
            conn.close()
            raise MetadataUnavailable(BACKEND, _describe(exc)) from exc
        if encoding != "UTF8":
            conn.close()
            raise MetadataUnavailable(BACKEND, f"the database's encoding is {encoding}; it must be UTF8")
        with self._lock:
            self._sessions[id(conn)] = (int(pid), started) if started is not None else None
        return conn

    def _release(self, conn: Conn) -> None:
        if conn.broken or conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self._discard(conn)
            return
        with self._lock:
            if not self._closed and len(self._idle) < _MAX_IDLE_CONNECTIONS:
                self._idle.append(conn)
                return
        self._discard(conn)

    def _discard(self, conn: Conn) -> None:
        with self._lock:
            self._sessions.pop(id(conn), None)
        conn.close()

    def _drop_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            self._discard(conn)

    def _ensure_schema(self) -> None:
        """Creates the tables (idempotent) and checks the schema version, once per store."""
        with self._schema_lock:
            if self._schema_ready:
                return
            conn = self._connect()
            try:
                self._run(conn, WRITE, _create_schema)
            except (_Broken, _Retry, CommitInDoubt) as exc:
                raise MetadataUnavailable(BACKEND, f"cannot create the schema: {exc}") from exc
            finally:
                self._discard(conn)
            self._schema_ready = True


def _roll_back(conn: Conn) -> None:
    """Ends the connection's open transaction, if any; a connection that breaks meanwhile is left
    broken, for `_release` to discard."""
    if conn.broken or conn.closed or conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        return
    try:
        conn.execute("ROLLBACK")
    except psycopg.Error:
        pass


class _Retry(Exception):
    """The transaction was rolled back by a deadlock or serialization failure; run it again."""


class _Broken(Exception):
    """The connection broke before COMMIT was sent: nothing was committed."""

    def __init__(self, cause: psycopg.Error) -> None:
        super().__init__(str(cause))
        self.cause = cause


def connection_info(uri: str) -> str:
    """The libpq connection string for `uri`, with the defaults the URI leaves unset (ConfigError
    when libpq cannot parse it)."""
    try:
        given = conninfo_to_dict(uri)
    except psycopg.Error as exc:
        raise ConfigError(f"DFS_METADATA: bad postgresql URI: {_describe(exc)}") from exc
    extra: dict[str, Any] = {key: value for key, value in _CONNECT_DEFAULTS.items() if key not in given}
    extra["options"] = f"{_SESSION_OPTIONS} {given.get('options', '')}".strip()
    return make_conninfo(uri, **extra)


def _create_schema(conn: Conn) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
    for statement in (*_SCHEMA, *MULTIPART_SCHEMA):
        conn.execute(statement)
    conn.execute("INSERT INTO dfs_schema (id, version) VALUES (1, %s) ON CONFLICT (id) DO NOTHING", (SCHEMA_VERSION,))
    row = conn.execute("SELECT version FROM dfs_schema WHERE id = 1").fetchone()
    if row is not None and row[0] > SCHEMA_VERSION:
        raise MetadataUnavailable(
            BACKEND, f"the database has metadata schema {row[0]}; this peer reads up to {SCHEMA_VERSION}")


def _outcome(conn: Conn, session: tuple[int, datetime] | None, version_id: str) -> bool | None:
    """True when the version was committed, False when it never will be, None while the session that
    committed it may still be inside its transaction (a server that has not yet seen the connection
    drop, or is still running the COMMIT)."""
    if session is not None:
        row = conn.execute(
            "SELECT state FROM pg_stat_activity WHERE pid = %s AND backend_start = %s", session).fetchone()
        if row is not None and row[0] != "idle":
            return None
    return conn.execute("SELECT 1 FROM versions WHERE version_id = %s", (version_id,)).fetchone() is not None


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


def _name_range(prefix: str) -> tuple[str, list[str]]:
    """The WHERE clause and arguments of the names under `prefix` in the files table."""
    upper = prefix_upper_bound(prefix)
    if upper is None:
        return "name >= %s", [prefix]
    return "name >= %s AND name < %s", [prefix, upper]


def _claim_number(conn: Conn, name: str, now: float) -> tuple[str, int]:
    """The file id for name (created on first upload) and its next version number; the file's row
    stays locked until the transaction ends."""
    row = conn.execute(
        "INSERT INTO files (file_id, name, created_at, last_version) VALUES (%s, %s, %s, 1)"
        " ON CONFLICT (name) DO UPDATE SET last_version = files.last_version + 1 RETURNING file_id, last_version",
        (uuid.uuid4().hex, name, now),
    ).fetchone()
    assert row is not None
    return str(row[0]), int(row[1])


def _check_source(conn: Conn, new: NewVersion) -> None:
    """The copy source must exist, and is share-locked so that it cannot go before this commits."""
    if new.source_version and conn.execute(
        "SELECT 1 FROM versions WHERE version_id = %s FOR SHARE", (new.source_version,)
    ).fetchone() is None:
        raise VersionNotFound("the copy source", new.source_version)


def _check_latest(conn: Conn, new: NewVersion, file_id: str) -> None:
    """NewVersion.if_latest, read while the file's row is locked."""
    if new.if_latest is None:
        return
    row = conn.execute(
        "SELECT version_id, delete_marker FROM versions WHERE file_id = %s ORDER BY version DESC LIMIT 1",
        (file_id,),
    ).fetchone()
    current = "" if row is None or row[1] else str(row[0])
    if current != new.if_latest:
        expected = new.if_latest
        raise PreconditionFailed(f"{new.name} exists already" if not expected
                                 else f"the latest version of {new.name} is no longer {expected}")


def _file_id(conn: Conn, ref: FileRefSpec, lock: bool = False) -> str:
    column, value = ("name", ref.name) if ref.name is not None else ("file_id", ref.file_id)
    row = conn.execute(
        f"SELECT file_id FROM files WHERE {column} = %s{' FOR UPDATE' if lock else ''}", (value,)).fetchone()
    if row is None:
        raise FileNotFound(str(ref))
    return str(row[0])


def _find_version(conn: Conn, ref: FileRefSpec, spec: VersionSpec, shown: str = "") -> VersionRecord:
    file_id = ref.file_id if ref.file_id is not None and shown else _file_id(conn, ref)
    args: tuple[object, ...]
    if spec.number is not None:
        where, args = "v.file_id = %s AND v.version = %s", (file_id, spec.number)
    elif spec.version_id is not None:
        where, args = "v.file_id = %s AND v.version_id = %s", (file_id, spec.version_id)
    else:
        where, args = "v.file_id = %s ORDER BY v.version DESC LIMIT 1", (file_id,)
    row = conn.execute(f"{_SELECT} WHERE {where}", args).fetchone()
    if row is None:
        raise VersionNotFound(shown or str(ref), str(spec))
    return _record(row)


def _latest_named(conn: Conn, names: Sequence[str]) -> list[VersionRecord]:
    """The latest live version of each named file, in the order given (name order)."""
    if not names:
        return []
    found = {r.name: r for r in map(_record, conn.execute(f"{_LATEST_LIVE} AND f.name = ANY(%s)", (list(names),)))}
    return [found[name] for name in names if name in found]


def _versions_of(conn: Conn, file_id: str) -> list[VersionRecord]:
    return [_record(row) for row in conn.execute(f"{_SELECT} WHERE v.file_id = %s ORDER BY v.version DESC",
                                                 (file_id,))]


def _find_token(conn: Conn, token_id: str) -> TokenRecord | None:
    row = conn.execute(f"{_SELECT_TOKEN} WHERE token_id = %s", (token_id,)).fetchone()
    return None if row is None else TokenRecord(*row)


def _find_s3_key(conn: Conn, access_key_id: str) -> S3KeyRecord | None:
    row = conn.execute(f"{_SELECT_S3_KEY} WHERE access_key_id = %s", (access_key_id,)).fetchone()
    return None if row is None else S3KeyRecord(*row)


def _record(row: Sequence[Any]) -> VersionRecord:
    (file_id, version_id, number, name, size, sha256, chunks, content_type, metadata, created_at, policy,
     delete_marker, null_version, latest) = row
    return VersionRecord(
        file_id=file_id, version_id=version_id, version=number, name=name, size=size, sha256=sha256,
        chunks=chunks_of_rows(json.loads(chunks)),
        content_type=content_type, metadata=json.loads(metadata), created_at=created_at,
        latest=bool(latest), policy=policy, delete_marker=bool(delete_marker), null_version=bool(null_version),
    )

