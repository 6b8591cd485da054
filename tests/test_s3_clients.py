"""The S3 API with the clients people use, against real peer processes with authentication on.

One cluster of 3 peers (R=2, HTTP, SigV4 required) and an admin access key made with `dfs-peer
s3-key create` carry every test: the AWS CLI from PyPI (`aws s3 cp/sync/ls/rm`, `aws s3api`, `aws s3
presign`), rclone (the Debian package, configured through environment variables alone), s3fs/fsspec
(random ranged reads of a 200 MiB object), and what crosses paths: a file a client wrote is the file
`dfs` reads and the other way round, and a peer SIGKILLed while a client writes through another peer's
endpoint loses no acknowledged object. Bytes are compared by SHA-256 after every round trip.

Uploads above a client's multipart threshold (the AWS CLI's 8 MiB, rclone's --s3-upload-cutoff) run
as multipart uploads when the peers serve CreateMultipartUpload (asked once per run) and are expected
failures while they answer it NotImplemented. The boto3 tests of every operation are in
tests/test_s3_api.py.

The AWS CLI is the one next to this interpreter (a dev extra). s3fs needs aiobotocore, which pins an
older botocore than the boto3 of the dev extras, so it is installed on first use into an environment
of its own inside the venv and driven in a subprocess. rclone comes from apt: `.ci/run` installs it;
locally its absence skips the rclone tests, on CI (CI set) it fails them.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.cluster import TEST_SECRET, Cluster, PeerProc, wait_for

MIB = 1024 * 1024
REGION = "us-east-1"
ON_CI = os.environ.get("CI", "").lower() not in ("", "0", "false")
AWS = Path(sys.executable).with_name("aws")
RCLONE = shutil.which("rclone")
#: s3fs and the aiobotocore it needs; aiobotocore brings the botocore it supports.
S3FS_PINS = ("s3fs==2026.9.0", "fsspec==2026.9.0", "aiobotocore==3.10.0")
S3FS_HOME = Path(sys.prefix) / "s3fs"
NO_MULTIPART = "the peers answer CreateMultipartUpload with NotImplemented: multipart uploads are not served yet"

pytestmark = pytest.mark.timeout(180)

needs_rclone = pytest.mark.skipif(
    RCLONE is None and not ON_CI, reason="rclone is not installed (apt-get install rclone); CI installs it"
)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tree_digests(root: Path) -> dict[str, str]:
    """Every file under `root` by its path relative to it (with `/`), to its SHA-256."""
    return {p.relative_to(root).as_posix(): sha(p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()}


def make_tree(root: Path, rng: random.Random, files: dict[str, int]) -> dict[str, str]:
    for name, size in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size))
    return tree_digests(root)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any AWS or rclone setting of the developer's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RCLONE_"))}
    return {**env, **extra}


# ---------------------------------------------------------------------------------------- the cluster


class Setup:
    """A converged 3-peer cluster requiring SigV4, its admin access key and an admin gRPC token."""

    def __init__(self, cluster: Cluster, key: tuple[str, str], base: Path) -> None:
        self.cluster = cluster
        self.key = key
        self.base = base
        self._multipart: bool | None = None

    def endpoint(self, index: int = 0) -> str:
        return f"http://{self.cluster.peers[index].s3_addr}"

    def s3(self, index: int = 0, **config: Any) -> Any:
        return s3_client(self.endpoint(index), self.key, **config)

    def new_bucket(self) -> str:
        name = f"c-{uuid.uuid4().hex[:12]}"
        self.s3().create_bucket(Bucket=name)
        return name

    def multipart_served(self) -> bool:
        """Sends CreateMultipartUpload once (and aborts what it started): whether the peers serve it."""
        if self._multipart is None:
            s3, bucket = self.s3(), self.new_bucket()
            try:
                upload = s3.create_multipart_upload(Bucket=bucket, Key="probe")
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "NotImplemented":
                    raise
                self._multipart = False
            else:
                s3.abort_multipart_upload(Bucket=bucket, Key="probe", UploadId=upload["UploadId"])
                self._multipart = True
        return self._multipart

    def require_multipart(self) -> None:
        if not self.multipart_served():
            pytest.xfail(NO_MULTIPART)


def s3_client(endpoint: str, key: tuple[str, str], **config: Any) -> Any:
    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=key[0], aws_secret_access_key=key[1], region_name=REGION,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **config),
    )


def peer_cli(*args: str) -> str:
    made = subprocess.run([sys.executable, "-m", "peer", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "DFS_CLUSTER_SECRET": TEST_SECRET}, stdin=subprocess.DEVNULL)
    assert made.returncode == 0, made.stderr
    return made.stdout


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Setup]:
    base = tmp_path_factory.mktemp("s3clients")
    metadata = f"sqlite:///{base / 'metadata.db'}"
    doc = json.loads(peer_cli("s3-key", "create", "--role", "admin", "--name", "clients", "--metadata", metadata,
                              "--json"))
    token = peer_cli("token", "create", "--role", "admin", "--metadata", metadata).strip()
    cluster = Cluster(base, metadata=metadata, replicas=2, client_kwargs={"token": token})
    failed_before = request.session.testsfailed
    try:
        for _ in range(3):
            cluster.add_peer(env={"DFS_NO_AUTH": ""})
        cluster.wait_converged()
        yield Setup(cluster, (doc["access_key_id"], doc["secret_access_key"]), base)
    finally:
        cluster.close()
        if request.session.testsfailed > failed_before:
            print(cluster.tail_logs())


# ------------------------------------------------------------------------------------------ AWS CLI


class AwsCli:
    """The AWS CLI of this venv, configured by files of the test's own: the `default` profile at the
    CLI's defaults (multipart from 8 MiB), `single-put` with the README's raised threshold."""

    def __init__(self, home: Path, endpoint: str, key: tuple[str, str]) -> None:
        assert AWS.exists(), f"{AWS} is missing: the dev extras install the AWS CLI (make venv)"
        home.mkdir(parents=True, exist_ok=True)
        self.endpoint = endpoint
        config = home / "config"
        config.write_text(
            f"[default]\nregion = {REGION}\ns3 =\n    addressing_style = path\n    signature_version = s3v4\n"
            f"[profile single-put]\nregion = {REGION}\ns3 =\n    addressing_style = path\n"
            "    multipart_threshold = 5GB\n"
        )
        credentials = home / "credentials"
        credentials.write_text("".join(f"[{profile}]\naws_access_key_id = {key[0]}\naws_secret_access_key = {key[1]}\n"
                                       for profile in ("default", "single-put")))
        self.env = clean_env(AWS_CONFIG_FILE=str(config), AWS_SHARED_CREDENTIALS_FILE=str(credentials),
                             AWS_EC2_METADATA_DISABLED="true", AWS_RETRY_MODE="standard", AWS_MAX_ATTEMPTS="1")

    def run(self, *args: str, profile: str = "default", ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([str(AWS), "--endpoint-url", self.endpoint, "--profile", profile, *args],
                              capture_output=True, text=True, timeout=120, env=self.env, stdin=subprocess.DEVNULL)
        if ok:
            assert done.returncode == 0, f"aws {' '.join(args)} exited {done.returncode}:\n{done.stderr}"
        return done

    def lines(self, *args: str, starting: str = "") -> list[str]:
        return [line for line in self.run(*args).stdout.splitlines() if line.startswith(starting)]


@pytest.fixture(scope="module")
def aws(setup: Setup) -> AwsCli:
    return AwsCli(setup.base / "aws", setup.endpoint(1), setup.key)


def test_aws_cli_uses_the_key_and_a_wrong_secret_is_refused(setup: Setup, aws: AwsCli) -> None:
    bucket = f"c-{uuid.uuid4().hex[:12]}"
    assert aws.run("s3", "mb", f"s3://{bucket}").stdout.strip() == f"make_bucket: {bucket}"
    assert bucket in aws.run("s3", "ls").stdout
    wrong = AwsCli(setup.base / "aws-wrong", aws.endpoint, (setup.key[0], "x" * 40))
    refused = wrong.run("s3", "ls", f"s3://{bucket}", ok=False)
    assert refused.returncode != 0 and "SignatureDoesNotMatch" in refused.stderr


def test_aws_cli_cp_both_ways_and_across_paths(setup: Setup, aws: AwsCli, tmp_path: Path) -> None:
    bucket = setup.new_bucket()
    local = tmp_path / "a b é.txt"
    local.write_bytes(os.urandom(300_000))
    aws.run("s3", "cp", str(local), f"s3://{bucket}/docs/a b é.txt", "--no-progress")
    back = tmp_path / "back.txt"
    aws.run("s3", "cp", f"s3://{bucket}/docs/a b é.txt", str(back), "--no-progress")
    assert sha(back.read_bytes()) == sha(local.read_bytes())
    with setup.cluster.peers[2].client() as dfs:  # the object the CLI wrote is the file dfs reads
        assert sha(dfs.read(f"{bucket}/docs/a b é.txt")) == sha(local.read_bytes())
        from_dfs = os.urandom(200_000)
        dfs.upload(from_dfs, name=f"{bucket}/from-dfs/x.bin")
    aws.run("s3", "cp", f"s3://{bucket}/from-dfs/x.bin", str(tmp_path / "x.bin"), "--no-progress")
    assert sha((tmp_path / "x.bin").read_bytes()) == sha(from_dfs)


def test_aws_cli_large_file_in_one_put_and_ranged_download(setup: Setup, aws: AwsCli, tmp_path: Path) -> None:
    """Above 8 MiB with the threshold raised (one PUT); the download is the CLI's parallel ranged GETs."""
    bucket = setup.new_bucket()
    local = tmp_path / "large.bin"
    local.write_bytes(os.urandom(19 * MIB + 4321))
    aws.run("s3", "cp", str(local), f"s3://{bucket}/large.bin", "--no-progress", profile="single-put")
    back = tmp_path / "back.bin"
    aws.run("s3", "cp", f"s3://{bucket}/large.bin", str(back), "--no-progress")
    assert sha(back.read_bytes()) == sha(local.read_bytes())
    with setup.cluster.peers[0].client() as dfs:
        assert sha(dfs.read(f"{bucket}/large.bin")) == sha(local.read_bytes())


