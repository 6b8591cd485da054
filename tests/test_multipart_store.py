"""The multipart-upload part of the MetadataStore contract, on SQLite, on MongoStore over mongomock (and
a real MongoDB when DFS_TEST_MONGO_URI is set) and on a real PostgreSQL server (tests/pgserver.py):
parts replace parts of their number, a part never outlives its upload, listings page by name and id,
expiry follows the last touch, and a chunk a part references counts as referenced until its upload is
completed, aborted or expired."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from peer.errors import InvalidRequest, UploadNotFound, VersionNotFound
from peer.metadata.mongo import MongoStore
from peer.metadata.postgres import PostgresStore
from peer.metadata.sqlite import SqliteStore
from peer.metadata.store import ChunkRef, MetadataStore, MultipartUpload, NewVersion, PartRecord
from tests.pgserver import pg_schema_uri
from tests.test_metadata_contract import mongo_database


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


def upload(upload_id: str, name: str = "b/key", at: float = 100.0) -> MultipartUpload:
    return MultipartUpload(upload_id=upload_id, name=name, created_at=at, content_type="text/plain",
                           metadata={"owner": "ana", "s3:cache-control": "no-cache"}, touched_at=at)


def part(upload_id: str, number: int, chunks: tuple[str, ...] = ("c1",), at: float = 200.0) -> PartRecord:
    refs = tuple(ChunkRef(chunk_id, 10 + i, ("peer-a",)) for i, chunk_id in enumerate(chunks))
    return PartRecord(upload_id=upload_id, part_number=number, size=sum(r.size for r in refs), etag="e" * 32,
                      sha256="5" * 64, chunks=refs, created_at=at, policy="rep:2", checksums={"crc32": "AAAAAA=="})


def uid(n: int) -> str:
    return f"{n:032x}"


def test_an_upload_reads_back_as_stored_and_an_id_is_taken_once(store: MetadataStore) -> None:
    store.create_upload(upload(uid(1)))
    assert store.get_upload(uid(1)) == upload(uid(1))
    with pytest.raises(InvalidRequest):
        store.create_upload(upload(uid(1), name="b/other"))
    with pytest.raises(UploadNotFound):
        store.get_upload(uid(2))


def test_an_upload_keeps_the_policy_its_parts_are_written_with(store: MetadataStore) -> None:
    store.create_upload(dataclasses.replace(upload(uid(1)), policy="rep:3"))
    store.create_upload(upload(uid(2)))
    assert store.get_upload(uid(1)).policy == "rep:3"
    assert store.get_upload(uid(2)).policy == ""  # none: the cluster's
    assert [u.policy for u in store.list_uploads("b/", "b/", "", 10)] == ["rep:3", ""]


def test_parts_list_in_order_and_a_part_replaces_its_number(store: MetadataStore) -> None:
    store.create_upload(upload(uid(1)))
    for number in (3, 1, 2):
        store.put_part(part(uid(1), number, (f"c{number}",)))
    store.put_part(part(uid(1), 2, ("new-a", "new-b")))
    parts = store.list_parts(uid(1), 0, 10)
    assert [p.part_number for p in parts] == [1, 2, 3]
    assert [c.chunk_id for c in parts[1].chunks] == ["new-a", "new-b"]
    assert parts[0] == part(uid(1), 1, ("c1",))
    assert [p.part_number for p in store.list_parts(uid(1), 1, 1)] == [2]
    assert store.referenced_chunks(["c1", "c2", "new-a", "c3", "zz"]) == {"c1", "new-a", "c3"}
    with pytest.raises(UploadNotFound):
        store.list_parts(uid(9), 0, 10)


def test_a_part_of_a_missing_upload_is_refused_and_not_kept(store: MetadataStore) -> None:
    with pytest.raises(UploadNotFound):
        store.put_part(part(uid(1), 1, ("orphan",)))
    assert store.referenced_chunks(["orphan"]) == set()


def test_a_copied_part_needs_its_source_version(store: MetadataStore) -> None:
    store.create_upload(upload(uid(1)))
    source = store.commit_version(NewVersion("b/src", 10, "5" * 64, (ChunkRef("shared", 10),)))
    store.put_part(part(uid(1), 1, ("shared",)), source_version=source.version_id)
    assert [p.part_number for p in store.list_parts(uid(1), 0, 10)] == [1]
    with pytest.raises(VersionNotFound):
        store.put_part(part(uid(1), 2, ("gone",)), source_version="f" * 32)
    assert [p.part_number for p in store.list_parts(uid(1), 0, 10)] == [1]
    assert store.referenced_chunks(["gone"]) == set()


def test_abort_removes_the_parts_and_their_references(store: MetadataStore) -> None:
    store.create_upload(upload(uid(1)))
    store.put_part(part(uid(1), 1, ("c1", "c2")))
    assert store.delete_upload(uid(1)).upload_id == uid(1)
    assert store.referenced_chunks(["c1", "c2"]) == set()
    with pytest.raises(UploadNotFound):
        store.delete_upload(uid(1))
    with pytest.raises(UploadNotFound):
        store.put_part(part(uid(1), 2))


def test_a_chunk_passes_from_the_parts_to_the_version(store: MetadataStore) -> None:
    store.create_upload(upload(uid(1)))
    store.put_part(part(uid(1), 1, ("c1",)))
    store.commit_version(NewVersion("b/key", 10, "ab" * 32, (ChunkRef("c1", 10),)))
    store.delete_upload(uid(1))
    assert store.referenced_chunks(["c1"]) == {"c1"}


def test_uploads_list_by_name_then_id_from_the_markers(store: MetadataStore) -> None:
    for n, name in [(1, "b/a"), (2, "b/a"), (3, "b/b"), (4, "b/c/x"), (5, "other/a")]:
        store.create_upload(upload(uid(n), name))

    def listed(prefix: str, key_marker: str, upload_id_marker: str | None, limit: int = 10) -> list[int]:
        return [int(u.upload_id, 16) for u in store.list_uploads(prefix, key_marker, upload_id_marker, limit)]

    assert listed("b/", "", "") == [1, 2, 3, 4]
    assert listed("b/", "", "", limit=2) == [1, 2]
    assert listed("b/", "b/a", uid(1)) == [2, 3, 4]
    assert listed("b/", "b/a", None) == [3, 4]
    assert listed("b/", "b/a", "") == [1, 2, 3, 4]
    assert listed("", "", "") == [1, 2, 3, 4, 5]


def test_expiry_follows_the_last_touch(store: MetadataStore) -> None:
    store.create_upload(upload(uid(1), at=100.0))
    store.create_upload(upload(uid(2), at=100.0))
    store.create_upload(upload(uid(3), at=100.0))
    store.put_part(part(uid(1), 1, ("c1",), at=500.0))  # a part touches its upload
    store.put_part(part(uid(2), 1, ("c2",), at=150.0))
    assert store.get_upload(uid(3), touched_at=600.0).touched_at == 600.0  # as a completion does
    expired = store.expire_uploads(400.0, 10)
    assert [u.upload_id for u in expired] == [uid(2)]
    assert store.referenced_chunks(["c1", "c2"]) == {"c1"}
    assert store.get_upload(uid(1)).touched_at == 500.0
    assert store.expire_uploads(400.0, 10) == []
    assert {u.upload_id for u in store.expire_uploads(1000.0, 10)} == {uid(1), uid(3)}
