"""S3 access keys: made with `dfs-peer s3-key`, `dfs s3-key` and `cluster up`, stored sealed, looked up for SigV4.

The secret must never reach the metadata store in plain text, must open only under the encryption
key it was sealed with (a clear error otherwise, never a wrong secret), and a revoked key must stop
working on the peer that revoked it at once. The commands print the id and the secret once, in
text and JSON; only admins manage keys over the API.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner, Result

from client.cli import cli as dfs_cli
from client.errors import PermissionDeniedError
from client.sdk import DfsClient
from peer.clock import ManualClock
from peer.errors import ConfigError, EncryptionKeyMismatch, InvalidRequest, S3KeyNotFound
from peer.metadata.sqlite import SqliteStore
from peer.metadata.store import AsyncMetadata
from peer.security.s3keys import (
    GENERATED_KEY_FILE,
    S3Credential,
    S3Keys,
    SecretBox,
    check_access_key_id,
    load_secret_box,
    new_s3_key,
)
from tests.cluster import TEST_SECRET, Cluster
from tests.test_local_cluster import free_base

ACCESS_KEY_ID = re.compile(r"DK[A-Z0-9]{18}")
SECRET = re.compile(r"[A-Za-z0-9]{40}")
OTHER_SECRET = "another-cluster-secret-9876543210"


@pytest.fixture
def sqlite(tmp_path: Path) -> Iterator[SqliteStore]:
    store = SqliteStore(tmp_path / "metadata.db")
    yield store
    store.close()


def keys_on(store: SqliteStore, secret: str = TEST_SECRET, cache_s: float = 60.0,
            clock: ManualClock | None = None) -> S3Keys:
    return S3Keys(AsyncMetadata(store), SecretBox.from_cluster_secret(secret), cache_s, clock or ManualClock())


def raw_rows(path: Path) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute("SELECT * FROM s3_keys").fetchall()


# ------------------------------------------------------------------ the domain: shape, sealing, lookup


async def test_a_new_key_has_the_aws_shape_and_is_unique(sqlite: SqliteStore) -> None:
    keys = keys_on(sqlite)
    made = [await keys.create("read", f"key {i}") for i in range(20)]

    assert all(ACCESS_KEY_ID.fullmatch(m.access_key_id) and SECRET.fullmatch(m.secret) for m in made)
    assert len({m.access_key_id for m in made}) == len({m.secret for m in made}) == 20
    assert all(m.secret not in repr(m) for m in made)  # a result that reaches a log keeps its secret


async def test_the_secret_is_never_stored_in_plain_text(sqlite: SqliteStore) -> None:
    made = await keys_on(sqlite).create("admin", "backup")

    rows = raw_rows(sqlite.path)
    dump = repr(rows)
    assert len(rows) == 1 and made.access_key_id in dump
    secret = made.secret.encode()
    for encoded in (secret, secret.hex().encode(), base64.b64encode(secret), base64.urlsafe_b64encode(secret)):
        assert encoded.decode() not in dump
    with closing(sqlite3.connect(sqlite.path)) as conn:  # nor anywhere else in the file
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert secret not in sqlite.path.read_bytes()
    assert await keys_on(sqlite).lookup(made.access_key_id) == S3Credential(made.secret, "admin")


async def test_a_key_sealed_under_one_cluster_secret_does_not_open_under_another(sqlite: SqliteStore) -> None:
    made = await keys_on(sqlite, TEST_SECRET).create("write")
    elsewhere = keys_on(sqlite, OTHER_SECRET)

    with pytest.raises(EncryptionKeyMismatch, match=f"{made.access_key_id}.*--s3-key-file.*--cluster-secret"):
        await elsewhere.lookup(made.access_key_id)
    with pytest.raises(EncryptionKeyMismatch):
        SecretBox.from_cluster_secret(OTHER_SECRET).open(made.record)
    assert SecretBox.from_cluster_secret(TEST_SECRET).open(made.record) == made.secret


def test_a_record_altered_in_the_store_does_not_open() -> None:
    box = SecretBox.from_cluster_secret(TEST_SECRET)
    made = new_s3_key(box, "read", "", 1.0)
    other = new_s3_key(box, "admin", "", 1.0)
    altered = [
        dataclasses.replace(made.record, role="admin"),  # a raised role
        dataclasses.replace(made.record, access_key_id=other.access_key_id),  # a secret moved to another id
        dataclasses.replace(made.record, nonce=other.record.nonce),
        dataclasses.replace(made.record, secret_ciphertext="zz"),
    ]
    for record in altered:
        with pytest.raises(EncryptionKeyMismatch, match="altered"):
            box.open(record)


async def test_lookup_answers_none_for_unknown_malformed_and_revoked_keys(sqlite: SqliteStore) -> None:
    keys = keys_on(sqlite)
    made = await keys.create("write")

    assert await keys.lookup("DK" + "Z" * 18) is None
    for malformed in ("", "dk" + "a" * 18, made.access_key_id + "X", "AKIAIOSFODNN7EXAMPLE"):
        assert await keys.lookup(malformed) is None
    assert await keys.lookup(made.access_key_id) == (made.secret, "write")  # unpacks as (secret, role)
    await keys.revoke(made.access_key_id)
    assert await keys.lookup(made.access_key_id) is None


async def test_a_revocation_here_takes_effect_at_once_and_elsewhere_when_the_cache_expires(sqlite: SqliteStore) -> None:
    clock = ManualClock()
    here, there = keys_on(sqlite, cache_s=30, clock=clock), keys_on(sqlite, cache_s=30, clock=clock)
    made = await here.create("read")
    assert await here.lookup(made.access_key_id) is not None
    assert there.lookup_blocking(made.access_key_id) is not None  # both peers cached it

    revoked = await here.revoke(made.access_key_id)

    assert revoked.revoked_at is not None and revoked.access_key_id == made.access_key_id
    assert await here.lookup(made.access_key_id) is None  # the revoking peer: at once
    assert await there.lookup(made.access_key_id) is not None  # another peer: until its cache expires
    clock.advance(31)
    assert await there.lookup(made.access_key_id) is None


async def test_a_key_created_here_is_found_even_after_an_unknown_answer_was_cached(sqlite: SqliteStore) -> None:
    keys = keys_on(sqlite)
    made = new_s3_key(keys.box, "read", "", 1.0)
    assert await keys.lookup(made.access_key_id) is None  # cached as unknown
    sqlite.add_s3_key(made.record)
    assert await keys.lookup(made.access_key_id) is None  # still cached
    keys.forget(made.access_key_id)
    assert await keys.lookup(made.access_key_id) == (made.secret, "read")


async def test_lookup_blocking_serves_a_worker_thread(sqlite: SqliteStore) -> None:
    keys = keys_on(sqlite)
    made = await keys.create("admin")
    found = await asyncio.to_thread(keys.lookup_blocking, made.access_key_id)
    assert found == S3Credential(made.secret, "admin")


async def test_create_list_and_revoke_check_what_they_are_given(sqlite: SqliteStore) -> None:
    clock = ManualClock()
    keys = keys_on(sqlite, clock=clock)
    with pytest.raises(InvalidRequest, match="role"):
        await keys.create("root")
    with pytest.raises(InvalidRequest, match="name"):
        await keys.create("read", "bad\nname")
    with pytest.raises(InvalidRequest, match="access key id"):
        await keys.revoke("not-a-key")
    with pytest.raises(S3KeyNotFound):
        await keys.revoke("DK" + "Q" * 18)
    first = await keys.create("read", "a")
    clock.advance(1)
    second = await keys.create("admin", "b")
    listed = await keys.list()
    assert [(k.access_key_id, k.role, k.name) for k in listed] == [
        (first.access_key_id, "read", "a"), (second.access_key_id, "admin", "b"),
    ]
    assert not any(hasattr(k, "secret_ciphertext") or hasattr(k, "secret") for k in listed)
    assert check_access_key_id(first.access_key_id) == first.access_key_id


# ------------------------------------------------------------------ where the encryption key comes from


def test_the_key_file_wins_over_the_cluster_secret(tmp_path: Path) -> None:
    key_file = tmp_path / "s3.key"
    key_file.write_text("k" * 44 + "\n")
    from_file = load_secret_box(str(key_file), TEST_SECRET, tmp_path / "data")
    made = new_s3_key(from_file, "read", "", 1.0)

    assert load_secret_box(str(key_file), OTHER_SECRET, tmp_path).open(made.record) == made.secret
    with pytest.raises(EncryptionKeyMismatch):
        load_secret_box("", TEST_SECRET, tmp_path).open(made.record)
    assert not (tmp_path / "data").exists()  # nothing generated when a source is given


def test_a_short_or_missing_key_file_refuses_to_start(tmp_path: Path) -> None:
    short = tmp_path / "short.key"
    short.write_text("too short\n")
    with pytest.raises(ConfigError, match="at least 32"):
        load_secret_box(str(short), "", tmp_path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_secret_box(str(tmp_path / "missing.key"), "", tmp_path)


def test_without_key_file_or_secret_a_private_key_file_is_generated_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = load_secret_box("", "", data_dir)
    made = new_s3_key(first, "read", "", 1.0)
    key_file = data_dir / GENERATED_KEY_FILE

    assert first.generated and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert load_secret_box("", "", data_dir).open(made.record) == made.secret  # a restart reads the same key
    with pytest.raises(EncryptionKeyMismatch, match="sealed under encryption key"):
        load_secret_box("", "", tmp_path / "another-host").open(made.record)
    assert [p.name for p in data_dir.iterdir()] == [GENERATED_KEY_FILE]  # no temp file left behind


# ------------------------------------------------------------------ dfs-peer s3-key (on the store)


def dfs_peer(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in ("DFS_CLUSTER_SECRET", "DFS_S3_KEY_FILE")}
    return subprocess.run([sys.executable, "-m", "peer", *args], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, env={**full_env, **(env or {})})


def test_dfs_peer_s3_key_create_list_revoke(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'metadata.db'}"
    store = ["--metadata", uri, "--data-dir", str(tmp_path / "data")]

    text = dfs_peer("s3-key", "create", "--role", "write", "--name", "rclone", *store,
                    env={"DFS_CLUSTER_SECRET": TEST_SECRET})
    as_json = dfs_peer("s3-key", "create", "--role", "read", *store, "--json", "--cluster-secret", TEST_SECRET)

    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("aws_access_key_id = ") and "shown only this once" in text.stderr
    access_key_id, secret = (line.split(" = ", 1)[1] for line in lines)
    assert ACCESS_KEY_ID.fullmatch(access_key_id) and SECRET.fullmatch(secret)
    assert as_json.returncode == 0, as_json.stderr
    doc = json.loads(as_json.stdout)
    assert set(doc) == {"access_key_id", "secret_access_key", "info"}
    assert doc["info"] == {"access_key_id": doc["access_key_id"], "role": "read", "name": "",
                           "created_at": doc["info"]["created_at"], "revoked_at": None}
    box = SecretBox.from_cluster_secret(TEST_SECRET)
    with closing(SqliteStore(tmp_path / "metadata.db")) as opened:
        records = {r.access_key_id: r for r in opened.list_s3_keys()}
    assert box.open(records[access_key_id]) == secret and records[access_key_id].role == "write"
    assert box.open(records[doc["access_key_id"]]) == doc["secret_access_key"]

    listed = dfs_peer("s3-key", "list", *store, "--json")
    assert listed.returncode == 0, listed.stderr
    assert [(k["access_key_id"], k["revoked_at"]) for k in json.loads(listed.stdout)["keys"]] == [
        (access_key_id, None), (doc["access_key_id"], None)
    ]
    assert secret not in listed.stdout and "ciphertext" not in listed.stdout

    revoked = dfs_peer("s3-key", "revoke", access_key_id, *store)
    assert revoked.returncode == 0 and access_key_id in revoked.stdout
    table = dfs_peer("s3-key", "list", *store).stdout
    assert re.search(rf"{access_key_id}\s+write\s+revoked", table)
    bad = dfs_peer("s3-key", "revoke", "nonsense", *store)
    assert bad.returncode == 2 and bad.stderr.startswith("dfs-peer: error:") and "Traceback" not in bad.stderr


def test_dfs_peer_s3_key_create_without_secret_uses_the_data_directorys_key_file(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    made = dfs_peer("s3-key", "create", "--role", "admin", "--data-dir", str(data_dir), "--json")
    assert made.returncode == 0, made.stderr
    assert str(data_dir / GENERATED_KEY_FILE) in made.stderr
    doc = json.loads(made.stdout)
    with closing(SqliteStore(data_dir / "metadata.db")) as opened:
        record = opened.get_s3_key(doc["access_key_id"])
    assert record is not None
    assert load_secret_box("", "", data_dir).open(record) == doc["secret_access_key"]


# ------------------------------------------------------------------ dfs s3-key (over the API of a real peer)


@pytest.fixture(scope="module")
def auth_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, dict[str, str]]]:
    """One peer with client authentication on, and a token of each role."""
    base = tmp_path_factory.mktemp("s3keys")
    metadata = f"sqlite:///{base / 'metadata.db'}"
    tokens = {}
    for role in ("read", "write", "admin"):
        made = dfs_peer("token", "create", "--role", role, "--metadata", metadata)
        assert made.returncode == 0, made.stderr
        tokens[role] = made.stdout.strip()
    cluster = Cluster(base, metadata=metadata, replicas=1, client_kwargs={"token": tokens["admin"]})
    try:
        cluster.add_peer(env={"DFS_NO_AUTH": ""})
        yield cluster, tokens
    finally:
        cluster.close()


def dfs(cluster: Cluster, token: str, *args: str) -> Result:
    return CliRunner().invoke(dfs_cli, ["--peer", cluster.peers[0].grpc_addr, "--token", token, "--timeout", "10",
                                        *args])


def test_dfs_s3_key_create_list_revoke_against_a_peer(auth_peer: tuple[Cluster, dict[str, str]]) -> None:
    cluster, tokens = auth_peer

    created = dfs(cluster, tokens["admin"], "s3-key", "create", "--role", "write", "--name", "backups")
    as_json = dfs(cluster, tokens["admin"], "--json", "s3-key", "create", "--role", "read")

    assert created.exit_code == 0, created.output
    lines = created.stdout.splitlines()
    assert [line.split(" = ")[0] for line in lines] == ["aws_access_key_id", "aws_secret_access_key"]
    access_key_id, secret = (line.split(" = ", 1)[1] for line in lines)
    assert ACCESS_KEY_ID.fullmatch(access_key_id) and SECRET.fullmatch(secret)
    assert "shown only once" in created.stderr
    assert as_json.exit_code == 0, as_json.output
    doc = json.loads(as_json.stdout)
    assert set(doc) == {"access_key_id", "secret_access_key", "info"}
    assert set(doc["info"]) == {"access_key_id", "role", "name", "created_at", "revoked_at"}
    assert doc["info"]["access_key_id"] == doc["access_key_id"] and doc["info"]["role"] == "read"

    # The peer sealed the secrets under its cluster secret, which it and every other peer hold.
    with closing(SqliteStore(cluster.metadata.removeprefix("sqlite:///"))) as opened:
        record = opened.get_s3_key(access_key_id)
        assert record is not None and secret not in repr(record)
        assert SecretBox.from_cluster_secret(TEST_SECRET).open(record) == secret

    listed = dfs(cluster, tokens["admin"], "--json", "s3-key", "list")
    keys = {k["access_key_id"]: k for k in json.loads(listed.stdout)["keys"]}
    assert {access_key_id, doc["access_key_id"]} <= set(keys) and keys[access_key_id]["name"] == "backups"
    assert secret not in listed.stdout and doc["secret_access_key"] not in listed.stdout

    revoked = dfs(cluster, tokens["admin"], "--json", "s3-key", "revoke", access_key_id)
    assert revoked.exit_code == 0, revoked.output
    assert json.loads(revoked.stdout)["revoked_at"] is not None
    table = dfs(cluster, tokens["admin"], "s3-key", "list").stdout
    assert "ACCESS KEY ID" in table and access_key_id in table
    missing = dfs(cluster, tokens["admin"], "s3-key", "revoke", "DK" + "Q" * 18)
    assert missing.exit_code == 4 and "not found" in missing.output


@pytest.mark.parametrize("role", ["read", "write"])
def test_a_token_below_admin_cannot_manage_s3_keys(auth_peer: tuple[Cluster, dict[str, str]], role: str) -> None:
    cluster, tokens = auth_peer
    with DfsClient(cluster.peers[0].grpc_addr, timeout=10, token=tokens[role]) as client:
        with pytest.raises(PermissionDeniedError):
            client.create_s3_key("admin", "escalation")
        with pytest.raises(PermissionDeniedError):
            client.list_s3_keys()
        with pytest.raises(PermissionDeniedError):
            client.revoke_s3_key("DK" + "Q" * 18)
    denied = dfs(cluster, tokens[role], "s3-key", "create", "--role", "admin")
    assert denied.exit_code == 8 and "aws_secret_access_key" not in denied.output
    with DfsClient(cluster.peers[0].grpc_addr, timeout=10, token=tokens["admin"]) as admin:
        assert "escalation" not in {k.name for k in admin.list_s3_keys()}


# ------------------------------------------------------------------ cluster up


def cluster_cmd(*args: str) -> subprocess.CompletedProcess[str]:
    return dfs_peer("cluster", *args)


@pytest.fixture
def cluster_dir(tmp_path: Path) -> Iterator[Path]:
    base = tmp_path / "cluster"
    yield base
    if (base / "cluster.json").exists():
        cluster_cmd("down", "--dir", str(base))
        for pid in json.loads((base / "cluster.json").read_text())["pids"].values():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def aws_credentials(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """What botocore's credential loader reads from `path` as the default profile."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(path))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(path.parent / "no-aws-config"))
    credentials = boto3.Session(profile_name="default").get_credentials()
    assert credentials is not None
    frozen = credentials.get_frozen_credentials()
    return frozen.access_key, frozen.secret_key