def test_aws_cli_large_file_above_the_multipart_threshold(setup: Setup, aws: AwsCli, tmp_path: Path) -> None:
    setup.require_multipart()
    bucket = setup.new_bucket()
    local = tmp_path / "multipart.bin"
    local.write_bytes(os.urandom(17 * MIB + 1))  # three parts of the CLI's 8 MiB
    aws.run("s3", "cp", str(local), f"s3://{bucket}/multipart.bin", "--no-progress")
    back = tmp_path / "back.bin"
    aws.run("s3", "cp", f"s3://{bucket}/multipart.bin", str(back), "--no-progress")
    assert sha(back.read_bytes()) == sha(local.read_bytes())
    with setup.cluster.peers[2].client() as dfs:
        assert sha(dfs.read(f"{bucket}/multipart.bin")) == sha(local.read_bytes())


def test_aws_cli_sync_both_ways(setup: Setup, aws: AwsCli, tmp_path: Path) -> None:
    bucket = setup.new_bucket()
    rng = random.Random(13)
    src = tmp_path / "src"
    files = {f"d{i % 3}/sub{i % 2}/f{i}.bin": rng.randrange(0, 300_000) for i in range(10)}
    files["empty"] = 0
    files["top.txt"] = 1234
    digests = make_tree(src, rng, files)
    target = f"s3://{bucket}/tree"
    sync = ("s3", "sync", "--no-progress")

    assert len(aws.lines(*sync, str(src), target, starting="upload:")) == len(files)
    assert aws.run(*sync, str(src), target).stdout.strip() == ""  # nothing changed, nothing sent
    dst = tmp_path / "dst"
    assert len(aws.lines(*sync, target, str(dst), starting="download:")) == len(files)
    assert tree_digests(dst) == digests
    assert aws.run(*sync, target, str(dst)).stdout.strip() == ""

    (src / "top.txt").write_bytes(b"changed, and of another size")
    (src / "d0" / "sub0" / "f0.bin").unlink()
    changed = aws.lines(*sync, "--delete", str(src), target)
    assert sorted(line.split(":")[0] for line in changed) == ["delete", "upload"], changed
    assert len(aws.lines(*sync, "--delete", target, str(dst))) == 2
    assert tree_digests(dst) == tree_digests(src)


