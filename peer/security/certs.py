"""A development certificate authority for TLS and mutual TLS between peers (`dfs-peer certs init`).

One self-signed CA signs one certificate per peer. Every peer certificate is valid for both
serverAuth and clientAuth, so the same pair serves incoming calls and authenticates outgoing ones,
and every one carries the DNS name `PEER_TLS_NAME`: peers dial each other by IP address, which a
certificate made in advance cannot know, so they verify this shared name instead. Trust therefore
means "signed by this cluster's CA", not "is the host I dialled"; keep `ca.key` away from peers.

Files are written key first, certificate last, each through a temp file and `os.replace`, so the
presence of a `.crt` means its pair is complete. Nothing is written before every check has passed.
This module knows nothing of gRPC, aiohttp or the command line: the transports load the PEM files it
writes, and `dfs-peer certs init` (peer/cli.py) calls `init_certs` and reports its ConfigError.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from peer.errors import ConfigError
from peer.security.s3keys import read_or_generate_key_file

__all__ = ["PEER_TLS_NAME", "init_certs"]

PEER_TLS_NAME = "dfs-peer"
MAX_PEERS = 1000
MAX_VALID_DAYS = 36500
# The CA outlives the peer certificates it signs, so peers added later still get a full term.
CA_MIN_VALID_DAYS = 3650
# Backdated so a peer whose clock runs a little behind the one that signed still accepts the cert.
CLOCK_SKEW = dt.timedelta(minutes=5)
#: Written beside the certificates; peers sharing the directory name it as DFS_S3_KEY_FILE.
S3_KEY_FILE = "s3-secret.key"

# DNS labels, optionally a leading wildcard; "_" is allowed because Docker Compose service names use it.
_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"^(\*\.)?{_LABEL}(\.{_LABEL})*$")
_CaKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class _Ca:
    cert: x509.Certificate
    key: _CaKey
    is_new: bool


def init_certs(
    directory: Path,
    peers: int,
    extra_hosts: Sequence[str] = (),
    valid_days: int = 825,
    force: bool = False,
) -> list[Path]:
    """Creates (or extends) the CA in `directory` and certificates for peer-1..peer-`peers`; returns the files written.

    It also makes `s3-secret.key` once, the key every peer seals S3 secrets under (DFS_S3_KEY_FILE):
    peers that share this directory then open each other's S3 keys, as they trust each other's certificates.

    An existing `ca.crt`/`ca.key` is reused, so asking for more peers later adds certificates the
    running peers already trust. Existing peer pairs are kept as they are (new `extra_hosts` do not
    reach them) unless `force`, which regenerates the CA and every requested peer; peer files
    beyond `peers` are then left alone and will no longer verify. Raises ConfigError on bad input.
    """
    _check_args(peers, valid_days)
    sans = _san_entries(extra_hosts)
    _make_dir(directory)
    now = dt.datetime.now(dt.UTC)
    ca = _new_ca(now, valid_days) if force else _load_or_new_ca(directory, now, valid_days)
    todo = _peers_to_write(directory, peers, ca, force)
    written: list[Path] = []
    if ca.is_new:
        written += _write_pair(directory / "ca", ca.cert, ca.key)
    for i in todo:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _peer_cert(f"peer-{i}", key.public_key(), sans, ca, now, valid_days)
        written += _write_pair(directory / f"peer-{i}", cert, key)
    s3_key = directory / S3_KEY_FILE
    if not s3_key.exists():
        read_or_generate_key_file(s3_key)
        written.append(s3_key)
    return written


def _check_args(peers: int, valid_days: int) -> None:
    if not 1 <= peers <= MAX_PEERS:
        raise ConfigError(f"--peers must be between 1 and {MAX_PEERS}, got {peers}")
    if not 1 <= valid_days <= MAX_VALID_DAYS:
        raise ConfigError(f"--days must be between 1 and {MAX_VALID_DAYS}, got {valid_days}")


def _san_entries(extra_hosts: Sequence[str]) -> list[x509.GeneralName]:
    """Names every peer certificate carries besides its own; an entry that parses as an IP becomes an IP SAN."""
    names: list[x509.GeneralName] = [x509.DNSName(PEER_TLS_NAME), x509.DNSName("localhost")]
    names += [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1"))]
    for raw in extra_hosts:
        host = raw.strip()
        name: x509.GeneralName
        try:
            name = x509.IPAddress(ipaddress.ip_address(host.strip("[]")))
        except ValueError:
            if not _HOSTNAME.match(host) or len(host) > 253:
                raise ConfigError(f"--host {raw!r} is neither an IP address nor a DNS name") from None
            name = x509.DNSName(host.lower())
        if name not in names:
            names.append(name)
    return names


def _make_dir(directory: Path) -> None:
    if directory.is_dir():
        return
    try:
        directory.mkdir(mode=0o700, parents=True)
        directory.chmod(0o700)  # mkdir's mode is filtered by the umask
    except OSError as exc:
        raise ConfigError(f"cannot create certificate directory {directory}: {exc.strerror or exc}") from exc


def _load_or_new_ca(directory: Path, now: dt.datetime, valid_days: int) -> _Ca:
    crt, key_path = directory / "ca.crt", directory / "ca.key"
    if not crt.exists():
        return _new_ca(now, valid_days)  # a stray ca.key without its cert signed nothing we keep
    try:
        cert = x509.load_pem_x509_certificate(crt.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"cannot read the existing CA in {directory}: {_reason(exc)}; use --force to replace it"
        ) from exc
    if not isinstance(key, _CaKey):
        raise ConfigError(f"{key_path}: unsupported key type {type(key).__name__}; use --force to replace the CA")
    if _spki(key.public_key()) != _spki(cert.public_key()):
        raise ConfigError(f"{key_path} does not belong to {crt}; use --force to replace the CA")
    if not _is_ca(cert):
        raise ConfigError(f"{crt} is not a CA certificate (basicConstraints CA:true); use --force to replace it")
    if cert.not_valid_after_utc <= now + dt.timedelta(days=1):
        raise ConfigError(f"{crt} expires {cert.not_valid_after_utc:%Y-%m-%d}; use --force to make a new CA")
    return _Ca(cert, key, is_new=False)


def _reason(exc: Exception) -> str:
    """One line: which file and why, without the multi-line detail some parser errors carry."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{Path(exc.filename).name if exc.filename else ''}: {exc.strerror}".lstrip(": ")
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _spki(public_key: CertificatePublicKeyTypes) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _peers_to_write(directory: Path, peers: int, ca: _Ca, force: bool) -> list[int]:
    """Which peers need a new pair; refuses (before anything is written) to keep a pair another CA signed."""
    todo = []
    for i in range(1, peers + 1):
        crt, key = directory / f"peer-{i}.crt", directory / f"peer-{i}.key"
        if force or not (crt.exists() and key.exists()):
            todo.append(i)
        elif not _issued_by(crt, ca.cert):
            raise ConfigError(
                f"{crt} was not issued by {directory / 'ca.crt'}; use --force to regenerate all certificates"
            )
    return todo


