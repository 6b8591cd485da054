"""S3 access keys: made, stored sealed under the peers' encryption key, and looked up for SigV4.

An access key is an id in AWS's shape (20 upper-case letters and digits, starting "DK") and a
secret of 40 letters and digits (238 random bits), tied to one of the token roles. SigV4 signs with
the secret itself, so the server must be able to read it back: unlike a token it cannot be stored as
a hash. It is sealed with AES-256-GCM under an encryption key every peer holds, and the access key
id and role are authenticated with it, so whoever can write the metadata store can neither move a
sealed secret to another id nor raise a key's role without the secret failing to open.

The encryption key comes, in this order, from the S3 key file (`DFS_S3_KEY_FILE`), from the cluster
secret (`DFS_CLUSTER_SECRET`, through HKDF-SHA256 with its own label, so it is independent of the
HMAC key the same secret gives peer messages), or else from a key file generated once in the data
directory (`s3-secret.key`, mode 0600): right for one peer, or peers started with one data
directory's file; a second host generates a different key and cannot open keys made elsewhere
(`EncryptionKeyMismatch`, never a wrong secret). Records carry a fingerprint of the key (`key_id`),
so the mismatch is named before any decryption is tried.

Looked-up keys are cached for `cache_s` seconds (as tokens are), good answers and unknown ids alike;
a key revoked through this peer is dropped from its cache at once, and other peers refuse it once
their cached answer expires.
"""

from __future__ import annotations

import builtins
import os
import re
import secrets
import string
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from peer.clock import Clock, SystemClock
from peer.errors import ConfigError, EncryptionKeyMismatch, InvalidRequest
from peer.metadata.store import AsyncMetadata, S3KeyRecord
from peer.security.tokens import MAX_CACHED, MAX_NAME_CHARS, check_role

__all__ = [
    "GENERATED_KEY_FILE",
    "NewS3Key",
    "S3Credential",
    "S3KeyInfo",
    "S3Keys",
    "SecretBox",
    "check_access_key_id",
    "load_secret_box",
    "new_s3_key",
]

ACCESS_KEY_PREFIX = "DK"
ACCESS_KEY_CHARS = 20
SECRET_CHARS = 40
_ID_ALPHABET = string.ascii_uppercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits  # nothing a shell, URL or INI file treats specially
_ACCESS_KEY = re.compile(rf"{ACCESS_KEY_PREFIX}[A-Z0-9]{{{ACCESS_KEY_CHARS - len(ACCESS_KEY_PREFIX)}}}")
_SECRET = re.compile(rf"[A-Za-z0-9]{{{SECRET_CHARS}}}")

GENERATED_KEY_FILE = "s3-secret.key"
"""The key file a peer with neither a key file nor a cluster secret generates in its data directory."""
MIN_KEY_FILE_BYTES = 32
_NONCE_BYTES = 12
_SALT = b"dfs s3 access keys"
_SEAL_LABEL = b"dfs s3 secret sealing v1"
_ID_LABEL = b"dfs s3 encryption key id v1"


def check_access_key_id(value: str) -> str:
    if not _ACCESS_KEY.fullmatch(value):
        raise InvalidRequest(
            f"invalid S3 access key id {value[:40]!r}: expected {ACCESS_KEY_CHARS} upper-case letters and digits"
            f" starting {ACCESS_KEY_PREFIX}"
        )
    return value


def check_key_name(name: str) -> str:
    if len(name) > MAX_NAME_CHARS or any(not ch.isprintable() for ch in name):
        raise InvalidRequest(f"S3 key name must be printable and at most {MAX_NAME_CHARS} characters")
    return name


# ------------------------------------------------------------------------------ the encryption key


def _derive(material: bytes, label: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=_SALT, info=label).derive(material)


def _associated(access_key_id: str, role: str) -> bytes:
    """What a sealed secret is bound to besides its key: changing either makes it fail to open."""
    return f"dfs-s3-key\0{access_key_id}\0{role}".encode()


