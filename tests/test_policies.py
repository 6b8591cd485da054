"""Redundancy policies through every public entry point, against real peer processes: the `dfs`
command line, the SDK, the gRPC header and the S3 API (boto3).

Three peers under the cluster default rep:2 carry the module: an upload naming rep:3 is recorded as
rep:3 and its chunks are on disk on all three peers; rep:5 is refused before anything is stored,
with a message naming the policy and the three usable peers (exit 6); a bucket's default policy
applies to every upload into it, over gRPC and S3, unless the upload names one; S3 storage classes
pick their policies and read back. One more single peer shows `--default-policy` overriding
`--replicas`.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from client import ClusterUnavailable, InvalidArgument
from client.sdk import DfsClient
from tests.cluster import Cluster, PeerProc, shared_cluster
from tests.test_cli_integration import dfs, fails, json_out, ok
from tests.test_s3_api import error_code, s3_client, status_of

CHUNK = 1024 * 1024
REFUSED = "not enough peers: policy rep:5 needs 5 peers, 3 are usable"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    with shared_cluster(tmp_path_factory, request, "policies", peers=3, replicas=2) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def peer(cluster: Cluster) -> PeerProc:
    return cluster.peers[0]


@pytest.fixture(scope="module")
def s3(peer: PeerProc) -> Any:
    return s3_client(f"http://{peer.s3_addr}")


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"pol-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def policy_of(peer: PeerProc, name: str) -> str:
    with peer.client(timeout=10) as client:
        return client.info(name).policy


def holders(cluster: Cluster, chunk_id: str) -> set[str]:
    """The peers holding the chunk on their disks, whatever the records say."""
    return {p.node_id for p in cluster.peers if p.chunk_path(chunk_id).exists()}


def absent(peer: PeerProc, name: str) -> bool:
    return dfs(peer, "info", name).returncode == 4


# ------------------------------------------------------------------------------ naming a policy


def test_an_sdk_upload_naming_rep3_is_recorded_so_and_on_three_peers(cluster: Cluster, peer: PeerProc) -> None:
    name = unique("sdk/three.bin")
    data = os.urandom(2 * CHUNK + 77)
    with peer.client() as client:
        result = client.upload(data, name=name, policy="rep:3")
        assert result.version.policy == "rep:3" and len(result.peers) == 3
        assert client.read(name) == data
    assert result.version.chunks and all(len(set(c.peers)) == 3 for c in result.version.chunks)
    everyone = {p.node_id for p in cluster.peers}
    assert all(holders(cluster, c.chunk_id) == everyone for c in result.version.chunks)
    info = json_out(dfs(peer, "--json", "info", name))
    assert info["policy"] == "rep:3"
    assert "policy" in ok(dfs(peer, "info", name)).decode() and "rep:3" in ok(dfs(peer, "info", name)).decode()


@pytest.mark.parametrize("size", [100, 3 * CHUNK], ids=["one-message-put", "streamed-upload"])
def test_dfs_upload_policy_is_recorded_and_shown(peer: PeerProc, tmp_path: Path, size: int) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(size))
    name = unique("cli/policy.bin")
    said = ok(dfs(peer, "upload", str(src), "--name", name, "--policy", "rep:3")).decode()
    assert "rep:3" in said
    assert policy_of(peer, name) == "rep:3"
    plain = unique("cli/default.bin")
    ok(dfs(peer, "upload", str(src), "--name", plain))
    assert policy_of(peer, plain) == "rep:2"  # naming none: the cluster's


# --------------------------------------------------------------------------------- refusal


@pytest.mark.parametrize("size", [100, 3 * CHUNK], ids=["one-message-put", "streamed-upload"])
def test_a_policy_wider_than_the_cluster_exits_6_naming_it_and_stores_nothing(
    peer: PeerProc, tmp_path: Path, size: int
) -> None:
    src = tmp_path / "wide.bin"
    src.write_bytes(os.urandom(size))
    name = unique("cli/wide.bin")
    line = fails(dfs(peer, "upload", str(src), "--name", name, "--policy", "rep:5"), 6)
    assert REFUSED in line, line
    as_json = dfs(peer, "--json", "upload", str(src), "--name", name, "--policy", "rep:5")
    assert as_json.returncode == 6 and as_json.stdout == b""
    error = json.loads(as_json.stderr)["error"]
    assert error["type"] == "cluster_unavailable" and REFUSED in error["message"]
    assert absent(peer, name)


@pytest.mark.parametrize("size", [100, 3 * CHUNK], ids=["one-message-put", "streamed-upload"])
def test_the_sdk_refuses_a_policy_wider_than_the_cluster(peer: PeerProc, size: int) -> None:
    name = unique("sdk/wide.bin")
    with peer.client() as client, pytest.raises(ClusterUnavailable) as caught:
        client.upload(os.urandom(size), name=name, policy="rep:5")
    assert REFUSED in str(caught.value) and caught.value.exit_code == 6
    assert absent(peer, name)


@pytest.mark.parametrize("policy", ["ec:4+2", "ec:2+2"])
def test_an_erasure_code_wider_than_the_cluster_is_refused_naming_it_and_the_peer_count(
    peer: PeerProc, policy: str
) -> None:
    name = unique("sdk/wide-ec.bin")
    width = sum(int(n) for n in policy[3:].split("+"))
    with peer.client() as client, pytest.raises(ClusterUnavailable) as caught:
        client.upload(os.urandom(3 * CHUNK), name=name, policy=policy)
    assert f"not enough peers: policy {policy} needs {width} peers, 3 are usable" in str(caught.value)
    assert absent(peer, name)


@pytest.mark.parametrize("policy", ["rep:x", "rep:0", "raid5", "ec:"])
def test_a_malformed_policy_exits_2_naming_it(peer: PeerProc, policy: str) -> None:
    name = unique("cli/bad.bin")
    line = fails(dfs(peer, "upload", "-", "--name", name, "--policy", policy, stdin=b"x"), 2)
    assert f"invalid redundancy policy {policy!r}" in line, line
    with peer.client() as client, pytest.raises(InvalidArgument, match="invalid redundancy policy"):
        client.upload(b"x", name=name, policy=policy)
    assert absent(peer, name)


def test_an_empty_or_spaced_policy_is_refused_before_any_call(peer: PeerProc) -> None:
    fails(dfs(peer, "upload", "-", "--name", "x", "--policy", "", stdin=b"x"), 2)
    with DfsClient("127.0.0.1:1", timeout=1) as client:  # nothing listens there: refused locally
        for policy in ("", "rep: 3", "rep:3\n"):
            with pytest.raises(InvalidArgument):
                client.upload(b"x", name="x", policy=policy)


# ------------------------------------------------------------------------ the cluster's default


def test_status_shows_the_cluster_default(peer: PeerProc) -> None:
    assert "rep:2 (the cluster's default)" in ok(dfs(peer, "status")).decode()
    assert json_out(dfs(peer, "--json", "status"))["default_policy"] == "rep:2"


def test_default_policy_overrides_replicas(make_cluster: Callable[..., Cluster]) -> None:
    lone = make_cluster(1, replicas=2, extra=("--default-policy", "rep:1")).peers[0]
    with lone.client() as client:
        assert client.status().default_policy == "rep:1"
        stored = client.upload(b"one copy is enough here", name="lone.txt")  # rep:2 would need 2 peers
        assert stored.version.policy == "rep:1"
        with pytest.raises(ClusterUnavailable, match="policy rep:2 needs 2 peers, 1 is usable"):
            client.upload(b"two copies", name="two.txt", policy="rep:2")


# ------------------------------------------------------------------------------ bucket defaults


def test_a_bucket_default_applies_to_uploads_into_it_over_grpc_and_s3(peer: PeerProc, s3: Any, bucket: str) -> None:
    said = ok(dfs(peer, "bucket", "set-policy", bucket, "rep:3")).decode()
    assert f"bucket {bucket}: default policy rep:3" in said
    listed = {b["name"]: b for b in json_out(dfs(peer, "--json", "bucket", "list"))["buckets"]}
    assert listed[bucket]["policy"] == "rep:3"
    assert bucket in ok(dfs(peer, "bucket", "list")).decode()

    ok(dfs(peer, "upload", "-", "--name", f"{bucket}/cli.txt", stdin=b"via dfs"))
    s3.put_object(Bucket=bucket, Key="s3.txt", Body=b"via s3")
    ok(dfs(peer, "upload", "-", "--name", f"{bucket}/own.txt", "--policy", "rep:1", stdin=b"its own"))
    assert [policy_of(peer, f"{bucket}/{k}") for k in ("cli.txt", "s3.txt", "own.txt")] == ["rep:3", "rep:3", "rep:1"]

    ok(dfs(peer, "bucket", "set-policy", bucket, "default"))
    s3.put_object(Bucket=bucket, Key="after.txt", Body=b"cleared")
    assert policy_of(peer, f"{bucket}/after.txt") == "rep:2"
    assert policy_of(peer, f"{bucket}/cli.txt") == "rep:3"  # a stored version keeps its policy
    with peer.client() as client:
        assert next(b for b in client.list_buckets() if b.name == bucket).policy == ""


def test_bucket_set_policy_refuses_what_it_cannot_record(peer: PeerProc, bucket: str) -> None:
    assert "bucket not found" in fails(dfs(peer, "bucket", "set-policy", unique("missing"), "rep:3"), 4)
    assert "invalid redundancy policy 'rep:x'" in fails(dfs(peer, "bucket", "set-policy", bucket, "rep:x"), 2)


def test_an_s3_put_into_a_bucket_wider_than_the_cluster_is_refused(peer: PeerProc, s3: Any, bucket: str) -> None:
    ok(dfs(peer, "bucket", "set-policy", bucket, "rep:5"))
    with pytest.raises(ClientError) as caught:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x" * 1000)
    assert (error_code(caught), status_of(caught)) == ("ServiceUnavailable", 503)
    assert REFUSED in caught.value.response["Error"]["Message"]
    assert absent(peer, f"{bucket}/k")


# ------------------------------------------------------------------------------ storage classes


def test_a_storage_class_picks_its_policy_and_reads_back(peer: PeerProc, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="rr", Body=b"reduced", StorageClass="REDUCED_REDUNDANCY")
    s3.put_object(Bucket=bucket, Key="std", Body=b"standard", StorageClass="STANDARD")
    s3.put_object(Bucket=bucket, Key="none", Body=b"no class")
    assert [policy_of(peer, f"{bucket}/{k}") for k in ("rr", "std", "none")] == ["rep:1", "rep:2", "rep:2"]
    assert s3.head_object(Bucket=bucket, Key="rr")["StorageClass"] == "REDUCED_REDUNDANCY"
    got = s3.get_object(Bucket=bucket, Key="rr")
    assert got["StorageClass"] == "REDUCED_REDUNDANCY" and got["Body"].read() == b"reduced"
    assert "StorageClass" not in s3.head_object(Bucket=bucket, Key="std")  # STANDARD goes without the header


@pytest.mark.parametrize("storage_class", ["GLACIER", "DEEP_ARCHIVE", "NO_SUCH_CLASS"])
def test_a_class_without_a_policy_is_invalid_storage_class(peer: PeerProc, s3: Any, bucket: str,
                                                           storage_class: str) -> None:
    for call in (
        lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x", StorageClass=storage_class),
        lambda: s3.create_multipart_upload(Bucket=bucket, Key="k", StorageClass=storage_class),
    ):
        with pytest.raises(ClientError) as caught:
            call()
        assert (error_code(caught), status_of(caught)) == ("InvalidStorageClass", 400)
    assert absent(peer, f"{bucket}/k")


def test_an_erasure_coded_class_is_refused_on_three_peers(peer: PeerProc, s3: Any, bucket: str) -> None:
    """STANDARD_IA is ec:4+2 (six peers): refused as a class the peers do not offer, or as a policy
    three peers cannot meet; either way, nothing is stored with less redundancy."""
    with pytest.raises(ClientError) as caught:
        s3.put_object(Bucket=bucket, Key="ia", Body=b"x", StorageClass="STANDARD_IA")
    assert error_code(caught) in ("InvalidStorageClass", "ServiceUnavailable")
    assert "ec:4+2" in caught.value.response["Error"]["Message"]
    assert absent(peer, f"{bucket}/ia")


def test_a_multipart_upload_takes_its_class_at_creation(peer: PeerProc, s3: Any, bucket: str) -> None:
    created = s3.create_multipart_upload(Bucket=bucket, Key="mp", StorageClass="REDUCED_REDUNDANCY")
    upload_id = created["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=1, Body=b"part" * 1000)
    s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload_id,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert policy_of(peer, f"{bucket}/mp") == "rep:1"
    assert s3.head_object(Bucket=bucket, Key="mp")["StorageClass"] == "REDUCED_REDUNDANCY"


def test_a_copy_is_of_its_own_class(cluster: Cluster, peer: PeerProc, s3: Any, bucket: str) -> None:
    data = os.urandom(CHUNK + 10)
    s3.put_object(Bucket=bucket, Key="src", Body=data)
    s3.copy_object(Bucket=bucket, Key="rr", CopySource={"Bucket": bucket, "Key": "src"},
                   StorageClass="REDUCED_REDUNDANCY")
    s3.copy_object(Bucket=bucket, Key="src", CopySource={"Bucket": bucket, "Key": "src"},
                   StorageClass="REDUCED_REDUNDANCY")  # onto itself: legal when the class changes
    assert [policy_of(peer, f"{bucket}/{k}") for k in ("rr", "src")] == ["rep:1", "rep:1"]
    assert s3.get_object(Bucket=bucket, Key="rr")["Body"].read() == data

    ok(dfs(peer, "bucket", "set-policy", bucket, "rep:3"))
    s3.copy_object(Bucket=bucket, Key="wide", CopySource={"Bucket": bucket, "Key": "rr"})  # STANDARD: rep:3
    with peer.client() as client:
        wide = client.info(f"{bucket}/wide")
    assert wide.policy == "rep:3" and all(len(set(c.peers)) == 3 for c in wide.chunks)
    assert all(len(holders(cluster, c.chunk_id)) == 3 for c in wide.chunks)
    assert s3.get_object(Bucket=bucket, Key="wide")["Body"].read() == data


# ------------------------------------------------------------------------------ other commands


def test_dfs_cp_writes_under_its_policy(peer: PeerProc, tmp_path: Path) -> None:
    (tmp_path / "tree").mkdir()
    for n in range(2):
        (tmp_path / "tree" / f"{n}.txt").write_bytes(os.urandom(100))
    prefix = unique("cp")
    ok(dfs(peer, "cp", "-r", str(tmp_path / "tree"), f"dfs:{prefix}/", "--policy", "rep:3"))
    assert [policy_of(peer, f"{prefix}/{n}.txt") for n in range(2)] == ["rep:3", "rep:3"]
    ok(dfs(peer, "cp", f"dfs:{prefix}/0.txt", f"dfs:{prefix}/copy.txt", "--policy", "rep:1"))
    assert policy_of(peer, f"{prefix}/copy.txt") == "rep:1"
    refused = dfs(peer, "cp", str(tmp_path / "tree" / "0.txt"), f"dfs:{prefix}/wide.txt", "--policy", "rep:5")
    assert refused.returncode == 6 and REFUSED in refused.stderr.decode()
    assert absent(peer, f"{prefix}/wide.txt")
