"""Per-upload redundancy policies through the peer's services, with the other peers in memory: an
upload names a policy, its bucket's, or the cluster's; the version records it and its chunks go to
that many peers; a policy wider than the usable peers is refused before any data is stored, with a
message naming the policy and the peer count; a copy or a multipart part under another policy than
its source's writes the bytes again. Also the S3 storage-class mapping and the start-up check of
the cluster's default."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from peer.config import PeerConfig
from peer.errors import BucketNotFound, ConfigError, InsufficientReplicas, InvalidRequest
from peer.files import FileService, UploadProof
from peer.files.buckets import BucketService
from peer.files.multipart import MIN_PART_SIZE
from peer.metadata.store import FileRefSpec, VersionRecord, VersionSpec
from peer.node import cluster_policy
from peer.ring.hashring import HashRing
from peer.ring.placement import Placement
from peer.ring.policy import InvalidPolicy, Policy
from peer.rpc.auth import METHOD_ROLES
from peer.s3 import S3Error
from peer.s3.storageclass import requested_policy, storage_class_of
from proto import dfs_pb2
from tests.fakes import NODES
from tests.test_deploy import print_config
from tests.test_multipart_service import CHUNK, _Setup


@pytest.fixture
def setup(tmp_path: Path) -> _Setup:
    """Three peers, all alive, under the cluster policy rep:2."""
    return _Setup(tmp_path)


def _files(setup: _Setup) -> FileService:
    return FileService(setup.uploads, setup.downloads, setup.metadata)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _put(files: FileService, name: str, data: bytes, policy: str | None = None) -> VersionRecord:
    return await files.put(name, _once(data), UploadProof(declared=len(data)), policy=policy)


def _widths(record: VersionRecord) -> set[int]:
    return {len(set(chunk.peers)) for chunk in record.chunks}


# --- refusal -------------------------------------------------------------------------------------


def test_a_policy_wider_than_the_usable_peers_is_refused_naming_the_policy_and_the_count() -> None:
    nodes = [f"p{i}" for i in range(4)]
    placement = Placement(HashRing.build(nodes, 20), lambda node: node != "p3", Policy.replication(2))
    with pytest.raises(InsufficientReplicas) as caught:
        placement.require_writable(Policy.replication(5))
    assert str(caught.value) == "not enough peers: policy rep:5 needs 5 peers, 3 are usable"
    assert (caught.value.policy, caught.value.required, caught.value.available) == ("rep:5", 5, 3)
    with pytest.raises(InsufficientReplicas, match="policy rep:4 needs 4 peers, 3 are usable"):
        placement.require_writable(Policy.replication(4))  # the cluster's default is never the fallback
    assert placement.require_writable(Policy.replication(3)) == Policy.replication(3)


async def test_an_upload_wider_than_the_cluster_stores_nothing(setup: _Setup, tmp_path: Path) -> None:
    files = _files(setup)
    with pytest.raises(InsufficientReplicas, match=f"policy rep:4 needs 4 peers, {len(NODES)} are usable"):
        await _put(files, "wide.bin", os.urandom(3 * CHUNK), "rep:4")
    assert (await setup.metadata.list_files("", 10, "")).files == ()
    # With every peer a target of such a write, this peer holds a chunk of any write that began.
    assert [f for f in (tmp_path / "data").rglob("*") if f.is_file() and f.parent.name != "data"] == []


@pytest.mark.parametrize("policy", ["rep:0", "rep:02", "REP:2", "rep: 2", "ec:4", "x" * 200, "rep:2\n"])
async def test_a_malformed_policy_is_an_invalid_request_naming_it(setup: _Setup, policy: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await _put(_files(setup), "bad.bin", b"data", policy)
    message = str(caught.value)
    assert "policy" in message and "\n" not in message and len(message) < 300
    assert (await setup.metadata.list_files("", 10, "")).files == ()


# --- where the policy comes from -----------------------------------------------------------------


async def test_the_named_policy_is_recorded_and_spreads_every_chunk_over_that_many_peers(setup: _Setup) -> None:
    files = _files(setup)
    record = await _put(files, "three.bin", os.urandom(3 * CHUNK + 5), "rep:3")
    assert record.policy == "rep:3" and _widths(record) == {3}
    default = await _put(files, "two.bin", os.urandom(CHUNK + 5))
    assert default.policy == "rep:2" and _widths(default) == {2}  # none named: the cluster's
    single = await _put(files, "one.bin", os.urandom(CHUNK + 5), "rep:1")
    assert single.policy == "rep:1" and _widths(single) == {1}


async def test_a_bucket_default_applies_to_its_names_unless_the_upload_names_one(setup: _Setup) -> None:
    files = _files(setup)
    buckets = BucketService(files, setup.metadata)
    await buckets.create("photos")
    await buckets.create("plain")
    assert (await buckets.set_policy("photos", "rep:3")).policy == "rep:3"

    assert (await _put(files, "photos/a.jpg", b"a")).policy == "rep:3"
    assert (await _put(files, "photos/b.jpg", b"b", "rep:1")).policy == "rep:1"  # the upload's own wins
    assert (await _put(files, "photos/c.jpg", b"c", "")).policy == "rep:2"  # "" names the cluster's
    assert (await _put(files, "plain/a.jpg", b"a")).policy == "rep:2"
    assert (await _put(files, "nobucket/a.jpg", b"a")).policy == "rep:2"
    assert (await _put(files, "photos", b"not under it")).policy == "rep:2"

    assert (await buckets.set_policy("photos", "")).policy == ""  # cleared: the cluster's again
    assert (await _put(files, "photos/d.jpg", b"d")).policy == "rep:2"
    with pytest.raises(InvalidPolicy):
        await buckets.set_policy("photos", "rep:x")
    with pytest.raises(BucketNotFound):
        await buckets.set_policy("missing", "rep:3")


# --- copies and multipart parts ------------------------------------------------------------------


async def test_a_copy_under_the_source_policy_moves_no_data_and_another_policy_rewrites_it(setup: _Setup) -> None:
    files = _files(setup)
    data = os.urandom(2 * CHUNK + 3)
    source = await _put(files, "src.bin", data)

    same = await files.copy(source, "same.bin", content_type="", metadata={}, policy="")
    assert same.chunks == source.chunks and same.policy == source.policy
    kept = await files.copy(source, "kept.bin", content_type="", metadata={})  # None: the source's policy
    assert kept.chunks == source.chunks

    wider = await files.copy(source, "wider.bin", content_type="", metadata={"k": "v"}, policy="rep:3")
    assert wider.policy == "rep:3" and _widths(wider) == {3} and wider.metadata == {"k": "v"}
    assert (wider.size, wider.sha256) == (source.size, source.sha256)
    assert await setup.read("wider.bin") == data
    with pytest.raises(InsufficientReplicas, match="policy rep:9"):
        await files.copy(source, "too-wide.bin", content_type="", metadata={}, policy="rep:9")


async def test_a_multipart_upload_writes_every_part_under_the_policy_it_was_opened_with(setup: _Setup) -> None:
    upload = await setup.multipart.create("b/obj", policy="rep:3")
    assert upload.policy == "rep:3"
    md5 = await setup.part(upload.upload_id, 1, os.urandom(MIN_PART_SIZE))
    source = await _put(_files(setup), "b/src", os.urandom(2 * CHUNK + 10))  # rep:2: no use to a rep:3 part
    copied = await setup.multipart.copy_part(upload.upload_id, "b/obj", 2, source, 0, 0, None)
    assert copied.policy == "rep:3" and {len(set(c.peers)) for c in copied.chunks} == {3}
    record = await setup.multipart.complete(upload.upload_id, "b/obj", [(1, md5), (2, copied.etag)])
    assert record.policy == "rep:3" and _widths(record) == {3}
    with pytest.raises(InsufficientReplicas, match="policy rep:5 needs 5 peers"):
        await setup.multipart.create("b/wide", policy="rep:5")
    with pytest.raises(InvalidPolicy):
        await setup.multipart.create("b/bad", policy="rep:")


async def test_a_part_copied_from_a_source_of_the_same_policy_references_its_chunks(setup: _Setup) -> None:
    data = os.urandom(2 * CHUNK)
    source = await _put(_files(setup), "b/src", data, "rep:3")
    upload = await setup.multipart.create("b/obj", policy="rep:3")
    copied = await setup.multipart.copy_part(upload.upload_id, "b/obj", 1, source, 0, 0, None)
    assert copied.chunks == source.chunks
    record = await setup.multipart.complete(upload.upload_id, "b/obj", [(1, copied.etag)])
    assert record.policy == "rep:3" and record.chunks == source.chunks
    assert (await setup.metadata.get_version(FileRefSpec(name="b/obj"), VersionSpec())).policy == "rep:3"


# --- S3 storage classes --------------------------------------------------------------------------


@pytest.mark.parametrize(("header", "policy"), [
    (None, None), ("STANDARD", None), (" STANDARD ", None),
    ("REDUCED_REDUNDANCY", "rep:1"), ("STANDARD_IA", "ec:4+2"), ("ONEZONE_IA", "ec:4+1"),
])
def test_storage_classes_map_to_policies(header: str | None, policy: str | None) -> None:
    assert requested_policy(header) == policy
    if policy is not None:
        assert storage_class_of(policy) == header


@pytest.mark.parametrize("header", ["GLACIER", "DEEP_ARCHIVE", "INTELLIGENT_TIERING", "standard", "", "X" * 500])
def test_a_class_without_a_policy_is_invalid_storage_class(header: str) -> None:
    with pytest.raises(S3Error) as caught:
        requested_policy(header)
    assert (caught.value.code, caught.value.status) == ("InvalidStorageClass", 400)
    assert len(caught.value.extra["StorageClassRequested"]) <= 43


def test_other_policies_read_back_as_standard() -> None:
    assert [storage_class_of(p) for p in ("", "rep:2", "rep:3", "ec:8+3")] == ["STANDARD"] * 4


# --- the cluster's default -----------------------------------------------------------------------


def test_the_cluster_default_is_the_default_policy_else_rep_replicas(tmp_path: Path) -> None:
    config = PeerConfig.local(tmp_path, replicas=3)
    assert cluster_policy(config) == Policy.replication(3)  # DFS_REPLICAS keeps working
    assert cluster_policy(dataclasses.replace(config, default_policy="rep:1")) == Policy.replication(1)
    with pytest.raises(ConfigError, match="DFS_DEFAULT_POLICY: invalid redundancy policy 'rep:x'"):
        cluster_policy(dataclasses.replace(config, default_policy="rep:x"))


def test_setting_a_bucket_policy_needs_admin_and_every_client_method_has_a_role() -> None:
    """A method without a role is refused outright, so the new ones must be listed to be callable."""
    methods = {m.name for m in dfs_pb2.DESCRIPTOR.services_by_name["FileStore"].methods}
    assert methods <= set(METHOD_ROLES)
    assert (METHOD_ROLES["SetBucketPolicy"], METHOD_ROLES["ListBuckets"]) == ("admin", "read")


def test_the_cluster_default_is_read_from_dfs_default_policy(tmp_path: Path) -> None:
    env = {"DFS_DATA_DIR": str(tmp_path / "data"), "DFS_NO_AUTH": "1"}
    assert print_config({**env, "DFS_DEFAULT_POLICY": "rep:3"})["default_policy"] == "rep:3"
    assert print_config(env)["default_policy"] == ""  # unset: rep:DFS_REPLICAS
