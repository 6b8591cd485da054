"""MongoDB metadata backend: peers on many hosts share one `files` and one `versions` collection.

Without replica-set transactions every invariant rests on single-document atomic updates:
- a commit claims its number with one $inc on the name's file document (upserted on first upload;
  the unique index on name settles racing first uploads), so numbers are never handed out twice;
- that $inc also bumps `live_versions`. Deleting the last version removes the file document only
  while that count is still 0, so a commit that claimed a number meanwhile keeps its file;
- deleting a file removes the file document before its versions, and a commit keeps its version only
  if its file document still exists after the insert, so a commit racing a delete retries as a new file.
A crash between two steps leaves a file document without versions (invisible; its name keeps
counting) or versions without a file document (invisible; they only keep their chunks from GC).
API tokens live in a third collection, `tokens`, one document each, unique on token_id; S3 access
keys likewise in `s3_keys`, unique on access_key_id (their secrets only sealed), and S3 buckets in
`buckets`, unique on name.
Version documents gained `policy` without a migration: one stored before it reads as "" (store.py).
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pymongo import ASCENDING, DESCENDING, MongoClient, ReadPreference, ReturnDocument, WriteConcern
from pymongo.collection import Collection
from pymongo.errors import ConfigurationError, ConnectionFailure, DuplicateKeyError, OperationFailure

from peer.errors import (
    BucketExists,
    BucketNotFound,
    ConfigError,
    FileNotFound,
    InvalidRequest,
    MetadataUnavailable,
    S3KeyNotFound,
    TokenNotFound,
    VersionConflict,
    VersionNotFound,
)
from peer.metadata.common import (
    S3_KEY_FIELDS,
    TOKEN_FIELDS,
    check_limit,
    check_version_spec,
    decode_token,
    encode_token,
    page_keys,
    prefix_upper_bound,
)
from peer.metadata.store import (
    BucketRecord,
    ChunkRef,
    FileRefSpec,
    ListPage,
    NewVersion,
    S3KeyRecord,
    TokenRecord,
    VersionRecord,
    VersionSpec,
)

Doc = dict[str, Any]

# Client settings unless the URI sets them: fail within seconds when MongoDB is down, so callers get
# MetadataUnavailable instead of a request hanging for pymongo's 30 s default.
_CLIENT_DEFAULTS: dict[str, int] = {
    "serverSelectionTimeoutMS": 3000,
    "connectTimeoutMS": 3000,
    "socketTimeoutMS": 30000,
}
_COMMIT_ATTEMPTS = 5
_IN_BATCH = 1000
_NO_ID = {"_id": False}
_TOKEN_PROJECTION = {"_id": False, **dict.fromkeys(TOKEN_FIELDS, True)}
_BUCKET_PROJECTION = {"_id": False, "name": True, "created_at": True, "versioning": True}
_S3_KEY_PROJECTION = {"_id": False, **dict.fromkeys(S3_KEY_FIELDS, True)}


class MongoStore:
    """MetadataStore on MongoDB; reads go to the primary so a peer sees every acknowledged commit."""

    backend = "mongodb"

    def __init__(
        self,
        uri: str,
        database: str = "filestore",
        write_concern: str = "majority",
        client: MongoClient[Doc] | None = None,
    ) -> None:
        self.database = database
        self._owns_client = client is None
        self._client: MongoClient[Doc] = client if client is not None else _connect(uri)
        db = self._client.get_database(
            database, write_concern=_write_concern(write_concern), read_preference=ReadPreference.PRIMARY
        )
        self._files: Collection[Doc] = db.get_collection("files")
        self._versions: Collection[Doc] = db.get_collection("versions")
        self._tokens: Collection[Doc] = db.get_collection("tokens")
        self._buckets: Collection[Doc] = db.get_collection("buckets")
        self._s3_keys: Collection[Doc] = db.get_collection("s3_keys")
        # Indexes are built on first use, not here: a peer must start, and report the outage through
        # ping(), while MongoDB is briefly down. No operation runs before the unique indexes exist.
        self._indexed = False
        self._closed = False
        self._lock = threading.Lock()

    def ensure_indexes(self) -> None:
        self._files.create_index("name", unique=True)
        self._files.create_index("file_id", unique=True)
        self._versions.create_index([("file_id", ASCENDING), ("version", ASCENDING)], unique=True)
        self._versions.create_index("version_id", unique=True)
        self._versions.create_index("name")
        self._versions.create_index("chunk_ids")
        self._tokens.create_index("token_id", unique=True)
        self._buckets.create_index("name", unique=True)
        self._s3_keys.create_index("access_key_id", unique=True)

    # -- MetadataStore ---------------------------------------------------------------------------

    def commit_version(self, new: NewVersion) -> VersionRecord:
        if not new.name:
            raise InvalidRequest("file name must not be empty")
        created_at = new.created_at or time.time()
        with self._guard():
            for _ in range(_COMMIT_ATTEMPTS):
                file = self._claim_number(new.name, created_at)
                doc = _version_doc(file, new, created_at)
                self._versions.insert_one(doc)
                if self._files.find_one({"file_id": file["file_id"]}, {"_id": True}) is not None:
                    return _record(doc, latest=self._is_latest(file["file_id"], file["last_version"]))
                # The file was deleted while this commit ran; its version must not outlive it.
                self._versions.delete_one({"version_id": doc["version_id"]})
        raise VersionConflict(f"{new.name}: file deleted during {_COMMIT_ATTEMPTS} commit attempts")

    def get_version(self, ref: FileRefSpec, version: VersionSpec) -> VersionRecord:
        check_version_spec(version)
        with self._guard():
            return self._find_version(ref, version)

    def list_files(self, prefix: str, limit: int, page_token: str, delimiter: str = "") -> ListPage:
        if delimiter:
            return self._list_rolled_up(prefix, limit, page_token, delimiter)
        check_limit(limit)
        name_range: Doc = {"$gte": prefix, "$gt": decode_token(page_token)}
        upper = prefix_upper_bound(prefix)
        if upper is not None:
            name_range["$lt"] = upper
        with self._guard():
            cursor = self._files.find({"name": name_range}, {"_id": False, "file_id": True, "name": True})
            files = list(cursor.sort("name", ASCENDING).limit(limit + 1))
            page = files[:limit]
            latest = self._latest_docs([file["file_id"] for file in page])
        # A file document with no version yet (a first commit in flight) is not listed.
        records = [_record(latest[f["file_id"]], latest=True) for f in page if f["file_id"] in latest]
        next_token = encode_token(page[-1]["name"]) if len(files) > limit else ""
        return ListPage(files=tuple(records), next_token=next_token)

    def _list_rolled_up(self, prefix: str, limit: int, page_token: str, delimiter: str) -> ListPage:
        """Keys from name-only range reads of the files collection (its unique name index), then the
        latest version of the page's files. As in the plain listing, a file document whose first
        commit is still in flight is not listed as a file; it may still show as a common prefix."""
        upper = prefix_upper_bound(prefix)
        file_ids: dict[str, str] = {}

        def scan(bound: str, inclusive: bool, count: int) -> list[str]:
            name_range: Doc = {"$gte": max(prefix, bound)} if inclusive else {"$gte": prefix, "$gt": bound}
            if upper is not None:
                name_range["$lt"] = upper
            cursor = self._files.find({"name": name_range}, {"_id": False, "file_id": True, "name": True})
            docs = list(cursor.sort("name", ASCENDING).limit(count))
            file_ids.update((doc["name"], doc["file_id"]) for doc in docs)
            return [doc["name"] for doc in docs]

        with self._guard():
            keys = page_keys(prefix, delimiter, limit, page_token, scan)
            latest = self._latest_docs([file_ids[name] for name in keys.names])
        records = [_record(latest[file_ids[n]], latest=True) for n in keys.names if file_ids[n] in latest]
        return ListPage(files=tuple(records), next_token=keys.next_token, prefixes=tuple(keys.prefixes))

    def list_versions(self, ref: FileRefSpec) -> list[VersionRecord]:
        with self._guard():
            records = self._versions_of(self._file_id(ref))
        if not records:
            raise FileNotFound(str(ref))
        return records

    def delete_version(self, ref: FileRefSpec, version: VersionSpec) -> VersionRecord:
        check_version_spec(version)
        with self._guard():
            record = self._find_version(ref, version)
            if self._versions.delete_one({"version_id": record.version_id}).deleted_count == 0:
                raise VersionNotFound(str(ref), str(version))  # a concurrent delete took it first
            self._forget_version(record.file_id)
        return record

    def delete_file(self, ref: FileRefSpec) -> list[VersionRecord]:
        with self._guard():
            file = self._files.find_one_and_delete(_file_query(ref), projection={"file_id": True})
            if file is None:
                raise FileNotFound(str(ref))
            records = self._versions_of(file["file_id"])
            self._versions.delete_many({"file_id": file["file_id"]})
        if not records:  # only a crashed first commit left this file document behind
            raise FileNotFound(str(ref))
        return records

    def referenced_chunks(self, chunk_ids: Sequence[str]) -> set[str]:
        wanted = list(dict.fromkeys(chunk_ids))
        found: set[str] = set()
        with self._guard():
            for start in range(0, len(wanted), _IN_BATCH):
                query = {"chunk_ids": {"$in": wanted[start : start + _IN_BATCH]}}
                for doc in self._versions.find(query, {"_id": False, "chunk_ids": True}):
                    found.update(doc["chunk_ids"])
        return found.intersection(wanted)

    def add_token(self, record: TokenRecord) -> None:
        with self._guard():
            try:
                self._tokens.insert_one(dataclasses.asdict(record))
            except DuplicateKeyError as exc:
                raise InvalidRequest(f"token {record.token_id} already exists") from exc

    def get_token(self, token_id: str) -> TokenRecord | None:
        with self._guard():
            doc = self._tokens.find_one({"token_id": token_id}, _TOKEN_PROJECTION)
        return None if doc is None else TokenRecord(**doc)

    def list_tokens(self) -> list[TokenRecord]:
        with self._guard():
            cursor = self._tokens.find({}, _TOKEN_PROJECTION)
            docs = list(cursor.sort([("created_at", ASCENDING), ("token_id", ASCENDING)]))
        return [TokenRecord(**doc) for doc in docs]

    def revoke_token(self, token_id: str, revoked_at: float) -> TokenRecord:
        with self._guard():
            # Only an unrevoked token is updated, so racing revocations keep whichever landed first.
            doc = self._tokens.find_one_and_update(
                {"token_id": token_id, "revoked_at": None},
                {"$set": {"revoked_at": revoked_at}},
                projection=_TOKEN_PROJECTION,
                return_document=ReturnDocument.AFTER,
            )
            if doc is None:  # unknown, or revoked already
                doc = self._tokens.find_one({"token_id": token_id}, _TOKEN_PROJECTION)
        if doc is None:
            raise TokenNotFound(token_id)
        return TokenRecord(**doc)

    def add_s3_key(self, record: S3KeyRecord) -> None:
        with self._guard():
            try:
                self._s3_keys.insert_one(dataclasses.asdict(record))
            except DuplicateKeyError as exc:
                raise InvalidRequest(f"S3 access key {record.access_key_id} already exists") from exc

    def get_s3_key(self, access_key_id: str) -> S3KeyRecord | None:
        with self._guard():
            doc = self._s3_keys.find_one({"access_key_id": access_key_id}, _S3_KEY_PROJECTION)
        return None if doc is None else S3KeyRecord(**doc)

    def list_s3_keys(self) -> list[S3KeyRecord]:
        with self._guard():
            cursor = self._s3_keys.find({}, _S3_KEY_PROJECTION)
            docs = list(cursor.sort([("created_at", ASCENDING), ("access_key_id", ASCENDING)]))
        return [S3KeyRecord(**doc) for doc in docs]

    def revoke_s3_key(self, access_key_id: str, revoked_at: float) -> S3KeyRecord:
        with self._guard():
            # Only an unrevoked key is updated, so racing revocations keep whichever landed first.
            doc = self._s3_keys.find_one_and_update(
                {"access_key_id": access_key_id, "revoked_at": None},
                {"$set": {"revoked_at": revoked_at}},
                projection=_S3_KEY_PROJECTION,
                return_document=ReturnDocument.AFTER,
            )
            if doc is None:  # unknown, or revoked already
                doc = self._s3_keys.find_one({"access_key_id": access_key_id}, _S3_KEY_PROJECTION)
        if doc is None:
            raise S3KeyNotFound(access_key_id)
        return S3KeyRecord(**doc)

    def add_bucket(self, record: BucketRecord) -> None:
        with self._guard():
            try:
                self._buckets.insert_one(dataclasses.asdict(record))
            except DuplicateKeyError as exc:
                raise BucketExists(record.name) from exc

    def get_bucket(self, name: str) -> BucketRecord | None:
        with self._guard():
            doc = self._buckets.find_one({"name": name}, _BUCKET_PROJECTION)
        return None if doc is None else BucketRecord(**doc)

    def list_buckets(self) -> list[BucketRecord]:
        with self._guard():
            docs = list(self._buckets.find({}, _BUCKET_PROJECTION).sort("name", ASCENDING))
        return [BucketRecord(**doc) for doc in docs]

    def set_bucket_versioning(self, name: str, versioning: str) -> BucketRecord:
        with self._guard():
            doc = self._buckets.find_one_and_update(
                {"name": name}, {"$set": {"versioning": versioning}},
                projection=_BUCKET_PROJECTION, return_document=ReturnDocument.AFTER,
            )
        if doc is None:
            raise BucketNotFound(name)
        return BucketRecord(**doc)

    def delete_bucket(self, name: str) -> None:
        with self._guard():
            if self._buckets.delete_one({"name": name}).deleted_count == 0:
                raise BucketNotFound(name)

    def ping(self) -> None:
        with self._guard():
            self._client.admin.command("ping")

    def close(self) -> None:
        self._closed = True
        if self._owns_client:
            self._client.close()

    # -- steps -----------------------------------------------------------------------------------

    def _claim_number(self, name: str, now: float) -> Doc:
        """The name's file document after taking the next version number on it."""
        for _ in range(_COMMIT_ATTEMPTS):
            try:
                file = self._files.find_one_and_update(
                    {"name": name},
                    {
                        "$inc": {"last_version": 1, "live_versions": 1},
                        "$setOnInsert": {"file_id": uuid.uuid4().hex, "created_at": now},
                    },
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError:  # a racing first upload inserted the name: $inc its document
                continue
            if file is not None:
                return file
        raise VersionConflict(f"{name}: could not claim a version number")

    def _forget_version(self, file_id: str) -> None:
        file = self._files.find_one_and_update(
            {"file_id": file_id}, {"$inc": {"live_versions": -1}}, return_document=ReturnDocument.AFTER
        )
        if file is not None and file["live_versions"] <= 0:
            # Conditional: a commit that claimed a number since the $inc above keeps the file.
            self._files.delete_one({"file_id": file_id, "live_versions": {"$lte": 0}})

    def _file_id(self, ref: FileRefSpec) -> str:
        file = self._files.find_one(_file_query(ref), {"_id": False, "file_id": True})
        if file is None:
            raise FileNotFound(str(ref))
        return str(file["file_id"])

    def _find_version(self, ref: FileRefSpec, spec: VersionSpec) -> VersionRecord:
        file_id = self._file_id(ref)
        if spec.number is None and spec.version_id is None:
            latest = self._latest_docs([file_id]).get(file_id)
            if latest is None:
                raise FileNotFound(str(ref))
            return _record(latest, latest=True)
        query: Doc = {"file_id": file_id}
        if spec.number is not None:
            query["version"] = spec.number
        else:
            query["version_id"] = spec.version_id
        doc = self._versions.find_one(query, _NO_ID)
        if doc is None:
            raise VersionNotFound(str(ref), str(spec))
        return _record(doc, latest=self._is_latest(file_id, doc["version"]))

    def _versions_of(self, file_id: str) -> list[VersionRecord]:
        docs = self._versions.find({"file_id": file_id}, _NO_ID).sort("version", DESCENDING)
        return [_record(doc, latest=index == 0) for index, doc in enumerate(docs)]

    def _is_latest(self, file_id: str, number: int) -> bool:
        newer = self._versions.find_one({"file_id": file_id, "version": {"$gt": number}}, {"_id": True})
        return newer is None

    def _latest_docs(self, file_ids: list[str]) -> dict[str, Doc]:
        """The highest live version document of each file id (the (file_id, version) index serves it)."""
        if not file_ids:
            return {}
        pipeline: list[Doc] = [
            {"$match": {"file_id": {"$in": file_ids}}},
            {"$sort": {"file_id": ASCENDING, "version": DESCENDING}},
            {"$group": {"_id": "$file_id", "doc": {"$first": "$$ROOT"}}},
        ]
        return {group["_id"]: group["doc"] for group in self._versions.aggregate(pipeline)}

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Translates pymongo outages into MetadataUnavailable; a duplicate key is a bug, not an outage."""
        if self._closed:
            raise MetadataUnavailable("mongodb", "store is closed")
        try:
            self._ensure_indexes_once()
            yield
        except DuplicateKeyError:
            raise
        except (ConnectionFailure, OperationFailure) as exc:
            raise MetadataUnavailable("mongodb", _describe(exc)) from exc

    def _ensure_indexes_once(self) -> None:
        if self._indexed:
            return
        with self._lock:
            if not self._indexed:
                self.ensure_indexes()
                self._indexed = True


def _connect(uri: str) -> MongoClient[Doc]:
    given = {key.lower() for key in parse_qs(urlsplit(uri).query)}
    options: dict[str, Any] = {k: v for k, v in _CLIENT_DEFAULTS.items() if k.lower() not in given}
    try:
        return MongoClient(uri, **options)
    except ConfigurationError as exc:  # malformed URI, unknown option, unresolvable SRV record
        raise ConfigError(f"DFS_METADATA: bad mongodb URI: {exc}") from exc


def _write_concern(setting: str) -> WriteConcern:
    """"majority" or a node count; journaled, as an acknowledged upload must survive a crash."""
    w: int | str = int(setting) if setting.isdigit() else setting
    if w == 0:  # unacknowledged writes would report commits that may never have happened
        raise ConfigError("mongodb write concern must acknowledge writes: use \"majority\" or a count >= 1")
    return WriteConcern(w=w, j=True)


def _describe(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:300]}"


def _file_query(ref: FileRefSpec) -> Doc:
    return {"name": ref.name} if ref.name is not None else {"file_id": ref.file_id}


def _version_doc(file: Mapping[str, Any], new: NewVersion, created_at: float) -> Doc:
    return {
        "version_id": uuid.uuid4().hex,
        "file_id": file["file_id"],
        "version": file["last_version"],
        "name": new.name,
        "size": new.size,
        "sha256": new.sha256,
        "chunks": [{"id": c.chunk_id, "size": c.size, "peers": list(c.peers)} for c in new.chunks],
        "chunk_ids": list(dict.fromkeys(c.chunk_id for c in new.chunks)),
        "content_type": new.content_type,
        # Pairs, not a sub-document: user keys may contain "." or start with "$".
        "metadata": [[key, value] for key, value in new.metadata.items()],
        "created_at": created_at,
        "policy": new.policy,
    }


def _record(doc: Mapping[str, Any], latest: bool) -> VersionRecord:
    return VersionRecord(
        file_id=doc["file_id"],
        version_id=doc["version_id"],
        version=doc["version"],
        name=doc["name"],
        size=doc["size"],
        sha256=doc["sha256"],
        chunks=tuple(ChunkRef(c["id"], c["size"], tuple(c["peers"])) for c in doc["chunks"]),
        content_type=doc["content_type"],
        metadata={key: value for key, value in doc["metadata"]},
        created_at=doc["created_at"],
        latest=latest,
        policy=doc.get("policy", ""),  # documents stored before versions recorded a policy lack it
    )