def test_aws_cli_ls_and_rm_recursive(setup: Setup, aws: AwsCli) -> None:
    bucket = setup.new_bucket()
    s3 = setup.s3(2)
    sizes = {"a/1": 10, "a/2": 20, "a/b/3": 30, "c/4": 40, "top": 50}
    for key, size in sizes.items():
        s3.put_object(Bucket=bucket, Key=key, Body=os.urandom(size))

    def listing(*args: str) -> list[tuple[str, str]]:
        """(size or PRE, name) of each line of `aws s3 ls`."""
        return [(line.split()[-2], line.split()[-1]) for line in aws.run("s3", "ls", *args).stdout.splitlines()]

    assert listing(f"s3://{bucket}/") == [("PRE", "a/"), ("PRE", "c/"), ("50", "top")]
    assert listing(f"s3://{bucket}/a/") == [("PRE", "b/"), ("10", "1"), ("20", "2")]
    assert listing(f"s3://{bucket}/a") == [("PRE", "a/")]
    assert listing(f"s3://{bucket}", "--recursive") == [(str(size), key) for key, size in sizes.items()]

    removed = aws.lines("s3", "rm", f"s3://{bucket}/a/", "--recursive", starting="delete:")
    assert len(removed) == 3
    assert listing(f"s3://{bucket}", "--recursive") == [("40", "c/4"), ("50", "top")]
    aws.run("s3", "rb", f"s3://{bucket}", "--force")
    with pytest.raises(ClientError):
        s3.head_bucket(Bucket=bucket)