def test_cluster_up_writes_s3_credentials_that_botocore_reads(cluster_dir: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    base_port = str(free_base(1))
    up = cluster_cmd("up", "--peers", "1", "--replicas", "1", "--dir", str(cluster_dir), "--base-port", base_port)
    assert up.returncode == 0, up.stderr
    path = cluster_dir / "s3-credentials"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and str(path.resolve()) in up.stderr

    access_key_id, secret = aws_credentials(path, monkeypatch)

    assert ACCESS_KEY_ID.fullmatch(access_key_id) and SECRET.fullmatch(secret)
    box = SecretBox.from_cluster_secret((cluster_dir / "cluster.secret").read_text().strip())
    with closing(SqliteStore(cluster_dir / "metadata.db")) as opened:
        record = opened.get_s3_key(access_key_id)
    assert record is not None and record.role == "admin" and box.open(record) == secret

    # A restart of the same directory keeps the key while it is valid, and replaces a revoked one.
    assert cluster_cmd("down", "--dir", str(cluster_dir)).returncode == 0
    again = cluster_cmd("up", "--peers", "1", "--replicas", "1", "--dir", str(cluster_dir), "--base-port", base_port)
    assert again.returncode == 0, again.stderr
    assert aws_credentials(path, monkeypatch) == (access_key_id, secret)
    assert cluster_cmd("down", "--dir", str(cluster_dir)).returncode == 0
    revoked = dfs_peer("s3-key", "revoke", access_key_id, "--metadata", f"sqlite:///{cluster_dir / 'metadata.db'}")
    assert revoked.returncode == 0, revoked.stderr
    third = cluster_cmd("up", "--peers", "1", "--replicas", "1", "--dir", str(cluster_dir), "--base-port", base_port,
                        "--json")
    assert third.returncode == 0, third.stderr
    assert json.loads(third.stdout)["s3_credentials"] == str(path.resolve())
    renewed = aws_credentials(path, monkeypatch)
    assert renewed[0] != access_key_id
    with closing(SqliteStore(cluster_dir / "metadata.db")) as opened:
        record = opened.get_s3_key(renewed[0])
    assert record is not None and record.revoked_at is None and box.open(record) == renewed[1]
