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
Conditional commits rest on the same claim: the file document names its latest claimed version
(`head`) and whether that is a delete marker (`deleted`), both set by the $inc that claims a number,
so a commit whose condition is on the latest version claims only while the document still matches
it. Deleting the head version points `head` at the version now latest, unless a claim came between.
A null version replaces the name's older null versions once it is stored (and yields to a newer one).
API tokens live in a third collection, `tokens`, one document each, unique on token_id; S3 access
keys likewise in `s3_keys`, unique on access_key_id (their secrets only sealed), and S3 buckets in
`buckets`, unique on name. Open S3 multipart uploads and their parts live in `multipart_uploads` and
`multipart_parts` (peer/metadata/mongo_multipart.py).
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
    PreconditionFailed,
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
    chunk_docs,
    chunks_of_docs,
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
from peer.metadata.mongo_multipart import MongoMultipart
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
# A bucket written before policies has no `policy` field: the record's default "" reads it back.
_BUCKET_PROJECTION = {"_id": False, "name": True, "created_at": True, "versioning": True, "policy": True}
_S3_KEY_PROJECTION = {"_id": False, **dict.fromkeys(S3_KEY_FIELDS, True)}


class MongoStore(MongoMultipart):
    """MetadataStore on MongoDB; reads go to the primary so a peer sees every acknowledged commit.
    The multipart-upload methods come from `MongoMultipart` (peer/metadata/mongo_multipart.py)."""

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
        self._uploads: Collection[Doc] = db.get_collection("multipart_uploads")
        self._parts: Collection[Doc] = db.get_collection("multipart_parts")
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
        self.ensure_multipart_indexes()

    # -- MetadataStore ---------------------------------------------------------------------------

    def commit_version(self, new: NewVersion) -> VersionRecord:
        if not new.name:
            raise InvalidRequest("file name must not be empty")
        created_at = new.created_at or time.time()
        with self._guard():
            for _ in range(_COMMIT_ATTEMPTS):
                self._require_source(new)
                version_id = uuid.uuid4().hex
                file = self._claim_number(new, created_at, version_id)
                doc = _version_doc(file, new, created_at, version_id)
                self._versions.insert_one(doc)
                if self._files.find_one({"file_id": file["file_id"]}, {"_id": True}) is None:
                    # The file was deleted while this commit ran; its version must not outlive it.
                    self._versions.delete_one({"version_id": version_id})
                    continue
                if new.source_version and self._versions.find_one(
                        {"version_id": new.source_version}, {"_id": True}) is None:
                    # The source went before this version referenced its chunks: they may be collected.
                    self._remove(file["file_id"], version_id)
                    raise VersionNotFound("the copy source", new.source_version)
                if new.null_version:
                    self._replace_null(file["file_id"], file["last_version"], version_id)
                return _record(doc, latest=self._is_latest(file["file_id"], file["last_version"]))
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
            cursor = self._files.find({"name": name_range, "deleted": {"$ne": True}},
                                      {"_id": False, "file_id": True, "name": True})
            files = list(cursor.sort("name", ASCENDING).limit(limit + 1))
            page = files[:limit]
            latest = _live(self._latest_docs([file["file_id"] for file in page]))
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
            cursor = self._files.find({"name": name_range, "deleted": {"$ne": True}},
                                      {"_id": False, "file_id": True, "name": True})
            docs = list(cursor.sort("name", ASCENDING).limit(count))
            file_ids.update((doc["name"], doc["file_id"]) for doc in docs)
            return [doc["name"] for doc in docs]

        with self._guard():
            keys = page_keys(prefix, delimiter, limit, page_token, scan)
            latest = _live(self._latest_docs([file_ids[name] for name in keys.names]))
        records = [_record(latest[file_ids[n]], latest=True) for n in keys.names if file_ids[n] in latest]
        return ListPage(files=tuple(records), next_token=keys.next_token, prefixes=tuple(keys.prefixes))

    def list_versions(self, ref: FileRefSpec) -> list[VersionRecord]:
        with self._guard():
            records = self._versions_of(self._file_id(ref))
        if not records:
            raise FileNotFound(str(ref))
        return records

    def list_all_versions(
        self, prefix: str, limit: int, after_name: str = "", after_version: str = "", delimiter: str = ""
    ) -> VersionPage:
        """Names from range reads of the files collection (files whose latest version is a delete
        marker included), each file's versions from the (file_id, version) index."""
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

        def file_id_of(name: str) -> str | None:
            if name not in file_ids:
                file = self._files.find_one({"name": name}, {"_id": False, "file_id": True})
                if file is None:
                    return None
                file_ids[name] = file["file_id"]
            return file_ids[name]

        def versions(name: str, below: int | None, count: int) -> list[VersionRecord]:
            file_id = file_id_of(name)
            if file_id is None:
                return []
            query: Doc = {"file_id": file_id} if below is None else {"file_id": file_id, "version": {"$lt": below}}
            docs = self._versions.find(query, _NO_ID).sort("version", DESCENDING).limit(count)
            # Below a version that exists no version is the latest; else the first one is.
            return [_record(doc, latest=below is None and index == 0) for index, doc in enumerate(docs)]

        def number_of(name: str, version_id: str) -> int | None:
            file_id = file_id_of(name)
            doc = None if file_id is None else self._versions.find_one(
                {"file_id": file_id, "version_id": version_id}, {"_id": False, "version": True})
            return None if doc is None else int(doc["version"])

        with self._guard():
            return page_versions(prefix, delimiter, limit, after_name, after_version, scan, versions, number_of)

    def delete_version(self, ref: FileRefSpec, version: VersionSpec) -> VersionRecord:
        check_version_spec(version)
        with self._guard():
            record = self._find_version(ref, version)
            if not self._remove(record.file_id, record.version_id):
                raise VersionNotFound(str(ref), str(version))  # a concurrent delete took it first
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
                found.update(self.part_chunks(wanted[start : start + _IN_BATCH]))  # parts before versions
                query = {"chunk_ids": {"$in": wanted[start : start + _IN_BATCH]}}
                for doc in self._versions.find(query, {"_id": False, "chunk_ids": True}):
                    found.update(doc["chunk_ids"])
        return found.intersection(wanted)

    def placements(self, stored: Sequence[str], default_policy: str) -> dict[str, tuple[Placed, ...]]:
        wanted = list(dict.fromkeys(stored))
        wanted_set = set(wanted)
        found: dict[str, set[Placed]] = {}
        seen: set[str] = set()
        with self._guard():
            for start in range(0, len(wanted), _IN_BATCH):
                query = {"chunk_ids": {"$in": wanted[start : start + _IN_BATCH]},
                         "policy": {"$nin": ["", skipped_policy(default_policy)]}}
                for doc in self._versions.find(query, {"_id": False, "version_id": True, "policy": True,
                                                       "chunks": True}):
                    if doc["version_id"] not in seen:
                        seen.add(doc["version_id"])
                        placements_in(doc["policy"], chunks_of_docs(doc["chunks"]), wanted_set, found)
        return sorted_placements(found)

    def coded_versions(self, after: str, limit: int) -> list[CodedVersion]:
        check_limit(limit)
        query = {"policy": {"$regex": "^ec:"}, "version_id": {"$gt": after}}
        with self._guard():
            docs = self._versions.find(query, {"_id": False, "version_id": True, "policy": True, "chunks": True})
            return [CodedVersion(d["version_id"], d["policy"], chunks_of_docs(d["chunks"]))
                    for d in docs.sort("version_id", ASCENDING).limit(limit)]

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
        return self._set_bucket(name, {"versioning": versioning})

    def set_bucket_policy(self, name: str, policy: str) -> BucketRecord:
        return self._set_bucket(name, {"policy": policy})

    def _set_bucket(self, name: str, fields: Doc) -> BucketRecord:
        with self._guard():
            doc = self._buckets.find_one_and_update(
                {"name": name}, {"$set": fields},
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

    def _claim_number(self, new: NewVersion, now: float, version_id: str) -> Doc:
        """The name's file document after taking the next version number on it, for `version_id`
        (its head from then on). With a condition on the latest version (NewVersion.if_latest) the
        number is taken only while the document still says that version is the latest."""
        name = new.name
        head = {"head": version_id, "deleted": new.delete_marker}
        claim: Doc = {"$inc": {"last_version": 1, "live_versions": 1}, "$set": head}
        for _ in range(_COMMIT_ATTEMPTS):
            if new.if_latest is not None:
                file = self._claim_if(name, new.if_latest, claim, {"name": name, "file_id": uuid.uuid4().hex,
                                      "created_at": now, "last_version": 1, "live_versions": 1, **head})
                if file is None:
                    continue
                return file
            try:
                file = self._files.find_one_and_update(
                    {"name": name},
                    {**claim, "$setOnInsert": {"file_id": uuid.uuid4().hex, "created_at": now}},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError:  # a racing first upload inserted the name: $inc its document
                continue
            if file is not None:
                return file
        raise VersionConflict(f"{name}: could not claim a version number")

    def _claim_if(self, name: str, expected: str, claim: Doc, first: Doc) -> Doc | None:
        """The claimed file document when the name's latest version is `expected` ("" for none:
        no file, or a delete marker); None to try again; PreconditionFailed when it is not."""
        if expected:
            condition: Doc = {"name": name, "head": expected, "deleted": {"$ne": True}}
        else:
            condition = {"name": name, "$or": [{"deleted": True}, {"live_versions": {"$lte": 0}}]}
        file = self._files.find_one_and_update(condition, claim, return_document=ReturnDocument.AFTER)
        if file is not None:
            return file
        current = self._files.find_one({"name": name}, _NO_ID)
        if current is None:
            if expected:
                raise PreconditionFailed(f"{name} does not exist")
            try:
                self._files.insert_one(dict(first))
            except DuplicateKeyError:  # a racing commit created the name: judge it again
                return None
            first.pop("_id", None)
            return first
        if "head" not in current:  # a file from before heads were kept: record its head, then judge
            self._set_head(current)
            return None
        if _holds(current, expected):  # it changed since the claim was refused: judge it again
            return None
        if expected:
            raise PreconditionFailed(f"the latest version of {name} is no longer {expected}")
        raise PreconditionFailed(f"{name} exists already")

    def _set_head(self, file: Doc) -> None:
        """Records the head of a file document that has none (written before heads were kept)."""
        latest = self._latest_docs([file["file_id"]]).get(file["file_id"])
        head = {"head": None if latest is None else latest["version_id"],
                "deleted": bool(latest is not None and latest.get("delete_marker", False))}
        self._files.update_one(
            {"file_id": file["file_id"], "head": {"$exists": False}, "last_version": file["last_version"]},
            {"$set": head},
        )

    def _require_source(self, new: NewVersion) -> None:
        if new.source_version and self._versions.find_one({"version_id": new.source_version}, {"_id": True}) is None:
            raise VersionNotFound("the copy source", new.source_version)

    def _remove(self, file_id: str, version_id: str) -> bool:
        """Deletes one version document; False when it was gone already. A head that was this
        version moves to the version now latest, and the file's live count drops."""
        if self._versions.delete_one({"version_id": version_id}).deleted_count == 0:
            return False
        file = self._files.find_one({"file_id": file_id, "head": version_id}, {"_id": False, "last_version": True})
        if file is not None:
            latest = self._latest_docs([file_id]).get(file_id)
            head = {"head": None if latest is None else latest["version_id"],
                    "deleted": bool(latest is not None and latest.get("delete_marker", False))}
            # Conditional: a commit that claimed a number since keeps the head it set.
            self._files.update_one({"file_id": file_id, "head": version_id, "last_version": file["last_version"]},
                                   {"$set": head})
        self._forget_version(file_id)
        return True

    def _replace_null(self, file_id: str, number: int, version_id: str) -> None:
        """After storing null version `number`: the name's older null versions go, and this one
        goes in turn when a newer null version was stored meanwhile."""
        older = self._versions.find({"file_id": file_id, "null_version": True, "version": {"$lt": number}},
                                    {"_id": False, "version_id": True})
        for doc in list(older):
            self._remove(file_id, doc["version_id"])
        newer = self._versions.find_one({"file_id": file_id, "null_version": True, "version": {"$gt": number}},
                                        {"_id": True})
        if newer is not None:
            self._remove(file_id, version_id)

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


def _holds(file: Mapping[str, Any], expected: str) -> bool:
    """Whether a file document says its latest version is `expected` (_claim_if's condition)."""
    if expected:
        return bool(file.get("head") == expected and not file.get("deleted", False))
    return bool(file.get("deleted", False) or file.get("live_versions", 0) <= 0)


def _live(latest: dict[str, Doc]) -> dict[str, Doc]:
    """The latest version documents that are not delete markers."""
    return {file_id: doc for file_id, doc in latest.items() if not doc.get("delete_marker", False)}


def _version_doc(file: Mapping[str, Any], new: NewVersion, created_at: float, version_id: str) -> Doc:
    return {
        "version_id": version_id,
        "file_id": file["file_id"],
        "version": file["last_version"],
        "name": new.name,
        "size": new.size,
        "sha256": new.sha256,
        "chunks": chunk_docs(new.chunks),
        "chunk_ids": stored_ids(new.chunks),
        "content_type": new.content_type,
        # Pairs, not a sub-document: user keys may contain "." or start with "$".
        "metadata": [[key, value] for key, value in new.metadata.items()],
        "created_at": created_at,
        "policy": new.policy,
        "delete_marker": new.delete_marker,
        "null_version": new.null_version,
    }


def _record(doc: Mapping[str, Any], latest: bool) -> VersionRecord:
    return VersionRecord(
        file_id=doc["file_id"],
        version_id=doc["version_id"],
        version=doc["version"],
        name=doc["name"],
        size=doc["size"],
        sha256=doc["sha256"],
        chunks=chunks_of_docs(doc["chunks"]),
        content_type=doc["content_type"],
        metadata={key: value for key, value in doc["metadata"]},
        created_at=doc["created_at"],
        latest=latest,
        policy=doc.get("policy", ""),  # documents stored before versions recorded a policy lack it
        delete_marker=doc.get("delete_marker", False),  # and before delete markers, these two
        null_version=doc.get("null_version", False),
    )