def test_aws_s3api_calls_and_presign(setup: Setup, aws: AwsCli, tmp_path: Path) -> None:
    bucket = setup.new_bucket()
    body = os.urandom(50_000)
    local = tmp_path / "body.bin"
    local.write_bytes(body)

    def api(*args: str) -> Any:
        return json.loads(aws.run("s3api", *args, "--bucket", bucket, "--output", "json").stdout or "{}")

    put = api("put-object", "--key", "obj", "--body", str(local), "--metadata", "owner=ana",
              "--content-type", "application/x-test")
    head = api("head-object", "--key", "obj")
    assert head["ContentLength"] == len(body) and head["ETag"] == put["ETag"]
    assert head["ETag"] == f'"{hashlib.md5(body, usedforsecurity=False).hexdigest()}"'
    assert head["Metadata"] == {"owner": "ana"} and head["ContentType"] == "application/x-test"

    ranged = tmp_path / "range.bin"
    got = json.loads(aws.run("s3api", "get-object", "--bucket", bucket, "--key", "obj", "--range", "bytes=100-1099",
                             str(ranged)).stdout)
    assert got["ContentRange"] == f"bytes 100-1099/{len(body)}" and got["ContentLength"] == 1000
    assert sha(ranged.read_bytes()) == sha(body[100:1100])

    keys = [f"k/{i:02d}" for i in range(7)]
    setup.s3().delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "obj"}]})
    for key in keys:
        setup.s3().put_object(Bucket=bucket, Key=key, Body=key.encode())
    first = api("list-objects-v2", "--prefix", "k/", "--max-items", "3", "--page-size", "2")
    assert [o["Key"] for o in first["Contents"]] == keys[:3] and first["NextToken"]
    rest = api("list-objects-v2", "--prefix", "k/", "--page-size", "2", "--starting-token", first["NextToken"])
    assert [o["Key"] for o in rest["Contents"]] == keys[3:] and "NextToken" not in rest

    url = aws.run("s3", "presign", f"s3://{bucket}/k/03", "--expires-in", "120").stdout.strip()
    assert "X-Amz-Signature=" in url
    with urllib.request.urlopen(url, timeout=30) as answer:
        assert answer.read() == b"k/03"

    gone = api("delete-objects", "--delete", json.dumps({"Objects": [{"Key": k} for k in keys[:5]], "Quiet": True}))
    assert not gone.get("Errors")
    assert [o["Key"] for o in setup.s3().list_objects_v2(Bucket=bucket)["Contents"]] == keys[5:]


