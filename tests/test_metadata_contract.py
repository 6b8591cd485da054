"""The MetadataStore contract, run against every backend: SQLite, MongoStore on mongomock, a real
MongoDB when DFS_TEST_MONGO_URI is set (each test then gets its own database, dropped afterwards), and
a real PostgreSQL server the session starts itself (tests/pgserver.py; each test gets its own schema).
Backend-specific tests at the end cover what only one backend can get wrong: several processes on
one SQLite file, unopenable paths, an unreachable MongoDB, commits racing deletes on MongoDB, and
several stores on one PostgreSQL database, an unreachable server and a server that restarts.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import math
import multiprocessing
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import mongomock
import psycopg
import pymongo
import pytest
from psycopg.conninfo import conninfo_to_dict

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
from peer.metadata.common import common_prefix, decode_token, encode_token, page_keys, prefix_upper_bound
from peer.metadata.mongo import MongoStore
from peer.metadata.open import open_store
from peer.metadata.postgres import PostgresStore, connection_info
from peer.metadata.sqlite import SqliteStore
from peer.metadata.store import (
    BucketRecord,
    ChunkRef,
    FileRefSpec,
    MetadataStore,
    MultipartUpload,
    NewVersion,
    Placed,
    S3KeyRecord,
    TokenRecord,
    VersionRecord,
    VersionSpec,
)
from tests.pgserver import PgServer, pg_schema_uri, postgres_server

MONGO_URI = os.environ.get("DFS_TEST_MONGO_URI", "")
LATEST = VersionSpec()


@contextmanager
def mongo_database(kind: str) -> Iterator[tuple[Any, str]]:
    """A client and a database name of its own; the database is dropped and the client closed after."""
    if kind == "mongodb" and not MONGO_URI:
        pytest.skip("DFS_TEST_MONGO_URI is not set")
    client: Any = (
        mongomock.MongoClient()
        if kind == "mongomock"
        else pymongo.MongoClient(MONGO_URI, serverSelectionTimeoutMS=3000)
    )
    name = f"dfs_test_{uuid.uuid4().hex}"
    try:
        yield client, name
    finally:
        client.drop_database(name)
        client.close()


@pytest.fixture(params=["sqlite", "mongomock", "mongodb", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MetadataStore]:
    if request.param == "sqlite":
        sqlite_store = SqliteStore(tmp_path / "metadata.db")
        yield sqlite_store
        sqlite_store.close()
        return
    if request.param == "postgresql":
        with pg_schema_uri(request.getfixturevalue("pg_server")) as uri:
            postgres_store = PostgresStore(uri)
            yield postgres_store
            postgres_store.close()
        return
    with mongo_database(request.param) as (client, name):
        mongo_store = MongoStore("mongodb://unused", database=name, client=client)
        yield mongo_store
        mongo_store.close()


@pytest.fixture(params=["mongomock", "mongodb"])
def mongo(request: pytest.FixtureRequest) -> Iterator[tuple[Any, str]]:
    with mongo_database(request.param) as client_and_name:
        yield client_and_name


def new(name: str = "docs/a.txt", chunks: tuple[str, ...] = ("c1",), **fields: Any) -> NewVersion:
    refs = tuple(ChunkRef(chunk_id, 100 + i, ("peer-a", "peer-b")) for i, chunk_id in enumerate(chunks))
    return NewVersion(
        name=name, size=sum(ref.size for ref in refs), sha256="ab" * 32, chunks=refs, **fields
    )


def ref(name: str = "docs/a.txt") -> FileRefSpec:
    return FileRefSpec(name=name)


def token(token_id: str = "0123456789abcdef", created_at: float = 1712345678.25, **fields: Any) -> TokenRecord:
    values: dict[str, Any] = {
        "secret_sha256": hashlib.sha256(b"secret of " + token_id.encode()).hexdigest(),
        "role": "write",
        "name": "ci uploader",
    }
    return TokenRecord(token_id=token_id, created_at=created_at, **(values | fields))


def s3_key(access_key_id: str = "DKAAAAAAAAAAAAAAAAA1", created_at: float = 1712345678.25,
           **fields: Any) -> S3KeyRecord:
    values: dict[str, Any] = {
        "secret_ciphertext": hashlib.sha256(b"sealed " + access_key_id.encode()).hexdigest() + "ab" * 24,
        "nonce": "0f" * 12,
        "key_id": "1234567890abcdef",
        "role": "write",
        "name": "backup job",
    }
    return S3KeyRecord(access_key_id=access_key_id, created_at=created_at, **(values | fields))


def numbers(records: list[VersionRecord]) -> list[int]:
    return [record.version for record in records]


def list_all(store: MetadataStore, prefix: str, limit: int) -> list[list[str]]:
    """Every page of a listing, as lists of names."""
    pages: list[list[str]] = []
    token = ""
    while True:
        page = store.list_files(prefix, limit, token)
        pages.append([record.name for record in page.files])
        assert all(record.latest for record in page.files)
        token = page.next_token
        if not token:
            return pages
        assert len(pages) < 1000, "listing never ends"


# -- commit and get -------------------------------------------------------------------------------


def test_commit_then_get_latest_returns_the_same_record(store: MetadataStore) -> None:
    committed = store.commit_version(new())

    assert committed.version == 1 and committed.latest
    assert store.get_version(ref(), LATEST) == committed


def test_versions_of_one_name_are_consecutive(store: MetadataStore) -> None:
    records = [store.commit_version(new()) for _ in range(3)]

    assert numbers(records) == [1, 2, 3]
    assert len({r.file_id for r in records}) == 1
    assert len({r.version_id for r in records}) == 3
    assert store.get_version(ref(), LATEST) == records[2]


def test_get_by_number_and_by_version_id(store: MetadataStore) -> None:
    v1, v2, v3 = (store.commit_version(new(chunks=(f"c{i}",))) for i in range(3))

    assert store.get_version(ref(), VersionSpec(number=2)) == dataclasses.replace(v2, latest=False)
    assert store.get_version(ref(), VersionSpec(version_id=v1.version_id)) == dataclasses.replace(
        v1, latest=False
    )
    assert store.get_version(ref(), VersionSpec(number=3)) == v3


def test_get_by_file_id(store: MetadataStore) -> None:
    store.commit_version(new())
    v2 = store.commit_version(new())

    assert store.get_version(FileRefSpec(file_id=v2.file_id), LATEST) == v2
    assert store.get_version(FileRefSpec(file_id=v2.file_id), VersionSpec(number=1)).version == 1


def test_unknown_file_raises_file_not_found(store: MetadataStore) -> None:
    store.commit_version(new())
    missing = [ref("docs/other.txt"), FileRefSpec(file_id=uuid.uuid4().hex)]

    for spec in missing:
        with pytest.raises(FileNotFound):
            store.get_version(spec, LATEST)
        with pytest.raises(FileNotFound):
            store.get_version(spec, VersionSpec(number=1))
        with pytest.raises(FileNotFound):
            store.list_versions(spec)
        with pytest.raises(FileNotFound):
            store.delete_version(spec, LATEST)
        with pytest.raises(FileNotFound):
            store.delete_file(spec)


def test_unknown_version_raises_version_not_found(store: MetadataStore) -> None:
    store.commit_version(new())

    for spec in (VersionSpec(number=2), VersionSpec(number=0), VersionSpec(version_id="nope")):
        with pytest.raises(VersionNotFound):
            store.get_version(ref(), spec)
        with pytest.raises(VersionNotFound):
            store.delete_version(ref(), spec)
    assert numbers(store.list_versions(ref())) == [1]


def test_version_id_of_another_file_is_not_found(store: MetadataStore) -> None:
    store.commit_version(new("a"))
    other = store.commit_version(new("b"))

    with pytest.raises(VersionNotFound):
        store.get_version(ref("a"), VersionSpec(version_id=other.version_id))
    with pytest.raises(VersionNotFound):
        store.delete_version(ref("a"), VersionSpec(version_id=other.version_id))
    assert store.get_version(ref("b"), LATEST) == other


def test_version_spec_with_number_and_id_is_refused(store: MetadataStore) -> None:
    v1 = store.commit_version(new())

    with pytest.raises(InvalidRequest):
        store.get_version(ref(), VersionSpec(number=1, version_id=v1.version_id))


def test_record_fields_round_trip_exactly(store: MetadataStore) -> None:
    chunks = (
        ChunkRef("c-9", 4_194_304, ("p3", "p1", "p2")),
        ChunkRef("c-1", 1, ()),
        ChunkRef("c-9", 4_194_304, ("p1",)),  # repeated content: same chunk twice, in order
        ChunkRef("c-5", 7, ("p2",)),
    )
    metadata = {"author": "Zoë", "a.b": "dotted", "$dollar": "x", "empty": "", "日本": "語"}
    sent = NewVersion(
        name="dir/ünïcode 文件.bin", size=8_388_616, sha256="f" * 64, chunks=chunks,
        content_type="application/octet-stream; charset=binary", metadata=metadata, created_at=1712345678.125,
    )

    committed = store.commit_version(sent)
    got = store.get_version(ref(sent.name), LATEST)

    assert got == committed
    assert (got.name, got.size, got.sha256, got.chunks) == (sent.name, sent.size, sent.sha256, chunks)
    assert (got.content_type, dict(got.metadata)) == (sent.content_type, metadata)
    assert got.created_at == 1712345678.125
    assert list(got.metadata) == list(metadata)


@pytest.mark.parametrize("policy", ["rep:3", "rep:1", "ec:4+2", ""])
def test_policy_round_trips_in_every_read(store: MetadataStore, policy: str) -> None:
    committed = store.commit_version(new(policy=policy))
    store.commit_version(new("docs/b.txt"))

    assert committed.policy == policy
    assert store.get_version(ref(), LATEST).policy == policy
    assert store.get_version(ref(), VersionSpec(version_id=committed.version_id)).policy == policy
    assert [r.policy for r in store.list_versions(ref())] == [policy]
    assert [r.policy for r in store.list_files("docs/", 10, "").files] == [policy, ""]
    assert [r.policy for r in store.list_files("", 10, "", delimiter="/").files] == []
    assert [r.policy for r in store.list_files("docs/", 10, "", delimiter="/").files] == [policy, ""]
    assert [r.policy for r in store.delete_file(ref())] == [policy]


def test_empty_file_has_no_chunks(store: MetadataStore) -> None:
    committed = store.commit_version(NewVersion(name="empty", size=0, sha256="e3b0" * 16, chunks=()))

    assert store.get_version(ref("empty"), LATEST) == committed
    assert committed.chunks == ()


def test_created_at_defaults_to_commit_time(store: MetadataStore) -> None:
    before = time.time()
    committed = store.commit_version(new())

    assert before <= committed.created_at <= time.time()
    assert store.get_version(ref(), LATEST).created_at == committed.created_at


# -- versions and deletes ---------------------------------------------------------------------------


def test_list_versions_newest_first(store: MetadataStore) -> None:
    committed = [store.commit_version(new()) for _ in range(3)]

    listed = store.list_versions(ref())

    assert numbers(listed) == [3, 2, 1]
    assert [r.latest for r in listed] == [True, False, False]
    assert [r.version_id for r in listed] == [r.version_id for r in reversed(committed)]


def test_deleting_latest_makes_previous_latest(store: MetadataStore) -> None:
    for _ in range(3):
        store.commit_version(new())

    deleted = store.delete_version(ref(), LATEST)

    assert deleted.version == 3
    latest = store.get_version(ref(), LATEST)
    assert (latest.version, latest.latest) == (2, True)
    assert numbers(store.list_versions(ref())) == [2, 1]
    with pytest.raises(VersionNotFound):
        store.get_version(ref(), VersionSpec(number=3))


def test_version_numbers_are_never_reused(store: MetadataStore) -> None:
    for _ in range(3):
        store.commit_version(new())
    store.delete_version(ref(), VersionSpec(number=3))

    assert store.commit_version(new()).version == 4
    assert numbers(store.list_versions(ref())) == [4, 2, 1]


def test_delete_version_by_id_in_the_middle(store: MetadataStore) -> None:
    _, v2, v3 = (store.commit_version(new()) for _ in range(3))

    deleted = store.delete_version(ref(), VersionSpec(version_id=v2.version_id))

    assert deleted == dataclasses.replace(v2, latest=False)
    assert numbers(store.list_versions(ref())) == [3, 1]
    assert store.get_version(ref(), LATEST) == v3


def test_deleting_the_only_version_removes_the_file(store: MetadataStore) -> None:
    first = store.commit_version(new())

    store.delete_version(ref(), LATEST)

    with pytest.raises(FileNotFound):
        store.get_version(ref(), LATEST)
    with pytest.raises(FileNotFound):
        store.get_version(FileRefSpec(file_id=first.file_id), LATEST)
    assert store.list_files("", 10, "").files == ()
    again = store.commit_version(new())
    assert again.version == 1 and again.file_id != first.file_id


def test_delete_file_then_upload_again_starts_a_new_file(store: MetadataStore) -> None:
    old = [store.commit_version(new()) for _ in range(3)]

    deleted = store.delete_file(ref())

    assert numbers(deleted) == [3, 2, 1]
    assert {r.version_id for r in deleted} == {r.version_id for r in old}
    for spec in (ref(), FileRefSpec(file_id=old[0].file_id)):
        with pytest.raises(FileNotFound):
            store.get_version(spec, LATEST)
    fresh = store.commit_version(new())
    assert fresh.version == 1 and fresh.file_id != old[0].file_id
    assert numbers(store.list_versions(ref())) == [1]


# -- listing --------------------------------------------------------------------------------------

NAMES = [
    "%", "%x", "_", "_x", "a", "a%", "a%b", "a%%", "a_b", "a_", "ab", "aB", "a\\b", "a[b]", "a.*",
    "aé", "a😀", "b", "docs/1", "docs/2", "docs%2", "docs_2", "日本/東京", "日本語", "\U0010ffff",
]


@pytest.mark.parametrize(
    "prefix",
    ["", "a", "a%", "a_", "%", "_", "docs/", "docs", "a\\", "a.", "a[", "日本", "a😀", "\U0010ffff", "zzz"],
)
def test_list_files_matches_prefix_literally(store: MetadataStore, prefix: str) -> None:
    for name in NAMES:
        store.commit_version(new(name))

    page = store.list_files(prefix, 1000, "")

    assert [r.name for r in page.files] == sorted(n for n in NAMES if n.startswith(prefix))
    assert page.next_token == ""


def test_list_files_returns_latest_live_version(store: MetadataStore) -> None:
    for _ in range(3):
        store.commit_version(new("x"))
    store.commit_version(new("y"))
    store.delete_version(ref("x"), LATEST)

    page = store.list_files("", 10, "")

    assert [(r.name, r.version, r.latest) for r in page.files] == [("x", 2, True), ("y", 1, True)]
    assert page.files[0] == store.get_version(ref("x"), LATEST)


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 25, 26, 100])
def test_paging_returns_every_file_once_in_name_order(store: MetadataStore, limit: int) -> None:
    for name in NAMES:
        store.commit_version(new(name))

    pages = list_all(store, "", limit)

    assert [name for page in pages for name in page] == sorted(NAMES)
    assert len(pages) == math.ceil(len(NAMES) / limit)
    assert all(len(page) == limit for page in pages[:-1])


def test_paging_within_a_prefix(store: MetadataStore) -> None:
    for name in NAMES:
        store.commit_version(new(name))

    pages = list_all(store, "a", 2)

    assert [name for page in pages for name in page] == sorted(n for n in NAMES if n.startswith("a"))


def test_paging_survives_deleting_the_last_listed_file(store: MetadataStore) -> None:
    for name in ("f1", "f2", "f3", "f4"):
        store.commit_version(new(name))
    first = store.list_files("f", 2, "")
    store.delete_file(ref("f2"))

    second = store.list_files("f", 2, first.next_token)

    assert [r.name for r in first.files] == ["f1", "f2"]
    assert [r.name for r in second.files] == ["f3", "f4"] and second.next_token == ""


def test_list_files_refuses_bad_limit_and_token(store: MetadataStore) -> None:
    with pytest.raises(InvalidRequest):
        store.list_files("", 0, "")
    with pytest.raises(InvalidRequest):
        store.list_files("", 10, "!!not a token!!")


# -- listing with a delimiter ---------------------------------------------------------------------

TREE = [
    "a", "a/", "a//x", "a/1", "a/b/1", "a/b/2", "a/b/c/1", "a/b/c/d/1", "a/b0", "a/bb/1", "a0", "a0/1",
    "b/1", "b/2", "b/3/1", "c-1", "c-2/x", "d/", "日本/東京/駅", "日本/大阪", "\U0010ffff/x",
    *[f"many/{i:03}" for i in range(30)], *[f"many/sub{i}/x" for i in range(5)], "manz",
]  # fmt: skip


def expected_keys(names: list[str], prefix: str, delimiter: str) -> list[str]:
    """What a delimited listing must return, computed naively over every name."""
    keys: list[str] = []
    for name in sorted(names):
        if name.startswith(prefix):
            cut = name.find(delimiter, len(prefix))
            key = name if cut < 0 else name[: cut + len(delimiter)]
            if not keys or keys[-1] != key:
                keys.append(key)
    return keys


def listed_keys(store: MetadataStore, prefix: str, limit: int, delimiter: str) -> list[list[str]]:
    """Every page of a delimited listing as its keys (files and prefixes) in name order."""
    pages: list[list[str]] = []
    token = ""
    while True:
        page = store.list_files(prefix, limit, token, delimiter)
        files = [record.name for record in page.files]
        assert files == sorted(files) and list(page.prefixes) == sorted(page.prefixes)
        assert all(record.latest for record in page.files)
        pages.append(sorted([*files, *page.prefixes]))
        token = page.next_token
        if not token:
            return pages
        assert len(pages) < 1000, "listing never ends"


def test_delimiter_rolls_names_up_into_common_prefixes(store: MetadataStore) -> None:
    for name in TREE:
        store.commit_version(new(name))

    top = store.list_files("", 1000, "", "/")
    nested = store.list_files("a/b/", 1000, "", "/")

    assert [r.name for r in top.files] == ["a", "a0", "c-1", "manz"]
    assert top.prefixes == ("a/", "a0/", "b/", "c-2/", "d/", "many/", "日本/", "\U0010ffff/")
    assert [r.name for r in nested.files] == ["a/b/1", "a/b/2"] and nested.prefixes == ("a/b/c/",)
    assert top.next_token == "" and nested.next_token == ""


def test_delimited_listing_returns_each_files_latest_version(store: MetadataStore) -> None:
    for name in ("dir/x", "dir/x", "dir/y", "dir/sub/z"):
        store.commit_version(new(name))

    page = store.list_files("dir/", 10, "", "/")

    assert page.files == (store.get_version(ref("dir/x"), LATEST), store.get_version(ref("dir/y"), LATEST))
    assert page.files[0].version == 2 and page.prefixes == ("dir/sub/",)


@pytest.mark.parametrize("limit", [1, 2, 3, 1000])
@pytest.mark.parametrize(
    ("prefix", "delimiter"),
    [("", "/"), ("a/", "/"), ("a/b/", "/"), ("a", "/"), ("many/", "/"), ("", "-"), ("", "//"), ("日本/", "/"),
     ("", "日本"), ("none/", "/")],
)  # fmt: skip
def test_delimited_paging_neither_drops_nor_repeats_a_key(
    store: MetadataStore, limit: int, prefix: str, delimiter: str
) -> None:
    for name in TREE:
        store.commit_version(new(name))
    want = expected_keys(TREE, prefix, delimiter)

    pages = listed_keys(store, prefix, limit, delimiter)

    assert [key for page in pages for key in page] == want
    assert all(len(page) == limit for page in pages[:-1])
    assert len(pages) == max(1, math.ceil(len(want) / limit))


def test_delimited_paging_resumes_past_a_prefix_whose_names_were_deleted(store: MetadataStore) -> None:
    for name in ("a/1", "a/2", "b/1", "c"):
        store.commit_version(new(name))
    first = store.list_files("", 1, "", "/")
    store.delete_file(ref("a/1"))
    store.delete_file(ref("a/2"))
    store.commit_version(new("a/3"))  # under the prefix already listed: not listed again
    store.commit_version(new("a0"))

    rest: list[str] = []
    token = first.next_token
    while token:
        page = store.list_files("", 1, token, "/")
        rest.extend([*page.prefixes, *(r.name for r in page.files)])
        token = page.next_token

    assert first.prefixes == ("a/",) and first.files == ()
    assert rest == ["a0", "b/", "c"]


def test_delimited_listing_refuses_bad_limit_and_token(store: MetadataStore) -> None:
    with pytest.raises(InvalidRequest):
        store.list_files("", 0, "", "/")
    with pytest.raises(InvalidRequest):
        store.list_files("", 10, "!!not a token!!", "/")


def test_a_page_skips_a_huge_common_prefix_by_seeking() -> None:
    names = sorted(["a", *(f"big/{i:06}" for i in range(100_000)), "c", "d/1", "e"])
    reads: list[int] = []

    def scan(bound: str, inclusive: bool, count: int) -> list[str]:
        start = bisect.bisect_left(names, bound) if inclusive else bisect.bisect_right(names, bound)
        batch = names[start : start + count]
        reads.append(len(batch))
        return batch

    first = page_keys("", "/", 2, "", scan)
    second = page_keys("", "/", 2, first.next_token, scan)
    third = page_keys("", "/", 2, second.next_token, scan)

    assert (first.names, first.prefixes) == (["a"], ["big/"])
    assert (second.names, second.prefixes) == (["c"], ["d/"]) and (third.names, third.prefixes) == (["e"], [])
    assert third.next_token == "" and sum(reads) < 20


def test_a_page_of_large_common_prefixes_reads_names_in_proportion_to_its_size() -> None:
    names = sorted(f"{group:04}/{i:04}" for group in range(300) for i in range(500))
    reads: list[int] = []

    def scan(bound: str, inclusive: bool, count: int) -> list[str]:
        start = bisect.bisect_left(names, bound) if inclusive else bisect.bisect_right(names, bound)
        reads.append(count)
        return names[start : start + count]

    page = page_keys("", "/", 100, "", scan)

    assert page.prefixes == [f"{group:04}/" for group in range(100)] and page.names == []
    assert sum(reads) < 20 * 100  # not a page-sized read per prefix


@pytest.mark.parametrize(
    ("name", "prefix", "delimiter", "rolled"),
    [("a/b/c", "", "/", "a/"), ("a/b/c", "a/", "/", "a/b/"), ("a/b", "a/b", "/", None), ("abc", "", "", None),
     ("x--y--z", "x", "--", "x--"), ("a/", "", "/", "a/"), ("a", "", "/", None)],
)  # fmt: skip
def test_common_prefix(name: str, prefix: str, delimiter: str, rolled: str | None) -> None:
    assert common_prefix(name, prefix, delimiter) == rolled


# -- chunk references ----------------------------------------------------------------------------


def test_chunk_shared_by_two_files_stays_referenced_until_both_are_gone(store: MetadataStore) -> None:
    store.commit_version(new("a", chunks=("x", "shared")))
    store.commit_version(new("b", chunks=("shared", "y")))
    asked = ["x", "shared", "y", "unknown", "x"]

    assert store.referenced_chunks(asked) == {"x", "shared", "y"}
    store.delete_version(ref("a"), LATEST)
    assert store.referenced_chunks(asked) == {"shared", "y"}
    store.delete_file(ref("b"))
    assert store.referenced_chunks(asked) == set()


def test_chunk_shared_by_two_versions_stays_referenced_until_both_are_gone(store: MetadataStore) -> None:
    store.commit_version(new(chunks=("s", "old")))
    store.commit_version(new(chunks=("s", "s", "new")))

    store.delete_version(ref(), VersionSpec(number=2))
    assert store.referenced_chunks(["s", "old", "new"]) == {"s", "old"}
    store.delete_version(ref(), VersionSpec(number=1))
    assert store.referenced_chunks(["s", "old", "new"]) == set()


def coded(name: str, chunk_id: str, fragments: tuple[str, ...], policy: str = "ec:2+1") -> NewVersion:
    chunk = ChunkRef(chunk_id, 1000, tuple(f"peer-{i}" for i in range(len(fragments))), fragments)
    return NewVersion(name=name, size=1000, sha256=chunk_id, chunks=(chunk,), policy=policy)


def test_fragments_round_trip_and_keep_themselves_from_collection(store: MetadataStore) -> None:
    store.commit_version(coded("e", "whole", ("f0", "f1", "f2")))
    assert store.get_version(ref("e"), LATEST).chunks == (ChunkRef("whole", 1000, ("peer-0", "peer-1", "peer-2"),
                                                                   ("f0", "f1", "f2")),)
    assert store.referenced_chunks(["f0", "f1", "f2", "other"]) == {"f0", "f1", "f2"}
    store.delete_file(ref("e"))
    assert store.referenced_chunks(["f0", "f1", "f2"]) == set()


def test_placements_name_the_fragments_and_the_wider_copies_only(store: MetadataStore) -> None:
    store.commit_version(new("plain", chunks=("c1", "c2"), policy="rep:2"))
    store.commit_version(new("older", chunks=("c0",)))  # policy "" (recorded before policies): the default
    store.commit_version(new("wide", chunks=("c2", "c3"), policy="rep:3"))
    store.commit_version(new("narrow", chunks=("c3",), policy="rep:1"))
    store.commit_version(coded("e", "whole", ("f0", "f1", "f2")))

    found = store.placements(["c0", "c1", "c2", "c3", "f0", "f2", "whole", "none"], "rep:2")

    assert found == {"c2": (Placed("rep:3"),), "c3": (Placed("rep:3"),), "f0": (Placed("ec:2+1", "whole", 0),),
                     "f2": (Placed("ec:2+1", "whole", 2),)}


def test_a_fragment_shared_by_two_chunks_is_placed_both_ways(store: MetadataStore) -> None:
    """Chunks sharing a fragment-sized stretch of bytes code to one fragment id, owned twice."""
    store.commit_version(coded("one", "chunk-a", ("shared", "a1", "a2")))
    store.commit_version(coded("two", "chunk-b", ("b0", "b1", "shared")))
    assert store.placements(["shared"], "rep:2") == {
        "shared": (Placed("ec:2+1", "chunk-a", 0), Placed("ec:2+1", "chunk-b", 2))}
    assert store.placements([], "rep:2") == {}


def test_an_erasure_coded_default_still_places_every_fragment_by_its_chunk(store: MetadataStore) -> None:
    """A cluster whose default is `ec:K+M` would otherwise copy each fragment to K + M peers."""
    store.commit_version(coded("e", "whole", ("f0", "f1", "f2")))
    store.commit_version(new("plain", chunks=("c1",), policy="rep:2"))
    assert store.placements(["f1", "c1", "whole"], "ec:2+1") == {
        "f1": (Placed("ec:2+1", "whole", 1),), "c1": (Placed("rep:2"),)}


def test_coded_versions_are_walked_in_pages(store: MetadataStore) -> None:
    for i in range(5):
        store.commit_version(coded(f"e{i}", f"whole{i}", (f"a{i}", f"b{i}", f"c{i}")))
    store.commit_version(new("plain", chunks=("c1",), policy="rep:2"))
    seen: list[str] = []
    after = ""
    while page := store.coded_versions(after, 2):
        assert len(page) <= 2
        seen += [c.chunk_id for v in page for c in v.chunks]
        after = page[-1].version_id
    assert sorted(seen) == [f"whole{i}" for i in range(5)]


def test_referenced_chunks_handles_empty_and_large_queries(store: MetadataStore) -> None:
    used = [f"chunk-{i:05d}" for i in range(0, 3000, 3)]
    store.commit_version(new(chunks=tuple(used)))

    assert store.referenced_chunks([]) == set()
    assert store.referenced_chunks([f"chunk-{i:05d}" for i in range(3000)]) == set(used)


# -- delete markers, null versions and conditional commits ------------------------------------------


def marker(name: str = "docs/a.txt", **fields: Any) -> NewVersion:
    return NewVersion(name=name, size=0, sha256="", chunks=(), delete_marker=True, **fields)


def listed_names(store: MetadataStore, prefix: str = "", delimiter: str = "") -> list[str]:
    page = store.list_files(prefix, 1000, "", delimiter)
    return [record.name for record in page.files] + list(page.prefixes)


def test_a_delete_marker_is_a_version_that_hides_the_file_until_it_is_deleted(store: MetadataStore) -> None:
    v1 = store.commit_version(new(chunks=("c1",)))
    store.commit_version(new("docs/b.txt"))
    gone = store.commit_version(marker())

    assert gone.delete_marker and gone.latest and gone.version == 2 and gone.size == 0 and gone.chunks == ()
    assert store.get_version(ref(), LATEST) == gone
    assert [(r.version, r.delete_marker) for r in store.list_versions(ref())] == [(2, True), (1, False)]
    assert listed_names(store, "docs/") == ["docs/b.txt"]
    assert listed_names(store, "", "/") == ["docs/"]
    assert listed_names(store, "docs/", "/") == ["docs/b.txt"]
    assert store.referenced_chunks(["c1"]) == {"c1"}  # the version under the marker keeps its chunks

    store.delete_version(ref(), VersionSpec(version_id=gone.version_id))
    assert store.get_version(ref(), LATEST) == v1
    assert listed_names(store, "docs/") == ["docs/a.txt", "docs/b.txt"]


def test_a_prefix_holding_only_deleted_files_is_not_listed(store: MetadataStore) -> None:
    store.commit_version(new("dir/x"))
    store.commit_version(marker("dir/x"))
    store.commit_version(marker("other"))  # a marker on a name that never had content

    assert listed_names(store, "", "/") == []
    assert listed_names(store, "") == []
    assert store.get_version(ref("other"), LATEST).delete_marker


def test_a_marker_is_not_latest_once_a_new_version_follows(store: MetadataStore) -> None:
    store.commit_version(new())
    gone = store.commit_version(marker())
    back = store.commit_version(new(chunks=("c2",)))

    assert back.latest and not back.delete_marker
    assert store.get_version(ref(), VersionSpec(version_id=gone.version_id)) == dataclasses.replace(gone, latest=False)
    assert listed_names(store) == ["docs/a.txt"]
    store.delete_version(ref(), VersionSpec(version_id=back.version_id))
    assert listed_names(store) == []  # the marker is the latest again


def test_a_null_version_replaces_the_previous_null_version(store: MetadataStore) -> None:
    first = store.commit_version(new(chunks=("n1",), null_version=True))
    kept = store.commit_version(new(chunks=("k",)))
    second = store.commit_version(new(chunks=("n2",), null_version=True))

    assert second.null_version and not kept.null_version
    assert [r.version_id for r in store.list_versions(ref())] == [second.version_id, kept.version_id]
    with pytest.raises(VersionNotFound):
        store.get_version(ref(), VersionSpec(version_id=first.version_id))
    assert store.referenced_chunks(["n1", "k", "n2"]) == {"k", "n2"}

    null_marker = store.commit_version(marker(null_version=True))
    assert [(r.version_id, r.delete_marker, r.null_version) for r in store.list_versions(ref())] == [
        (null_marker.version_id, True, True), (kept.version_id, False, False)]
    assert store.referenced_chunks(["n2"]) == set()


def test_create_only_commits_when_the_name_has_no_current_version(store: MetadataStore) -> None:
    created = store.commit_version(new(chunks=("a",), if_latest=""))
    assert created.version == 1

    with pytest.raises(PreconditionFailed):
        store.commit_version(new(chunks=("b",), if_latest=""))
    assert numbers(store.list_versions(ref())) == [1]
    assert store.referenced_chunks(["b"]) == set()

    store.commit_version(marker())
    again = store.commit_version(new(chunks=("c",), if_latest=""))
    assert again.version == 3 and again.latest


def test_a_commit_on_a_given_latest_version_fails_once_another_came(store: MetadataStore) -> None:
    v1 = store.commit_version(new())
    v2 = store.commit_version(new(if_latest=v1.version_id))

    with pytest.raises(PreconditionFailed):
        store.commit_version(new(if_latest=v1.version_id))
    with pytest.raises(PreconditionFailed):
        store.commit_version(new("docs/none", if_latest=v1.version_id))
    gone = store.commit_version(marker())
    with pytest.raises(PreconditionFailed):  # a marker is no current version to match
        store.commit_version(new(if_latest=gone.version_id))
    store.delete_version(ref(), VersionSpec(version_id=gone.version_id))
    assert store.commit_version(new(if_latest=v2.version_id)).version == 4
    assert numbers(store.list_versions(ref())) == [4, 2, 1]


def test_a_failed_condition_in_a_group_commit_fails_only_its_own_commit(store: MetadataStore) -> None:
    store.commit_version(new("taken"))
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(
            lambda i: _outcome(lambda: store.commit_version(new(f"name-{i % 4}" if i % 2 else "taken", if_latest=""))),
            range(16),
        ))
    assert outcomes.count("PreconditionFailed") >= 8  # every commit on "taken", and repeats of the others
    assert sorted(r.name for r in store.list_files("", 100, "").files) == ["name-1", "name-3", "taken"]


def _outcome(call: Callable[[], Any]) -> str:
    try:
        call()
    except PreconditionFailed:
        return "PreconditionFailed"
    return "committed"


def test_concurrent_create_only_commits_let_exactly_one_win(
    store: MetadataStore, request: pytest.FixtureRequest
) -> None:
    if request.node.callspec.params["store"] == "mongomock":
        pytest.skip("mongomock's find_one_and_update is not atomic across threads; real MongoDB's is")
    threads = 8
    start = threading.Barrier(threads)

    def create(i: int) -> str:
        start.wait(timeout=30)
        return _outcome(lambda: store.commit_version(new("race", chunks=(f"r{i}",), if_latest="")))

    with ThreadPoolExecutor(threads) as pool:
        outcomes = list(pool.map(create, range(threads)))
    assert outcomes.count("committed") == 1
    assert numbers(store.list_versions(ref("race"))) == [1]


def test_a_copy_commits_only_while_its_source_version_exists(store: MetadataStore) -> None:
    source = store.commit_version(new("src", chunks=("s1", "s2")))
    copy = store.commit_version(dataclasses.replace(new("dst", chunks=("s1", "s2")), source_version=source.version_id))
    store.delete_file(ref("src"))

    assert store.referenced_chunks(["s1", "s2"]) == {"s1", "s2"}  # the copy keeps the shared chunks
    with pytest.raises(VersionNotFound):
        store.commit_version(dataclasses.replace(new("dst"), source_version=source.version_id))
    assert [r.version_id for r in store.list_versions(ref("dst"))] == [copy.version_id]
    store.delete_file(ref("dst"))
    assert store.referenced_chunks(["s1", "s2"]) == set()


def _version_model(store: MetadataStore, names: list[str], prefix: str, delimiter: str) -> list[tuple[str, str]]:
    """Every entry a version listing must give, in order: (name, version id) or (common prefix, "")."""
    entries: list[tuple[str, str]] = []
    for name in sorted(n for n in set(names) if n.startswith(prefix)):
        group = common_prefix(name, prefix, delimiter)
        if group is not None:
            if (group, "") not in entries:
                entries.append((group, ""))
            continue
        entries.extend((name, r.version_id) for r in store.list_versions(ref(name)))
    return entries


def _all_version_pages(store: MetadataStore, prefix: str, limit: int, delimiter: str) -> list[tuple[str, str]]:
    entries: list[tuple[str, str]] = []
    after_name = after_version = ""
    for _ in range(1000):
        page = store.list_all_versions(prefix, limit, after_name, after_version, delimiter)
        assert len(page.versions) + len(page.prefixes) <= limit
        found = [(r.name, r.version_id) for r in page.versions] + [(p, "") for p in page.prefixes]
        entries.extend(sorted(found, key=lambda e: e[0]) if page.prefixes else found)
        if not page.next_name:
            return entries
        after_name, after_version = page.next_name, page.next_version_id
    raise AssertionError("the version listing never ends")


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 1000])
def test_version_listing_pages_neither_drop_nor_repeat_a_version(store: MetadataStore, limit: int) -> None:
    names = ["a", "b/1", "b/2", "c", "d/e/f", "e"]
    for i, name in enumerate(names):
        for n in range(1 + i % 3):
            store.commit_version(new(name, chunks=(f"{name}-{n}",)))
    store.commit_version(marker("c"))
    store.commit_version(marker("gone"))
    names += ["gone"]

    for prefix, delimiter in [("", ""), ("", "/"), ("b/", ""), ("d/", "/"), ("z", "")]:
        expected = _version_model(store, names, prefix, delimiter)
        assert _all_version_pages(store, prefix, limit, delimiter) == expected, (prefix, delimiter)


def test_version_listing_flags_latest_versions_and_markers(store: MetadataStore) -> None:
    store.commit_version(new("k"))
    store.commit_version(new("k"))
    store.commit_version(marker("k"))

    page = store.list_all_versions("", 2)
    assert [(r.version, r.latest, r.delete_marker) for r in page.versions] == [(3, True, True), (2, False, False)]
    assert (page.next_name, page.next_version_id) == ("k", page.versions[-1].version_id)
    rest = store.list_all_versions("", 2, page.next_name, page.next_version_id)
    assert [(r.version, r.latest) for r in rest.versions] == [(1, False)]
    assert (rest.next_name, rest.next_version_id, rest.prefixes) == ("", "", ())


def test_version_listing_refuses_a_marker_version_it_does_not_know(store: MetadataStore) -> None:
    store.commit_version(new("k"))
    with pytest.raises(InvalidRequest):
        store.list_all_versions("", 10, "k", uuid.uuid4().hex)
    with pytest.raises(InvalidRequest):
        store.list_all_versions("", 0)


# -- API tokens ----------------------------------------------------------------------------------


def test_token_round_trips_exactly(store: MetadataStore) -> None:
    sent = token("0f1e2d3c4b5a6978", created_at=1712345678.125, role="admin", name="Zoë's laptop 日本 $x.y")
    imported = token("a1b2c3d4e5f60718", created_at=1712345679.5, role="read", revoked_at=1712345680.75)

    assert store.get_token(sent.token_id) is None  # before anything exists, too
    store.add_token(sent)
    store.add_token(imported)

    assert store.get_token(sent.token_id) == sent
    assert store.get_token(imported.token_id) == imported
    assert store.list_tokens() == [sent, imported]


def test_unknown_token_is_none(store: MetadataStore) -> None:
    store.add_token(token("0123456789abcdef"))

    assert store.get_token("0123456789abcdee") is None
    assert store.get_token("0123456789ABCDEF") is None  # ids are compared exactly
    assert store.get_token("") is None


def test_adding_an_existing_token_id_is_refused_and_keeps_the_first(store: MetadataStore) -> None:
    first = token(role="read")
    store.add_token(first)

    with pytest.raises(InvalidRequest, match=first.token_id):
        store.add_token(token(role="admin", secret_sha256="00" * 32, created_at=1.0))

    assert store.get_token(first.token_id) == first
    assert store.list_tokens() == [first]


def test_list_tokens_oldest_first_with_revoked_ones(store: MetadataStore) -> None:
    assert store.list_tokens() == []
    added = [
        token("bbbbbbbbbbbbbbbb", created_at=20.0),
        token("dddddddddddddddd", created_at=30.0),
        token("cccccccccccccccc", created_at=10.5),
        token("aaaaaaaaaaaaaaaa", created_at=20.0),  # same time as bbbb...: token_id breaks the tie
    ]
    for record in added:
        store.add_token(record)
    store.revoke_token("dddddddddddddddd", 40.0)
    store.revoke_token("cccccccccccccccc", 41.0)

    listed = store.list_tokens()

    assert [t.token_id for t in listed] == [
        "cccccccccccccccc", "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb", "dddddddddddddddd",
    ]
    assert [t.revoked_at for t in listed] == [41.0, None, None, 40.0]
    assert listed == [store.get_token(t.token_id) for t in listed]


def test_revoke_sets_revoked_at_and_nothing_else(store: MetadataStore) -> None:
    mine, other = token("0123456789abcdef"), token("fedcba9876543210")
    store.add_token(mine)
    store.add_token(other)

    revoked = store.revoke_token(mine.token_id, 1712345999.5)

    assert revoked == dataclasses.replace(mine, revoked_at=1712345999.5)
    assert store.get_token(mine.token_id) == revoked
    assert store.get_token(other.token_id) == other


def test_revoking_twice_keeps_the_first_time(store: MetadataStore) -> None:
    store.add_token(token())
    preset = token("a1b2c3d4e5f60718", revoked_at=7.25)
    store.add_token(preset)

    first = store.revoke_token(token().token_id, 100.5)
    again = store.revoke_token(token().token_id, 200.0)

    assert first.revoked_at == 100.5
    assert again == first
    assert store.get_token(first.token_id) == first
    assert store.revoke_token(preset.token_id, 300.0) == preset  # added revoked: that time stays


def test_revoking_an_unknown_token_raises_and_creates_nothing(store: MetadataStore) -> None:
    known = token()
    store.add_token(known)

    with pytest.raises(TokenNotFound) as caught:
        store.revoke_token("ffffffffffffffff", 1.0)

    assert caught.value.token_id == "ffffffffffffffff"
    assert store.get_token("ffffffffffffffff") is None
    assert store.list_tokens() == [known]


def test_concurrent_token_writes_settle_on_one_winner(
    store: MetadataStore, request: pytest.FixtureRequest
) -> None:
    if request.node.callspec.params["store"] == "mongomock":
        pytest.skip("mongomock's writes are not atomic across threads; real MongoDB's are")
    threads = 8
    start = threading.Barrier(threads)

    def add(i: int) -> bool:
        start.wait(timeout=30)
        try:
            store.add_token(token(name=f"racer {i}"))
        except InvalidRequest:
            return False
        return True

    def revoke(i: int) -> float | None:
        start.wait(timeout=30)
        return store.revoke_token(token().token_id, 1000.0 + i).revoked_at

    with ThreadPoolExecutor(threads) as pool:
        added = list(pool.map(add, range(threads)))
        revoked_at = set(pool.map(revoke, range(threads)))

    assert added.count(True) == 1
    assert store.get_token(token().token_id) == token(
        name=f"racer {added.index(True)}", revoked_at=revoked_at.pop()
    )
    assert not revoked_at, "every revocation must report the one time that was kept"


# -- S3 access keys ------------------------------------------------------------------------------


def test_s3_key_round_trips_exactly(store: MetadataStore) -> None:
    sent = s3_key("DK0000000000000000A1", created_at=1712345678.125, role="admin", name="Zoë's rclone 日本 $x.y")
    revoked = s3_key("DK0000000000000000B2", created_at=1712345679.5, role="read", revoked_at=1712345680.75)

    assert store.get_s3_key(sent.access_key_id) is None  # before anything exists, too
    store.add_s3_key(sent)
    store.add_s3_key(revoked)

    assert store.get_s3_key(sent.access_key_id) == sent
    assert store.get_s3_key(revoked.access_key_id) == revoked
    assert store.list_s3_keys() == [sent, revoked]
    assert store.list_tokens() == []  # keys and tokens are apart


def test_unknown_s3_key_is_none(store: MetadataStore) -> None:
    store.add_s3_key(s3_key("DKAAAAAAAAAAAAAAAAA1"))

    assert store.get_s3_key("DKAAAAAAAAAAAAAAAAA2") is None
    assert store.get_s3_key("dkaaaaaaaaaaaaaaaaa1") is None  # ids are compared exactly
    assert store.get_s3_key("") is None


def test_adding_an_existing_s3_key_id_is_refused_and_keeps_the_first(store: MetadataStore) -> None:
    first = s3_key(role="read")
    store.add_s3_key(first)

    with pytest.raises(InvalidRequest, match=first.access_key_id):
        store.add_s3_key(s3_key(role="admin", secret_ciphertext="00" * 56, created_at=1.0))

    assert store.get_s3_key(first.access_key_id) == first
    assert store.list_s3_keys() == [first]


def test_list_s3_keys_oldest_first_with_revoked_ones(store: MetadataStore) -> None:
    assert store.list_s3_keys() == []
    for record in [
        s3_key("DKBBBBBBBBBBBBBBBBBB", created_at=20.0),
        s3_key("DKDDDDDDDDDDDDDDDDDD", created_at=30.0),
        s3_key("DKCCCCCCCCCCCCCCCCCC", created_at=10.5),
        s3_key("DKAAAAAAAAAAAAAAAAAA", created_at=20.0),  # same time as DKBB...: the id breaks the tie
    ]:
        store.add_s3_key(record)
    store.revoke_s3_key("DKDDDDDDDDDDDDDDDDDD", 40.0)

    listed = store.list_s3_keys()

    assert [k.access_key_id for k in listed] == [
        "DKCCCCCCCCCCCCCCCCCC", "DKAAAAAAAAAAAAAAAAAA", "DKBBBBBBBBBBBBBBBBBB", "DKDDDDDDDDDDDDDDDDDD",
    ]
    assert listed[-1].revoked_at == 40.0
    assert listed == [store.get_s3_key(k.access_key_id) for k in listed]


def test_revoking_an_s3_key_sets_revoked_at_once_and_nothing_else(store: MetadataStore) -> None:
    mine, other = s3_key("DKAAAAAAAAAAAAAAAAA1"), s3_key("DKAAAAAAAAAAAAAAAAA2")
    store.add_s3_key(mine)
    store.add_s3_key(other)

    first = store.revoke_s3_key(mine.access_key_id, 100.5)
    again = store.revoke_s3_key(mine.access_key_id, 200.0)

    assert first == again == dataclasses.replace(mine, revoked_at=100.5)
    assert store.get_s3_key(mine.access_key_id) == first
    assert store.get_s3_key(other.access_key_id) == other


def test_revoking_an_unknown_s3_key_raises_and_creates_nothing(store: MetadataStore) -> None:
    known = s3_key()
    store.add_s3_key(known)

    with pytest.raises(S3KeyNotFound) as caught:
        store.revoke_s3_key("DKZZZZZZZZZZZZZZZZZZ", 1.0)

    assert caught.value.access_key_id == "DKZZZZZZZZZZZZZZZZZZ"
    assert store.get_s3_key("DKZZZZZZZZZZZZZZZZZZ") is None
    assert store.list_s3_keys() == [known]


def test_closed_store_reports_s3_key_calls_unavailable(store: MetadataStore) -> None:
    store.close()

    for call in (
        lambda: store.add_s3_key(s3_key()),
        lambda: store.get_s3_key(s3_key().access_key_id),
        store.list_s3_keys,
        lambda: store.revoke_s3_key(s3_key().access_key_id, 1.0),
    ):
        with pytest.raises(MetadataUnavailable, match="closed"):
            call()


# -- buckets -------------------------------------------------------------------------------------


def test_bucket_round_trips_exactly(store: MetadataStore) -> None:
    record = BucketRecord("photos", 1700000000.25)
    store.add_bucket(record)

    assert store.get_bucket("photos") == record
    assert store.get_bucket("other") is None
    assert store.list_buckets() == [record]


def test_adding_an_existing_bucket_is_refused_and_keeps_the_first(store: MetadataStore) -> None:
    store.add_bucket(BucketRecord("photos", 1.0))

    with pytest.raises(BucketExists):
        store.add_bucket(BucketRecord("photos", 2.0, "Enabled"))
    assert store.get_bucket("photos") == BucketRecord("photos", 1.0)


def test_buckets_are_listed_by_name(store: MetadataStore) -> None:
    for name, at in (("zeta", 1.0), ("alpha", 3.0), ("mid.dle", 2.0)):
        store.add_bucket(BucketRecord(name, at))

    assert [b.name for b in store.list_buckets()] == ["alpha", "mid.dle", "zeta"]


def test_bucket_versioning_state_is_recorded(store: MetadataStore) -> None:
    store.add_bucket(BucketRecord("photos", 1.0))

    assert store.set_bucket_versioning("photos", "Enabled") == BucketRecord("photos", 1.0, "Enabled")
    assert store.set_bucket_versioning("photos", "Suspended").versioning == "Suspended"
    assert store.get_bucket("photos") == BucketRecord("photos", 1.0, "Suspended")
    with pytest.raises(BucketNotFound):
        store.set_bucket_versioning("missing", "Enabled")
    assert store.get_bucket("missing") is None


def test_deleting_a_bucket_removes_its_record_only(store: MetadataStore) -> None:
    store.add_bucket(BucketRecord("photos", 1.0))
    committed = store.commit_version(new("photos/a.jpg"))

    store.delete_bucket("photos")
    assert store.get_bucket("photos") is None and store.list_buckets() == []
    assert store.get_version(FileRefSpec(name="photos/a.jpg"), LATEST) == committed  # files are not its records
    with pytest.raises(BucketNotFound):
        store.delete_bucket("photos")
    store.add_bucket(BucketRecord("photos", 5.0))  # the name is free again
    assert store.get_bucket("photos") == BucketRecord("photos", 5.0)


def test_closed_store_reports_bucket_calls_unavailable(store: MetadataStore) -> None:
    store.close()

    for call in (
        lambda: store.add_bucket(BucketRecord("photos", 1.0)),
        lambda: store.get_bucket("photos"),
        store.list_buckets,
        lambda: store.set_bucket_versioning("photos", "Enabled"),
        lambda: store.set_bucket_policy("photos", "rep:3"),
        lambda: store.delete_bucket("photos"),
    ):
        with pytest.raises(MetadataUnavailable, match="closed"):
            call()


def test_bucket_default_policy_is_recorded_and_cleared(store: MetadataStore) -> None:
    store.add_bucket(BucketRecord("photos", 1.0, policy="rep:3"))
    store.add_bucket(BucketRecord("plain", 2.0))

    assert store.get_bucket("photos") == BucketRecord("photos", 1.0, "", "rep:3")
    assert store.get_bucket("plain") == BucketRecord("plain", 2.0)  # no policy: the cluster's applies
    assert store.set_bucket_policy("plain", "ec:4+2") == BucketRecord("plain", 2.0, "", "ec:4+2")
    assert store.set_bucket_versioning("plain", "Enabled") == BucketRecord("plain", 2.0, "Enabled", "ec:4+2")
    assert store.set_bucket_policy("photos", "") == BucketRecord("photos", 1.0)
    assert store.list_buckets() == [BucketRecord("photos", 1.0), BucketRecord("plain", 2.0, "Enabled", "ec:4+2")]
    with pytest.raises(BucketNotFound):
        store.set_bucket_policy("missing", "rep:3")
    assert store.get_bucket("missing") is None


# -- concurrency and health ----------------------------------------------------------------------


def test_concurrent_commits_to_one_name_get_distinct_consecutive_numbers(
    store: MetadataStore, request: pytest.FixtureRequest
) -> None:
    if request.node.callspec.params["store"] == "mongomock":
        pytest.skip("mongomock's find_one_and_update is not atomic across threads; real MongoDB's is")
    threads, per_thread = 8, 10
    start = threading.Barrier(threads)

    def commit_many(_: int) -> list[int]:
        start.wait(timeout=30)
        return [store.commit_version(new("hot")).version for _ in range(per_thread)]

    with ThreadPoolExecutor(threads) as pool:
        returned = [n for batch in pool.map(commit_many, range(threads)) for n in batch]

    expected = list(range(1, threads * per_thread + 1))
    assert sorted(returned) == expected
    listed = store.list_versions(ref("hot"))
    assert numbers(listed) == expected[::-1]
    assert len({r.version_id for r in listed}) == len(expected)
    assert len({r.file_id for r in listed}) == 1


def test_ping(store: MetadataStore) -> None:
    assert store.ping() is None  # raises MetadataUnavailable when the backend cannot serve
    store.commit_version(new())
    assert store.ping() is None


def test_closed_store_reports_unavailable(store: MetadataStore) -> None:
    store.close()

    with pytest.raises(MetadataUnavailable, match="closed"):
        store.get_version(ref(), LATEST)
    with pytest.raises(MetadataUnavailable, match="closed"):
        store.add_token(token())
    with pytest.raises(MetadataUnavailable, match="closed"):
        store.get_token(token().token_id)
    with pytest.raises(MetadataUnavailable, match="closed"):
        store.list_tokens()
    with pytest.raises(MetadataUnavailable, match="closed"):
        store.revoke_token(token().token_id, 1.0)


# -- SQLite only ---------------------------------------------------------------------------------


def _commit_from_process(path: str, name: str, count: int, start: Any) -> None:
    start.wait(timeout=60)
    store = SqliteStore(path)  # the processes also race to create the database file
    try:
        for _ in range(count):
            store.commit_version(new(name))
    finally:
        store.close()


def test_sqlite_commits_from_several_processes_share_one_counter(tmp_path: Path) -> None:
    path, processes, per_process = str(tmp_path / "metadata.db"), 3, 20
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(processes)
    workers = [
        ctx.Process(target=_commit_from_process, args=(path, "hot", per_process, start))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    try:
        for worker in workers:
            worker.join(timeout=90)
        assert [worker.exitcode for worker in workers] == [0] * processes
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
                worker.join()
            worker.close()

    store = SqliteStore(path)
    try:
        listed = store.list_versions(ref("hot"))
    finally:
        store.close()
    assert numbers(listed) == list(range(processes * per_process, 0, -1))
    assert len({r.version_id for r in listed}) == processes * per_process


def test_sqlite_store_is_shared_by_two_instances(tmp_path: Path) -> None:
    first, second = SqliteStore(tmp_path / "m.db"), SqliteStore(tmp_path / "m.db")
    try:
        committed = first.commit_version(new())
        assert second.get_version(ref(), LATEST) == committed
        assert second.commit_version(new()).version == 2
    finally:
        first.close()
        second.close()


def test_sqlite_tokens_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    kept, revoked = token("0123456789abcdef", created_at=1.5), token("fedcba9876543210", created_at=2.5)
    first = SqliteStore(path)
    try:
        first.add_token(kept)
        first.add_token(revoked)
        first.revoke_token(revoked.token_id, 3.5)
    finally:
        first.close()

    reopened = SqliteStore(path)
    try:
        assert reopened.list_tokens() == [kept, dataclasses.replace(revoked, revoked_at=3.5)]
        assert reopened.get_token(kept.token_id) == kept
        with pytest.raises(InvalidRequest):
            reopened.add_token(kept)
    finally:
        reopened.close()


def test_sqlite_token_row_holds_only_the_record_fields(tmp_path: Path) -> None:
    path, sent = tmp_path / "m.db", token()
    store = SqliteStore(path)
    try:
        store.add_token(sent)
    finally:
        store.close()

    with closing(sqlite3.connect(path)) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(tokens)")]
        rows = conn.execute("SELECT * FROM tokens").fetchall()

    assert columns == [field.name for field in dataclasses.fields(TokenRecord)]
    assert rows == [dataclasses.astuple(sent)]


def test_sqlite_file_from_before_tokens_gains_the_table(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    old = SqliteStore(path)
    committed = old.commit_version(new())
    old.close()
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("DROP TABLE tokens")  # as a file written before tokens existed

    store = SqliteStore(path)
    try:
        store.add_token(token())
        assert store.list_tokens() == [token()]
        assert store.get_version(ref(), LATEST) == committed
    finally:
        store.close()


def test_sqlite_s3_key_row_holds_only_the_record_fields(tmp_path: Path) -> None:
    path, sent = tmp_path / "m.db", s3_key()
    store = SqliteStore(path)
    try:
        store.add_s3_key(sent)
    finally:
        store.close()

    with closing(sqlite3.connect(path)) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(s3_keys)")]
        rows = conn.execute("SELECT * FROM s3_keys").fetchall()

    assert columns == [field.name for field in dataclasses.fields(S3KeyRecord)]
    assert rows == [dataclasses.astuple(sent)]


def test_sqlite_file_from_before_s3_keys_gains_the_table(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    old = SqliteStore(path)
    committed = old.commit_version(new())
    old.add_token(token())
    old.close()
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("DROP TABLE s3_keys")  # as a file written before S3 keys existed

    store = SqliteStore(path)
    try:
        store.add_s3_key(s3_key())
        assert store.list_s3_keys() == [s3_key()]
        assert store.get_version(ref(), LATEST) == committed
        assert store.list_tokens() == [token()]
    finally:
        store.close()
    reopened = SqliteStore(path)  # and opening it again changes nothing
    try:
        assert reopened.list_s3_keys() == [s3_key()]
    finally:
        reopened.close()


def test_sqlite_file_from_before_bucket_policies_gains_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    old = SqliteStore(path)
    old.add_bucket(BucketRecord("photos", 1.0, "Enabled"))
    old.create_upload(MultipartUpload(upload_id="0" * 32, name="photos/a", created_at=2.0, touched_at=2.0))
    old.close()
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:  # as a file written before policies
        conn.execute("ALTER TABLE buckets DROP COLUMN policy")
        conn.execute("ALTER TABLE multipart_uploads DROP COLUMN policy")

    store = SqliteStore(path)
    try:
        assert store.get_bucket("photos") == BucketRecord("photos", 1.0, "Enabled")  # policy "": the cluster's
        assert store.get_upload("0" * 32).policy == ""
        assert store.set_bucket_policy("photos", "rep:3").policy == "rep:3"
    finally:
        store.close()


def test_sqlite_file_from_before_buckets_gains_the_table(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    old = SqliteStore(path)
    committed = old.commit_version(new())
    old.close()
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("DROP TABLE buckets")  # as a file written before buckets existed

    store = SqliteStore(path)
    try:
        store.add_bucket(BucketRecord("photos", 1.0))
        assert store.list_buckets() == [BucketRecord("photos", 1.0)]
        assert store.get_version(ref(), LATEST) == committed
    finally:
        store.close()


def test_sqlite_file_from_before_policies_gains_the_column_and_old_rows_read_as_unrecorded(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    old = SqliteStore(path)
    before = old.commit_version(new())
    old.close()
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("ALTER TABLE versions DROP COLUMN policy")  # as a file written before policies existed

    store, second = SqliteStore(path), SqliteStore(path)  # the second open finds the column already there
    try:
        assert store.get_version(ref(), LATEST) == before and before.policy == ""
        after = store.commit_version(new(policy="rep:3"))
        assert [r.policy for r in second.list_versions(ref())] == ["rep:3", ""]
        assert second.get_version(ref(), VersionSpec(number=after.version)) == after
    finally:
        store.close()
        second.close()


@pytest.mark.parametrize("layout", ["directory", "under_a_file", "not_a_database"])
def test_sqlite_unopenable_path_is_reported_with_the_path(tmp_path: Path, layout: str) -> None:
    blocker = tmp_path / "blocker"
    if layout == "directory":
        path = tmp_path
    elif layout == "under_a_file":
        blocker.write_text("not a directory")
        path = blocker / "metadata.db"
    else:
        path = tmp_path / "junk.db"
        path.write_bytes(b"this is not an sqlite file" * 200)

    with pytest.raises(MetadataUnavailable) as caught:
        SqliteStore(path)

    assert "sqlite" in str(caught.value) and str(path) in str(caught.value)


# -- MongoDB only --------------------------------------------------------------------------------


def test_mongo_unreachable_server_fails_fast_as_unavailable() -> None:
    store = MongoStore("mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200")
    try:
        started = time.monotonic()
        with pytest.raises(MetadataUnavailable, match="mongodb") as caught:
            store.get_version(ref(), LATEST)
        assert time.monotonic() - started < 5
        assert caught.value.kind == "metadata_unavailable"
        with pytest.raises(MetadataUnavailable, match="mongodb"):
            store.ping()
    finally:
        store.close()


def test_mongo_token_calls_on_an_unreachable_server_are_unavailable() -> None:
    store = MongoStore("mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200")
    calls: list[Callable[[], Any]] = [
        lambda: store.add_token(token()),
        lambda: store.get_token(token().token_id),
        store.list_tokens,
        lambda: store.revoke_token(token().token_id, 1.0),
    ]
    try:
        for call in calls:
            with pytest.raises(MetadataUnavailable, match="mongodb"):
                call()
    finally:
        store.close()


def test_mongo_tokens_are_shared_by_stores_on_one_database(mongo: tuple[Any, str]) -> None:
    client, name = mongo
    first, second = (MongoStore("mongodb://unused", database=name, client=client) for _ in range(2))
    sent = token()

    first.add_token(sent)

    assert second.get_token(sent.token_id) == sent
    with pytest.raises(InvalidRequest):
        second.add_token(dataclasses.replace(sent, name="someone else"))
    second.revoke_token(sent.token_id, 5.0)
    assert first.get_token(sent.token_id) == dataclasses.replace(sent, revoked_at=5.0)


def test_mongo_token_document_holds_only_the_record_fields(mongo: tuple[Any, str]) -> None:
    client, name = mongo
    store, sent = MongoStore("mongodb://unused", database=name, client=client), token()

    store.add_token(sent)

    assert list(client[name]["tokens"].find({}, {"_id": False})) == [dataclasses.asdict(sent)]
    unique = [index for index in client[name]["tokens"].index_information().values() if index.get("unique")]
    assert [index["key"] for index in unique] == [[("token_id", 1)]]


def test_mongo_s3_key_document_holds_only_the_record_fields(mongo: tuple[Any, str]) -> None:
    client, name = mongo
    first, second = (MongoStore("mongodb://unused", database=name, client=client) for _ in range(2))
    sent = s3_key()

    first.add_s3_key(sent)

    assert list(client[name]["s3_keys"].find({}, {"_id": False})) == [dataclasses.asdict(sent)]
    unique = [index for index in client[name]["s3_keys"].index_information().values() if index.get("unique")]
    assert [index["key"] for index in unique] == [[("access_key_id", 1)]]
    assert second.get_s3_key(sent.access_key_id) == sent  # every peer on the database sees it
    second.revoke_s3_key(sent.access_key_id, 5.0)
    assert first.get_s3_key(sent.access_key_id) == dataclasses.replace(sent, revoked_at=5.0)


def test_mongo_s3_key_calls_on_an_unreachable_server_are_unavailable() -> None:
    store = MongoStore("mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200")
    try:
        for call in (
            lambda: store.add_s3_key(s3_key()),
            lambda: store.get_s3_key(s3_key().access_key_id),
            store.list_s3_keys,
            lambda: store.revoke_s3_key(s3_key().access_key_id, 1.0),
        ):
            with pytest.raises(MetadataUnavailable, match="mongodb"):
                call()
    finally:
        store.close()


def test_mongo_version_document_from_before_policies_reads_as_unrecorded(mongo: tuple[Any, str]) -> None:
    client, name = mongo
    store = MongoStore("mongodb://unused", database=name, client=client)
    committed = store.commit_version(new(policy="rep:2"))
    assert client[name]["versions"].find_one({}, {"_id": False, "policy": True}) == {"policy": "rep:2"}
    client[name]["versions"].update_many({}, {"$unset": {"policy": ""}})  # as stored before policies existed

    assert store.get_version(ref(), LATEST) == dataclasses.replace(committed, policy="")


def test_mongo_file_from_before_heads_takes_conditional_commits(mongo: tuple[Any, str]) -> None:
    client, name = mongo
    store = MongoStore("mongodb://unused", database=name, client=client)
    v1 = store.commit_version(new())
    client[name]["files"].update_many({}, {"$unset": {"head": "", "deleted": ""}})  # as stored before heads
    client[name]["versions"].update_many({}, {"$unset": {"delete_marker": "", "null_version": ""}})

    assert store.get_version(ref(), LATEST) == v1
    assert listed_names(store) == ["docs/a.txt"]
    with pytest.raises(PreconditionFailed):
        store.commit_version(new(if_latest=""))
    assert store.commit_version(new(if_latest=v1.version_id)).version == 2


def test_mongo_deleting_the_head_version_moves_the_head(mongo: tuple[Any, str]) -> None:
    client, name = mongo
    store = MongoStore("mongodb://unused", database=name, client=client)
    v1 = store.commit_version(new())
    v2 = store.commit_version(new())
    store.delete_version(ref(), VersionSpec(version_id=v2.version_id))

    assert client[name]["files"].find_one({}, {"_id": False, "head": True, "deleted": True}) == {
        "head": v1.version_id, "deleted": False}
    assert store.commit_version(new(if_latest=v1.version_id)).version == 3


def _interfere_after_claim(
    store: MongoStore, monkeypatch: pytest.MonkeyPatch, action: Callable[[], Any]
) -> None:
    """Runs action (another peer's call) once, between a commit claiming its number and inserting."""
    claim = store._claim_number
    pending = [action]

    def claim_then_interfere(*args: Any) -> dict[str, Any]:
        file = claim(*args)
        while pending:
            pending.pop()()
        return file

    monkeypatch.setattr(store, "_claim_number", claim_then_interfere)


def test_mongo_commit_racing_delete_file_lands_in_a_new_file(
    mongo: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, name = mongo
    mine, other = (MongoStore("mongodb://unused", database=name, client=client) for _ in range(2))
    old = mine.commit_version(new())
    _interfere_after_claim(mine, monkeypatch, lambda: other.delete_file(ref()))

    committed = mine.commit_version(new(chunks=("fresh",)))

    assert committed.version == 1 and committed.file_id != old.file_id
    assert other.list_versions(ref()) == [committed]
    assert other.referenced_chunks(["c1", "fresh"]) == {"fresh"}


def test_mongo_commit_racing_delete_of_the_last_version_keeps_the_file(
    mongo: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, name = mongo
    mine, other = (MongoStore("mongodb://unused", database=name, client=client) for _ in range(2))
    old = mine.commit_version(new())
    _interfere_after_claim(mine, monkeypatch, lambda: other.delete_version(ref(), VersionSpec(number=1)))

    committed = mine.commit_version(new())

    assert (committed.version, committed.file_id) == (2, old.file_id)
    assert other.list_versions(ref()) == [committed]
    other.delete_version(ref(), LATEST)
    with pytest.raises(FileNotFound):
        other.get_version(ref(), LATEST)


def test_mongo_copy_racing_delete_of_its_source_commits_nothing(
    mongo: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, name = mongo
    mine, other = (MongoStore("mongodb://unused", database=name, client=client) for _ in range(2))
    source = mine.commit_version(new("src", chunks=("s",)))
    kept = mine.commit_version(new("dst", chunks=("d",)))
    _interfere_after_claim(mine, monkeypatch, lambda: other.delete_file(ref("src")))

    with pytest.raises(VersionNotFound):
        mine.commit_version(dataclasses.replace(new("dst", chunks=("s",)), source_version=source.version_id))

    assert other.list_versions(ref("dst")) == [kept]
    assert other.referenced_chunks(["s", "d"]) == {"d"}
    assert other.commit_version(new("dst", if_latest=kept.version_id)).version == 3


# -- PostgreSQL only ------------------------------------------------------------------------------


@pytest.fixture
def own_pg_server() -> Iterator[PgServer]:
    """A server of the test's own, which the test may kill or stop."""
    with postgres_server() as server:
        yield server


def test_postgres_unreachable_server_fails_fast_as_unavailable() -> None:
    started = time.monotonic()
    store = PostgresStore("postgresql://dfs@127.0.0.1:1/x")  # nothing listens on port 1
    try:
        for call in (store.ping, lambda: store.commit_version(new()), lambda: store.get_token("0123456789abcdef")):
            with pytest.raises(MetadataUnavailable, match="postgresql"):
                call()
    finally:
        store.close()
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("outage", ["kill", "stop"])
def test_postgres_store_recovers_by_itself_when_the_server_returns(own_pg_server: PgServer, outage: str) -> None:
    store = PostgresStore(own_pg_server.uri())
    try:
        store.commit_version(new())
        with ThreadPoolExecutor(4) as pool:  # several pooled connections, all of which die with the server
            list(pool.map(lambda _: store.list_versions(ref()), range(8)))
        own_pg_server.kill() if outage == "kill" else own_pg_server.stop()

        started = time.monotonic()
        for call in (store.ping, lambda: store.commit_version(new()), lambda: store.list_versions(ref())):
            with pytest.raises(MetadataUnavailable, match="postgresql"):
                call()
        assert time.monotonic() - started < 5  # refused at once, not after a timeout
        late = PostgresStore(own_pg_server.uri())  # a peer starting meanwhile opens its store all the same
        with pytest.raises(MetadataUnavailable, match="postgresql"):
            late.ping()

        own_pg_server.start()
        store.ping()
        late.ping()
        assert store.commit_version(new()).version == 2  # the refused commit took no number
        assert late.commit_version(new()).version == 3
        assert numbers(store.list_versions(ref())) == [3, 2, 1]
        late.close()
    finally:
        store.close()


def test_postgres_stores_on_one_database_share_one_counter(pg_server: PgServer) -> None:
    with pg_schema_uri(pg_server) as uri:
        with ThreadPoolExecutor(3) as pool:  # the peers create the schema together
            stores = list(pool.map(lambda _: PostgresStore(uri), range(3)))
        try:
            with ThreadPoolExecutor(6) as pool:
                got = list(pool.map(lambda i: stores[i % 3].commit_version(new("hot")).version, range(60)))
            assert sorted(got) == list(range(1, 61))
            assert numbers(stores[1].list_versions(ref("hot"))) == list(range(60, 0, -1))
        finally:
            for opened in stores:
                opened.close()


class _LosesCommit(psycopg.Connection[Any]):
    """A connection whose next COMMIT is lost: the connection closes before the server gets it
    ("before"), or after the server committed but before its answer arrives ("after")."""

    fault: str | None = None

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        fault = type(self).fault
        if query != "COMMIT" or fault is None:
            return super().execute(query, params, **kwargs)
        type(self).fault = None
        if fault == "after":
            super().execute(query)
        self.close()
        raise psycopg.OperationalError("server closed the connection unexpectedly")


@pytest.mark.parametrize("fault", ["before", "after"])
def test_postgres_commit_whose_answer_is_lost_reports_what_happened(
    pg_server: PgServer, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    with pg_schema_uri(pg_server) as uri:
        store = PostgresStore(uri)
        try:
            store.commit_version(new())
            monkeypatch.setattr(psycopg, "connect", _LosesCommit.connect)
            store.close()  # no pooled connection of the ordinary kind is left
            store = PostgresStore(uri)
            _LosesCommit.fault = fault
            if fault == "after":
                committed = store.commit_version(new(chunks=("lost-answer",)))
                assert committed == store.get_version(ref(), LATEST) and committed.version == 2
            else:
                with pytest.raises(MetadataUnavailable, match="not stored"):
                    store.commit_version(new(chunks=("never",)))
                assert store.referenced_chunks(["never"]) == set()
                assert store.commit_version(new()).version == 2  # no number was taken
            assert _LosesCommit.fault is None
        finally:
            _LosesCommit.fault = None
            store.close()


def test_postgres_connection_keeps_the_uris_own_settings() -> None:
    info = conninfo_to_dict(connection_info(
        "postgresql://u:pw@db.example:6543/meta?connect_timeout=9&options=-c%20statement_timeout%3D5000"))

    assert (info["host"], info["port"], info["dbname"], info["user"]) == ("db.example", "6543", "meta", "u")
    assert info["connect_timeout"] == "9" and info["keepalives"] == "1"
    assert str(info["options"]).endswith("-c statement_timeout=5000")  # after the defaults, so it wins


# -- opening by URI and paging helpers -----------------------------------------------------------


def test_open_store_sqlite_creates_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "metadata.db"

    store = open_store(f"sqlite:///{path}")
    try:
        assert isinstance(store, SqliteStore) and store.backend == "sqlite"
        store.commit_version(new())
    finally:
        store.close()
    assert path.exists()


def test_open_store_sqlite_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    store = open_store("sqlite:///rel/metadata.db")
    store.close()

    assert (tmp_path / "rel" / "metadata.db").exists()


@pytest.mark.parametrize(
    ("uri", "database", "expected"),
    [
        ("mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200", None, "filestore"),
        ("mongodb://127.0.0.1:1/meta?serverSelectionTimeoutMS=200", None, "meta"),
        ("mongodb://127.0.0.1:1/meta?serverSelectionTimeoutMS=200", "chosen", "chosen"),
    ],
)
def test_open_store_mongodb_picks_the_database(uri: str, database: str | None, expected: str) -> None:
    store = open_store(uri, database)
    store.close()

    assert isinstance(store, MongoStore) and store.backend == "mongodb"
    assert store.database == expected


@pytest.mark.parametrize("uri", ["", "sqlite:///", "mysql://db/x", "postgresq://db/x", "sqlite://relative",
                                 "file:///x.db"])
def test_open_store_refuses_unknown_uris(uri: str) -> None:
    with pytest.raises(ConfigError, match="sqlite:///"):
        open_store(uri)


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_open_store_postgresql(pg_server: PgServer, scheme: str) -> None:
    with pg_schema_uri(pg_server) as uri:
        store = open_store(uri.replace("postgresql://", f"{scheme}://", 1))
        try:
            assert isinstance(store, PostgresStore) and store.backend == "postgresql"
            assert store.commit_version(new()).version == 1
        finally:
            store.close()


def test_open_store_refuses_a_malformed_postgresql_uri() -> None:
    with pytest.raises(ConfigError, match="postgresql URI"):
        open_store("postgresql://db.example/meta?no_such_parameter=1")


def test_open_store_hides_credentials_in_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        open_store("redis://user:secret@host/0")

    assert "secret" not in str(caught.value)


@pytest.mark.parametrize("name", ["", "a", "docs/x y", "日本語", "a%_\\", "\U0010ffff"])
def test_page_token_round_trips(name: str) -> None:
    assert decode_token(encode_token(name)) == name


@pytest.mark.parametrize(
    ("prefix", "bound"),
    [("", None), ("a", "b"), ("a%", "a&"), ("a\U0010ffff", "b"), ("\U0010ffff", None), ("\ud7ff", "\ue000")],
)
def test_prefix_upper_bound(prefix: str, bound: str | None) -> None:
    assert prefix_upper_bound(prefix) == bound