class SecretBox:
    """Seals and opens S3 secrets with AES-256-GCM under a key derived (HKDF-SHA256) from `material`."""

    def __init__(self, material: bytes, source: str, *, generated: bool = False) -> None:
        """`source` says where the key came from, for messages; `generated` marks a key file this
        peer made itself (a single-host setup)."""
        self._aead = AESGCM(_derive(material, _SEAL_LABEL))
        self.key_id = _derive(material, _ID_LABEL, 8).hex()
        """A fingerprint of the key, stored with each record; it reveals nothing of the key."""
        self.source = source
        self.generated = generated

    @classmethod
    def from_cluster_secret(cls, cluster_secret: str) -> SecretBox:
        return cls(cluster_secret.encode(), "the cluster secret")

    def seal(self, access_key_id: str, role: str, secret: str) -> tuple[str, str]:
        """(nonce, ciphertext with its tag), both hex; a fresh random nonce for every seal."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, secret.encode(), _associated(access_key_id, role))
        return nonce.hex(), sealed.hex()

    def open(self, record: S3KeyRecord) -> str:
        """The secret of `record`, or EncryptionKeyMismatch: sealed under another key, or altered."""
        name = record.access_key_id
        if record.key_id != self.key_id:
            raise EncryptionKeyMismatch(
                f"the secret of S3 access key {name} was sealed under encryption key {record.key_id}, but this"
                f" peer holds {self.key_id} (from {self.source}): give every peer the same --s3-key-file, or"
                " without one the same --cluster-secret"
            )
        try:
            plain = self._aead.decrypt(
                bytes.fromhex(record.nonce), bytes.fromhex(record.secret_ciphertext),
                _associated(name, record.role),
            )
        except (InvalidTag, ValueError) as exc:
            raise EncryptionKeyMismatch(
                f"the sealed secret of S3 access key {name} does not open under encryption key {self.key_id}:"
                " the record was altered (its id, role or sealed secret)"
            ) from exc
        secret = plain.decode("ascii", errors="replace")
        if not _SECRET.fullmatch(secret):
            raise EncryptionKeyMismatch(f"the sealed secret of S3 access key {name} is not a secret of this kind")
        return secret


def load_secret_box(key_file: str, cluster_secret: str, data_dir: Path) -> SecretBox:
    """The peers' encryption key for S3 secrets: from `key_file` if set, else derived from
    `cluster_secret` if set, else from DATA_DIR/s3-secret.key, generated on first use (mode 0600).
    Blocking file I/O: call it off the event loop. ConfigError for an unreadable or short key file."""
    if key_file:
        path = Path(key_file)
        try:
            material = path.read_bytes().strip()
        except OSError as exc:
            raise ConfigError(f"DFS_S3_KEY_FILE: cannot read {path}: {exc.strerror or exc}") from exc
        if len(material) < MIN_KEY_FILE_BYTES:
            raise ConfigError(
                f"DFS_S3_KEY_FILE: {path} holds {len(material)} bytes; it needs at least {MIN_KEY_FILE_BYTES}"
                " (e.g. `openssl rand -base64 32`)"
            )
        return SecretBox(material, f"key file {path}")
    if cluster_secret:
        return SecretBox.from_cluster_secret(cluster_secret)
    path = data_dir / GENERATED_KEY_FILE
    return SecretBox(read_or_generate_key_file(path), f"key file {path}, generated on this host", generated=True)


def read_or_generate_key_file(path: Path) -> bytes:
    """The key file's contents, creating it first if missing. Two processes creating it at once
    (a peer and `dfs-peer s3-key create` on one data directory) end up with one file: each writes
    its own temp file, and only the first link() into place succeeds."""
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ConfigError(f"cannot read the S3 key file {path}: {exc.strerror or exc}") from exc
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_urlsafe(32).encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temp, path)
        except FileExistsError:
            pass  # another process made it first: use theirs
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"cannot create the S3 key file {path}: {exc.strerror or exc}") from exc
    finally:
        temp.unlink(missing_ok=True)


# ------------------------------------------------------------------------------ keys


class S3Credential(NamedTuple):
    """What SigV4 verification needs of a valid key: its secret, and the role it grants."""

    secret: str
    role: str


@dataclass(frozen=True)
class S3KeyInfo:
    """The public part of an access key (never the secret, sealed or not)."""

    access_key_id: str
    role: str
    name: str
    created_at: float
    revoked_at: float | None = None

    @classmethod
    def of(cls, record: S3KeyRecord) -> S3KeyInfo:
        return cls(record.access_key_id, record.role, record.name, record.created_at, record.revoked_at)


@dataclass(frozen=True)
class NewS3Key:
    """A key just made: its secret, to show its owner once, and the sealed record to store."""

    secret: str
    record: S3KeyRecord

    @property
    def access_key_id(self) -> str:
        return self.record.access_key_id

    @property
    def info(self) -> S3KeyInfo:
        return S3KeyInfo.of(self.record)

    def __repr__(self) -> str:  # the secret stays out of logs and tracebacks
        return f"NewS3Key({self.access_key_id}, role={self.record.role})"


def new_s3_key(box: SecretBox, role: str, name: str, now: float) -> NewS3Key:
    """A fresh access key of `role`, its secret sealed in the record to store."""
    role, name = check_role(role), check_key_name(name)
    tail = ACCESS_KEY_CHARS - len(ACCESS_KEY_PREFIX)
    access_key_id = ACCESS_KEY_PREFIX + "".join(secrets.choice(_ID_ALPHABET) for _ in range(tail))
    secret = "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(SECRET_CHARS))
    nonce, ciphertext = box.seal(access_key_id, role, secret)
    record = S3KeyRecord(access_key_id, ciphertext, nonce, box.key_id, role, name, now)
    return NewS3Key(secret, record)


class S3Keys:
    """This peer's S3 access keys: create, list and revoke them, and look one up for SigV4."""

    def __init__(self, metadata: AsyncMetadata, box: SecretBox, cache_s: float, clock: Clock | None = None) -> None:
        self._metadata = metadata
        self._box = box
        self._cache_s = cache_s
        self._clock = clock or SystemClock()
        # Read and written from the event loop (lookup) and from worker threads (lookup_blocking).
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[float, S3Credential | None]] = OrderedDict()

    @property
    def box(self) -> SecretBox:
        return self._box

    async def create(self, role: str, name: str = "") -> NewS3Key:
        """A new key, stored sealed; its secret is in the result and nowhere else in the clear."""
        made = new_s3_key(self._box, role, name, self._clock.wall())
        await self._metadata.add_s3_key(made.record)
        self.forget(made.access_key_id)  # an earlier "unknown" answer for this id is stale now
        return made

    async def list(self) -> builtins.list[S3KeyInfo]:
        """Every key, revoked ones included, oldest first."""
        return [S3KeyInfo.of(record) for record in await self._metadata.list_s3_keys()]

    async def revoke(self, access_key_id: str) -> S3KeyInfo:
        record = await self._metadata.revoke_s3_key(check_access_key_id(access_key_id), self._clock.wall())
        self.forget(record.access_key_id)
        return S3KeyInfo.of(record)

    async def lookup(self, access_key_id: str) -> S3Credential | None:
        """(secret, role) of a valid key; None when the id is malformed, unknown or revoked.
        EncryptionKeyMismatch when the key exists but this peer cannot open its secret."""
        if not _ACCESS_KEY.fullmatch(access_key_id):
            return None
        hit = self._cached(access_key_id)
        if hit is not None:
            return hit[0]
        return self._remember(access_key_id, await self._metadata.get_s3_key(access_key_id))

    def lookup_blocking(self, access_key_id: str) -> S3Credential | None:
        """`lookup` for a worker thread (it calls the metadata store in the calling thread); as a
        `SecretLookup` for SigV4Verifier: `lambda key: (found := keys.lookup_blocking(key)) and found.secret`."""
        if not _ACCESS_KEY.fullmatch(access_key_id):
            return None
        hit = self._cached(access_key_id)
        if hit is not None:
            return hit[0]
        return self._remember(access_key_id, self._metadata.store.get_s3_key(access_key_id))

    def forget(self, access_key_id: str) -> None:
        """Drops a cached answer (the key was revoked or created through this peer)."""
        with self._lock:
            self._cache.pop(access_key_id, None)

    def _cached(self, access_key_id: str) -> tuple[S3Credential | None] | None:
        with self._lock:
            hit = self._cache.get(access_key_id)
        if hit is not None and hit[0] > self._clock.monotonic():
            return (hit[1],)
        return None

    def _remember(self, access_key_id: str, record: S3KeyRecord | None) -> S3Credential | None:
        found = None
        if record is not None and record.revoked_at is None:
            found = S3Credential(self._box.open(record), record.role)  # a mismatch raises, and is not cached
        if self._cache_s > 0:
            with self._lock:
                self._cache[access_key_id] = (self._clock.monotonic() + self._cache_s, found)
                self._cache.move_to_end(access_key_id)
                while len(self._cache) > MAX_CACHED:
                    self._cache.popitem(last=False)
        return found