def test_aws_cli_cp_recursive_both_ways_with_a_multipart_file(setup: Setup, aws: AwsCli, tmp_path: Path) -> None:
    """A directory with a nested subdirectory and a file above the CLI's 8 MiB threshold (a multipart
    upload) goes up as one key per file and comes back byte-identical."""
    setup.require_multipart()
    bucket = setup.new_bucket()
    rng = random.Random(21)
    src = tmp_path / "src"
    files = {"top.txt": 1234, "empty": 0, "docs/a b.txt": 70_000, "docs/deeper/nested.bin": 300_000,
             "docs/deeper/big.bin": 9 * MIB + 77}
    digests = make_tree(src, rng, files)
    target = f"s3://{bucket}/tree"
    copy = ("s3", "cp", "--recursive", "--no-progress")
    assert len(aws.lines(*copy, str(src), target, starting="upload:")) == len(files)
    s3 = setup.s3(0)
    listed = {o["Key"]: o for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert sorted(listed) == sorted(f"tree/{name}" for name in files)
    assert listed["tree/docs/deeper/big.bin"]["ETag"].strip('"').endswith("-2")  # sent as two 8 MiB parts
    assert listed["tree/docs/deeper/big.bin"]["Size"] == files["docs/deeper/big.bin"]
    dst = tmp_path / "dst"
    assert len(aws.lines(*copy, target, str(dst), starting="download:")) == len(files)
    assert tree_digests(dst) == digests


# ------------------------------------------------------------------------------------------- rclone


class Rclone:
    """rclone with remote `dfs:` defined by environment variables alone (no config file read)."""

    def __init__(self, home: Path, endpoint: str, key: tuple[str, str], *, env_auth: bool = False) -> None:
        """The keys in RCLONE_CONFIG_DFS_*, or with `env_auth` in an AWS credentials file (the README's way)."""
        assert RCLONE is not None, "rclone is not installed: .ci/run installs it (apt-get install rclone)"
        home.mkdir(parents=True, exist_ok=True)
        remote = {"TYPE": "s3", "PROVIDER": "Other", "ENDPOINT": endpoint}
        if env_auth:
            credentials = home / "s3-credentials"
            credentials.write_text(f"[default]\naws_access_key_id = {key[0]}\naws_secret_access_key = {key[1]}\n")
            remote |= {"ENV_AUTH": "true"}
            auth = {"AWS_SHARED_CREDENTIALS_FILE": str(credentials)}
        else:
            remote |= {"ACCESS_KEY_ID": key[0], "SECRET_ACCESS_KEY": key[1], "REGION": REGION}
            auth = {}
        self.env = clean_env(RCLONE_CONFIG=str(home / "no-such-rclone.conf"), **auth,
                             **{f"RCLONE_CONFIG_DFS_{name}": value for name, value in remote.items()})

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        assert RCLONE is not None
        done = subprocess.run([RCLONE, *args, "--low-level-retries", "1", "--retries", "1"], capture_output=True,
                              text=True, timeout=120, env=self.env, stdin=subprocess.DEVNULL)
        if ok:
            assert done.returncode == 0, f"rclone {' '.join(args)} exited {done.returncode}:\n{done.stderr}"
        return done

    def transferred(self, *args: str) -> list[str]:
        """The files a copy or sync sent or deleted, from its -v log."""
        log = self.run(*args, "-v").stderr.splitlines()
        return [line for line in log if ": Copied" in line or ": Deleted" in line]


@pytest.fixture(scope="module")
def rclone(setup: Setup) -> Rclone:
    return Rclone(setup.base / "rclone", setup.endpoint(2), setup.key)


@needs_rclone
def test_rclone_copy_sync_check_lsf(setup: Setup, rclone: Rclone, tmp_path: Path) -> None:
    bucket = setup.new_bucket()
    rng = random.Random(7)
    src = tmp_path / "src"
    files = {f"photos/{i}.jpg": rng.randrange(1, 400_000) for i in range(6)}
    files["big/video.bin"] = 20 * MIB + 17  # one PUT: below rclone's default --s3-upload-cutoff (200 MiB)
    files["notes/empty.txt"] = 0
    digests = make_tree(src, rng, files)
    remote = f"dfs:{bucket}/r"

    assert len(rclone.transferred("copy", str(src), remote)) == len(files)
    assert "0 differences found" in rclone.run("check", str(src), remote).stderr
    for version in ("1", "2"):  # ListObjects and ListObjectsV2
        listed = rclone.run("lsf", "-R", "--files-only", "--s3-list-version", version, remote).stdout.split()
        assert sorted(listed) == sorted(files)
    assert rclone.run("lsf", remote).stdout.split() == ["big/", "notes/", "photos/"]
    as_in_the_readme = Rclone(setup.base / "rclone-env-auth", setup.endpoint(1), setup.key, env_auth=True)
    assert as_in_the_readme.run("lsf", "-R", "--files-only", remote).stdout.split() == listed
    with setup.cluster.peers[0].client() as dfs:
        assert sha(dfs.read(f"{bucket}/r/big/video.bin")) == digests["big/video.bin"]

    dst = tmp_path / "dst"
    rclone.run("copy", remote, str(dst))
    assert tree_digests(dst) == digests

    (src / "photos" / "0.jpg").unlink()
    (src / "photos" / "1.jpg").write_bytes(b"another size altogether")
    (src / "new.txt").write_bytes(b"new")
    assert len(rclone.transferred("sync", str(src), remote)) == 3
    assert rclone.transferred("sync", str(src), remote) == []  # nothing changed, nothing sent
    assert "0 differences found" in rclone.run("check", str(src), remote).stderr
    rclone.run("sync", remote, str(dst))
    assert tree_digests(dst) == tree_digests(src)
    broken = rclone.run("check", str(src / "photos"), f"dfs:{bucket}/r/big", ok=False)
    assert broken.returncode != 0  # check does tell a difference


@needs_rclone
def test_rclone_chunked_upload_above_the_cutoff(setup: Setup, rclone: Rclone, tmp_path: Path) -> None:
    setup.require_multipart()
    bucket = setup.new_bucket()
    src = tmp_path / "src"
    digests = make_tree(src, random.Random(3), {"chunked.bin": 12 * MIB + 5})
    flags = ("--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M")
    rclone.run("copy", str(src), f"dfs:{bucket}", *flags)
    assert "0 differences found" in rclone.run("check", str(src), f"dfs:{bucket}").stderr
    dst = tmp_path / "dst"
    rclone.run("copy", f"dfs:{bucket}", str(dst))
    assert tree_digests(dst) == digests


# ----------------------------------------------------------------------------------------- s3fs


S3FS_READS = r"""
import hashlib, json, random, sys
import fsspec

args = json.loads(sys.argv[1])
fs = fsspec.filesystem("s3", key=args["key"], secret=args["secret"],
                       client_kwargs={"endpoint_url": args["endpoint"], "region_name": args["region"]})
path, size, rng = args["path"], args["size"], random.Random(args["seed"])
reads = []

def note(kind, offset, asked, data):
    reads.append([kind, offset, asked, len(data), hashlib.sha256(data).hexdigest()])

with fs.open(path, "rb", block_size=2 * 1024 * 1024) as f:
    for _ in range(args["file_reads"]):
        offset, asked = rng.randrange(size), rng.randrange(1, 3 * 1024 * 1024)
        f.seek(offset)
        note("file", offset, asked, f.read(asked))
    for offset, asked in ((0, 1), (size - 1, 10), (size - 5000, 5000)):
        f.seek(offset)
        note("file", offset, asked, f.read(asked))
for _ in range(args["cat_reads"]):
    start = rng.randrange(size)
    end = min(size, start + rng.randrange(1, 1024 * 1024))
    note("cat_file", start, end - start, fs.cat_file(path, start=start, end=end))
print(json.dumps({"size": fs.info(path)["size"], "reads": reads}))
"""


def s3fs_env() -> dict[str, str]:
    """An environment where s3fs is importable: installed on first use into S3FS_HOME (see the module doc)."""
    pins = S3FS_HOME / "pins.txt"
    if not pins.exists() or pins.read_text().split() != list(S3FS_PINS):
        shutil.rmtree(S3FS_HOME, ignore_errors=True)
        staging = S3FS_HOME.with_name(f"{S3FS_HOME.name}.{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        made = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                               "--target", str(staging), *S3FS_PINS], capture_output=True, text=True, timeout=300)
        if made.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            message = f"cannot install {' '.join(S3FS_PINS)}: {made.stderr.strip().splitlines()[-1:]}"
            if ON_CI:
                pytest.fail(message)
            pytest.skip(message)
        (staging / "pins.txt").write_text("\n".join(S3FS_PINS))
        try:
            staging.rename(S3FS_HOME)
        except OSError:  # another run installed it meanwhile
            shutil.rmtree(staging, ignore_errors=True)
    return clean_env(PYTHONPATH=str(S3FS_HOME))


@pytest.fixture(scope="module")
def s3fs_environment() -> dict[str, str]:
    return s3fs_env()


def test_s3fs_random_ranged_reads_of_a_200_mib_object(setup: Setup, s3fs_environment: dict[str, str]) -> None:
    bucket = setup.new_bucket()
    size = 200 * MIB
    data = random.Random(200).randbytes(size)
    setup.s3(0, read_timeout=120).put_object(Bucket=bucket, Key="big/object.bin", Body=data)
    seed = random.randrange(1 << 30)
    args = {"key": setup.key[0], "secret": setup.key[1], "endpoint": setup.endpoint(1), "region": REGION,
            "path": f"{bucket}/big/object.bin", "size": size, "seed": seed, "file_reads": 40, "cat_reads": 40}
    done = subprocess.run([sys.executable, "-S", "-c", S3FS_READS, json.dumps(args)], capture_output=True, text=True,
                          timeout=150, env=s3fs_environment, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["size"] == size
    assert len(out["reads"]) == 2 * 40 + 3
    for kind, offset, asked, got, digest in out["reads"]:
        expected = data[offset : offset + asked]
        assert (got, digest) == (len(expected), sha(expected)), f"{kind} at {offset} of {asked} (seed {seed})"


# -------------------------------------------------------------------------------------- a peer killed


def test_a_peer_killed_during_s3_writes_loses_no_acknowledged_object(setup: Setup) -> None:
    """Writers PUT through peer 0's endpoint while peer 2 is SIGKILLed: every PUT answered 200 reads back
    byte-identical through every surviving peer. Runs last: the cluster keeps two peers after it."""
    bucket = setup.new_bucket()
    victim: PeerProc = setup.cluster.peers[2]
    acked: dict[str, tuple[str, float]] = {}
    failures: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(n: int) -> None:
        s3 = setup.s3(0, connect_timeout=5, read_timeout=20)
        rng = random.Random(n)
        for i in range(10_000):
            if stop.is_set():
                return
            key, body = f"w{n}/{i:04d}", rng.randbytes(rng.randrange(64 * 1024, 3 * MIB))
            try:
                s3.put_object(Bucket=bucket, Key=key, Body=body)
            except Exception as exc:  # noqa: BLE001 - not acknowledged: no promise was made
                with lock:
                    failures.append(f"{key}: {exc}")
                continue
            with lock:
                acked[key] = (sha(body), time.monotonic())

    def entry_sees_alive(node_id: str) -> bool:
        with setup.cluster.peers[0].client(timeout=5) as dfs:
            return any(m.node_id == node_id and m.state == "alive" for m in dfs.status().members)

    threads = [threading.Thread(target=writer, args=(n,), daemon=True) for n in range(2)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(acked) >= 6, 60, "PUTs acknowledged before the kill")
        victim.kill()
        killed_at = time.monotonic()
        wait_for(lambda: not entry_sees_alive(victim.node_id), 30, "peer 0 noticing the kill")
        noticed_at = time.monotonic()
        wait_for(lambda: sum(t > noticed_at for _, t in list(acked.values())) >= 4, 60,
                 "PUTs acknowledged once the kill was noticed", lambda: f"failures: {failures[-3:]}")
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)

    during = sum(killed_at < t <= noticed_at for _, t in acked.values())
    print(f"{len(acked)} PUTs acknowledged ({during} between the kill and its detection), {len(failures)} refused")
    for index, peer in enumerate(setup.cluster.peers):
        if not peer.running:
            continue
        s3 = setup.s3(index, read_timeout=30)
        listed: set[str] = set()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            listed |= {o["Key"] for o in page.get("Contents", [])}
        assert set(acked) <= listed, f"peer{index} does not list {sorted(set(acked) - listed)}"
        for key, (digest, _) in sorted(acked.items()):
            assert sha(s3.get_object(Bucket=bucket, Key=key)["Body"].read()) == digest, f"{key} through peer{index}"