def _issued_by(crt: Path, ca: x509.Certificate) -> bool:
    try:
        x509.load_pem_x509_certificate(crt.read_bytes()).verify_directly_issued_by(ca)
    except (OSError, ValueError, TypeError, InvalidSignature):
        return False
    return True


def _new_ca(now: dt.datetime, valid_days: int) -> _Ca:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dfs"),
            x509.NameAttribute(NameOID.COMMON_NAME, "dfs development CA"),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=max(valid_days, CA_MIN_VALID_DAYS)))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _Ca(cert, key, is_new=True)


def _peer_cert(
    cn: str,
    public_key: ec.EllipticCurvePublicKey,
    sans: list[x509.GeneralName],
    ca: _Ca,
    now: dt.datetime,
    valid_days: int,
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dfs"),
                    x509.NameAttribute(NameOID.COMMON_NAME, cn),
                ]
            )
        )
        .issuer_name(ca.cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        # A certificate never outlives its CA: verifiers would reject it from that day on anyway.
        .not_valid_after(min(now + dt.timedelta(days=valid_days), ca.cert.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn), *sans]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(_authority_key_id(ca), critical=False)
        .sign(ca.key, hashes.SHA256())
    )


def _authority_key_id(ca: _Ca) -> x509.AuthorityKeyIdentifier:
    """Points at the CA's own key id when it has one (a CA brought from elsewhere may not)."""
    try:
        ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key())
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _key_usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _write_pair(stem: Path, cert: x509.Certificate, key: _CaKey) -> list[Path]:
    """Key first, certificate last: a `.crt` on disk means its `.key` is already there."""
    key_path, crt_path = stem.with_name(stem.name + ".key"), stem.with_name(stem.name + ".crt")
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_atomic(key_path, key_pem, 0o600)
    _write_atomic(crt_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return [crt_path, key_path]


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Temp file in the same directory, created with `mode` so a key is never readable by others, then rename."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)  # the umask may have narrowed it; set exactly, before any data
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from exc

