"""The development CA: files and modes, certificate contents, real mutual-TLS handshakes, reuse, and the CLI."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from peer.cli import certs_command
from peer.errors import ConfigError
from peer.security.certs import PEER_TLS_NAME, init_certs

TIMEOUT_S = 5.0


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("certs") / "tls"
    init_certs(d, 2, extra_hosts=["peer.example.org", "10.0.0.7"])
    return d


@pytest.fixture(scope="module")
def other_ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("other")
    init_certs(d, 1)
    return d


def test_files_and_modes(tmp_path: Path) -> None:
    d = tmp_path / "a" / "tls"
    written = init_certs(d, 2)
    names = ["ca.crt", "ca.key", "peer-1.crt", "peer-1.key", "peer-2.crt", "peer-2.key", "s3-secret.key"]
    assert sorted(p.name for p in written) == sorted(names)
    assert sorted(p.name for p in d.iterdir()) == sorted(names)  # no temp files left behind
    assert _mode(d) == 0o700
    for p in written:
        assert _mode(p) == (0o600 if p.suffix == ".key" else 0o644), p
    assert b"ENCRYPTED" not in (d / "peer-1.key").read_bytes()


def test_ca_certificate(ca_dir: Path) -> None:
    ca = _cert(ca_dir / "ca.crt")
    ca.verify_directly_issued_by(ca)
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign


def test_peer_certificate_contents(ca_dir: Path) -> None:
    ca, leaf = _cert(ca_dir / "ca.crt"), _cert(ca_dir / "peer-1.crt")
    leaf.verify_directly_issued_by(ca)
    assert [a.value for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)] == ["peer-1"]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["peer-1", PEER_TLS_NAME, "localhost", "peer.example.org"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
        ipaddress.ip_address("10.0.0.7"),
    ]
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku and ExtendedKeyUsageOID.CLIENT_AUTH in eku
    bc = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    assert leaf.not_valid_after_utc <= ca.not_valid_after_utc


def test_peer_certificate_passes_strict_path_validation(ca_dir: Path, other_ca_dir: Path) -> None:
    """cryptography's RFC 5280 verifier, as a server (by the shared name) and as a client."""
    leaf = _cert(ca_dir / "peer-2.crt")
    builder = PolicyBuilder().store(Store([_cert(ca_dir / "ca.crt")]))
    builder.build_server_verifier(x509.DNSName(PEER_TLS_NAME)).verify(leaf, [])
    builder.build_server_verifier(x509.IPAddress(ipaddress.ip_address("127.0.0.1"))).verify(leaf, [])
    builder.build_client_verifier().verify(leaf, [])
    foreign = PolicyBuilder().store(Store([_cert(other_ca_dir / "ca.crt")]))
    with pytest.raises(x509.verification.VerificationError):
        foreign.build_client_verifier().verify(leaf, [])


def _server_ctx(d: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d / "peer-1.crt", d / "peer-1.key")
    ctx.load_verify_locations(d / "ca.crt")
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _client_ctx(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname and CERT_REQUIRED by default
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(ca)
    return ctx


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, server_hostname: str) -> tuple[object, object]:
    """One TLS connection over 127.0.0.1; returns (server outcome, client outcome): a peer cert dict or the exception.

    The server answers one byte after its handshake, so under TLS 1.3 a client whose certificate
    the server rejected learns it on that read instead of believing the connection is up.
    """
    outcome: dict[str, object] = {}
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(TIMEOUT_S)
        port = listener.getsockname()[1]

        def serve() -> None:
            try:
                conn, _ = listener.accept()
                conn.settimeout(TIMEOUT_S)
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    outcome["server"] = tls.getpeercert()
                    tls.sendall(b"k")
            except (OSError, ssl.SSLError) as exc:
                outcome["server"] = exc

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as raw:
                with client_ctx.wrap_socket(raw, server_hostname=server_hostname) as tls:
                    if tls.recv(1) != b"k":
                        raise ConnectionError("server closed the connection")
                    outcome["client"] = tls.getpeercert()
        except (OSError, ssl.SSLError) as exc:
            outcome["client"] = exc
        finally:
            thread.join(TIMEOUT_S)
    assert not thread.is_alive()
    return outcome["server"], outcome["client"]


def _cn(peercert: object) -> str:
    assert isinstance(peercert, dict), peercert
    return next(value for rdn in peercert["subject"] for key, value in rdn if key == "commonName")


@pytest.mark.parametrize("server_hostname", [PEER_TLS_NAME, "127.0.0.1"])
def test_mutual_tls_handshake_between_peers(ca_dir: Path, server_hostname: str) -> None:
    client = _client_ctx(ca_dir / "ca.crt", ca_dir / "peer-2.crt", ca_dir / "peer-2.key")
    server_saw, client_saw = _handshake(_server_ctx(ca_dir), client, server_hostname)
    assert _cn(server_saw) == "peer-2"
    assert _cn(client_saw) == "peer-1"


def test_client_with_certificate_from_another_ca_is_rejected(ca_dir: Path, other_ca_dir: Path) -> None:
    # The client trusts our CA (so it would accept the server) but presents a cert the server's CA never signed.
    client = _client_ctx(ca_dir / "ca.crt", other_ca_dir / "peer-1.crt", other_ca_dir / "peer-1.key")
    server_saw, client_saw = _handshake(_server_ctx(ca_dir), client, PEER_TLS_NAME)
    assert isinstance(server_saw, ssl.SSLError), server_saw
    assert "certificate verify failed" in str(server_saw)
    assert isinstance(client_saw, OSError), client_saw


def test_client_rejects_server_with_wrong_name(ca_dir: Path) -> None:
    client = _client_ctx(ca_dir / "ca.crt", ca_dir / "peer-2.crt", ca_dir / "peer-2.key")
    _, client_saw = _handshake(_server_ctx(ca_dir), client, "not-a-peer.example")
    assert isinstance(client_saw, ssl.SSLCertVerificationError), client_saw


def test_more_peers_reuse_the_ca_and_keep_existing_files(tmp_path: Path) -> None:
    init_certs(tmp_path, 3)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    written = init_certs(tmp_path, 5)
    assert [p.name for p in written] == ["peer-4.crt", "peer-4.key", "peer-5.crt", "peer-5.key"]
    assert all((tmp_path / name).read_bytes() == data for name, data in before.items())
    ca = _cert(tmp_path / "ca.crt")
    for i in range(1, 6):
        _cert(tmp_path / f"peer-{i}.crt").verify_directly_issued_by(ca)
    assert init_certs(tmp_path, 5) == []


def test_force_regenerates_everything(tmp_path: Path) -> None:
    init_certs(tmp_path, 2)
    old_ca, old_key = (tmp_path / "ca.crt").read_bytes(), (tmp_path / "peer-1.key").read_bytes()
    written = init_certs(tmp_path, 2, force=True)
    assert len(written) == 6
    assert (tmp_path / "ca.crt").read_bytes() != old_ca
    assert (tmp_path / "peer-1.key").read_bytes() != old_key
    _cert(tmp_path / "peer-2.crt").verify_directly_issued_by(_cert(tmp_path / "ca.crt"))


def test_peer_signed_by_another_ca_is_refused_before_writing(tmp_path: Path, other_ca_dir: Path) -> None:
    init_certs(tmp_path, 1)
    (tmp_path / "peer-1.crt").write_bytes((other_ca_dir / "peer-1.crt").read_bytes())
    with pytest.raises(ConfigError, match="not issued by"):
        init_certs(tmp_path, 2)
    assert not (tmp_path / "peer-2.crt").exists()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"peers": 0}, "--peers must be between 1 and 1000"),
        ({"peers": 1001}, "--peers"),
        ({"peers": 1, "valid_days": 0}, "--days"),
        ({"peers": 1, "extra_hosts": ["bad host!"]}, "neither an IP address nor a DNS name"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        init_certs(tmp_path / "d", **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "d").exists()


def test_unreadable_existing_ca(tmp_path: Path) -> None:
    init_certs(tmp_path, 1)
    (tmp_path / "ca.crt").write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="cannot read the existing CA") as info:
        init_certs(tmp_path, 2)
    assert "\n" not in str(info.value)


def test_directory_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="cannot create certificate directory"):
        init_certs(tmp_path / "file" / "tls", 1)


def test_cli_init_lists_files_and_usage(tmp_path: Path) -> None:
    d = tmp_path / "tls"
    result = CliRunner().invoke(certs_command, ["init", "--dir", str(d), "--peers", "2", "--host", "10.1.2.3"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    for name in ("ca.crt", "ca.key", "peer-1.crt", "peer-1.key", "peer-2.crt", "peer-2.key"):
        assert f"wrote {d / name}" in lines
    assert f"dfs-peer serve --tls-cert {d / 'peer-1.crt'} --tls-key {d / 'peer-1.key'} --tls-ca {d / 'ca.crt'}" in (
        result.stdout
    )
    assert f"dfs --tls-ca {d / 'ca.crt'}" in result.stdout
    san = _cert(d / "peer-2.crt").extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("10.1.2.3") in san.get_values_for_type(x509.IPAddress)


def test_cli_bad_peers_is_one_line_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(certs_command, ["init", "--dir", str(tmp_path / "tls"), "--peers", "0"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == ["dfs-peer: error: --peers must be between 1 and 1000, got 0"]
    assert result.stdout == ""
    assert "Traceback" not in result.output
