"""The container deployment, checked without a Docker engine.

docker-compose.yml and the Dockerfile are parsed and held against what the peer really reads: the
environment variables of `dfs-peer serve` and `dfs-peer health`, the console scripts in
pyproject.toml, the ports, the data directory and the certificate directory. `serve --print-config`
shows how the environment resolves, including the MONGO_URI and DATABASE names of the original
design and the TLS settings; the compose `certs` service's command is run for real (into a temp
directory) to show it writes the files the peers read. `advertised()` is the address a container announces.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import shlex
import socket
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner, Result

from peer.cli import main, serve
from peer.cli_health import health_command
from peer.config import PeerConfig, advertised, split_hostport
from peer.errors import ConfigError
from peer.http.tls import client_ssl_context, server_ssl_context
from peer.security.certs import PEER_TLS_NAME
from peer.security.s3keys import load_secret_box

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT = ROOT / "pyproject.toml"

# Variables a Dockerfile may set for the interpreter or the shell rather than for the peer.
RUNTIME_ENV = {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PYTHONFAULTHANDLER", "LANG", "LC_ALL"}
# Peers authenticate each other with TLS or this; tests about other settings use it so they validate.
SECRET_ENV = {"DFS_CLUSTER_SECRET": "deploy-test-secret-0123456789"}


def envvars(command: click.Command) -> set[str]:
    """Every environment variable a click command reads, from its parameters."""
    names: set[str] = set()
    for param in command.params:
        envvar = param.envvar
        if isinstance(envvar, str):
            names.add(envvar)
        elif envvar:
            names.update(envvar)
    return names


def serve_envvars() -> set[str]:
    return envvars(serve)


# -- docker-compose.yml -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict)
    return doc


def service(compose: dict[str, Any], name: str) -> dict[str, Any]:
    services = compose.get("services") or {}
    assert name in services, f"docker-compose.yml has no service {name!r}"
    svc = services[name]
    assert isinstance(svc, dict)
    return svc


def interpolated(value: str) -> str:
    """`value` as Compose interpolates it with no variable set: `${VAR:-default}` and `${VAR-default}`
    become the default, `${VAR}` the empty string, `$$` a literal `$`."""
    def default(match: re.Match[str]) -> str:
        return match.group(2) or ""

    return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", default, value).replace("$$", "$")


def environment(svc: dict[str, Any]) -> dict[str, str]:
    """The service's environment as the container gets it (variables interpolated with their defaults)."""
    env = svc.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.partition("=") for item in env)
        return {key: interpolated(value) for key, _, value in pairs}
    return {str(key): "" if value is None else interpolated(str(value)) for key, value in env.items()}


@dataclass(frozen=True)
class PortMapping:
    host_ip: str
    published: str  # "", "8080" or "8080-8090"
    target: int


def port_mappings(svc: dict[str, Any]) -> list[PortMapping]:
    """The short ([[HOST_IP:]PUBLISHED:]TARGET[/PROTOCOL]) and long syntax of `ports`."""
    mappings: list[PortMapping] = []
    for item in svc.get("ports") or []:
        if isinstance(item, dict):
            mappings.append(PortMapping(str(item.get("host_ip", "")), str(item.get("published", "")),
                                        int(item["target"])))
            continue
        spec = str(item).split("/")[0]
        parts = spec.rsplit(":", 2)
        target = int(parts[-1])
        published = parts[-2] if len(parts) >= 2 else ""
        host_ip = parts[0] if len(parts) == 3 else ""
        mappings.append(PortMapping(host_ip.strip("[]"), published, target))
    return mappings


def published_range(published: str) -> range:
    first, _, last = published.partition("-")
    return range(int(first), int(last or first) + 1)


def healthcheck_command(svc: dict[str, Any]) -> str:
    check = svc.get("healthcheck")
    assert isinstance(check, dict) and not check.get("disable"), "service has no healthcheck"
    test = check["test"]
    if isinstance(test, list):
        assert test[0] in ("CMD", "CMD-SHELL"), test
        return " ".join(test[1:])
    return str(test)


def volume_mounts(svc: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(source, target, mode) of the short volume syntax; mode "" when read-write by default."""
    mounts = []
    for item in svc.get("volumes") or []:
        if isinstance(item, dict):
            mounts.append((str(item.get("source", "")), str(item["target"]), "ro" if item.get("read_only") else ""))
            continue
        source, _, rest = str(item).partition(":")
        target, _, mode = rest.partition(":")
        mounts.append((source, target, mode))
    return mounts


def named_mount(compose: dict[str, Any], svc: dict[str, Any], volume: str) -> tuple[str, str]:
    """(target, mode) where `svc` mounts the named volume `volume`, which the file must declare."""
    assert volume in (compose.get("volumes") or {}), f"{volume!r} is not a declared named volume"
    found = [(target, mode) for source, target, mode in volume_mounts(svc) if source == volume]
    assert len(found) == 1, volume_mounts(svc)
    return found[0]


def certs_init_args(compose: dict[str, Any]) -> list[str]:
    """The `certs` service's command, as `dfs-peer` (the image's entrypoint) receives it."""
    svc = service(compose, "certs")
    assert "entrypoint" not in svc, "the certs service runs the image's entrypoint, dfs-peer"
    command = svc["command"]
    assert isinstance(command, list), "exec form, so no shell is involved"
    return [str(word) for word in command]


def option_value(args: list[str], name: str) -> str:
    assert args.count(name) == 1, f"{name} appears {args.count(name)} times in {args}"
    return args[args.index(name) + 1]


def test_compose_has_mongodb_certs_and_peer(compose: dict[str, Any]) -> None:
    assert {"mongodb", "certs", "peer"} <= set(compose["services"])


def test_mongodb_is_mongo_7(compose: dict[str, Any]) -> None:
    assert re.fullmatch(r"(docker\.io/)?(library/)?mongo:7(\.\d+){0,2}(-[\w.]+)?", service(compose, "mongodb")["image"])


def test_mongodb_healthcheck_pings_the_server(compose: dict[str, Any]) -> None:
    command = healthcheck_command(service(compose, "mongodb"))

    assert "mongosh" in command and "ping" in command


def test_mongodb_keeps_its_data_in_a_named_volume(compose: dict[str, Any]) -> None:
    named = set(compose.get("volumes") or {})
    mounts = [str(v).split(":")[:2] for v in service(compose, "mongodb").get("volumes") or [] if isinstance(v, str)]

    assert any(source in named and target == "/data/db" for source, target in mounts), mounts


def test_mongodb_port_is_published_on_loopback_only(compose: dict[str, Any]) -> None:
    mappings = [m for m in port_mappings(service(compose, "mongodb")) if m.target == 27017]

    assert mappings, "the contract tests reach MongoDB on 127.0.0.1:27017"
    assert all(m.host_ip == "127.0.0.1" and 27017 in published_range(m.published) for m in mappings)


@pytest.mark.parametrize("name", ["peer", "certs"])
def test_services_set_only_variables_the_peer_reads(compose: dict[str, Any], name: str) -> None:
    unknown = set(environment(service(compose, name))) - serve_envvars()

    assert not unknown, f"docker-compose.yml sets variables dfs-peer serve ignores: {sorted(unknown)}"


def test_peer_uses_the_compose_mongodb(compose: dict[str, Any]) -> None:
    env = environment(service(compose, "peer"))
    uri = env.get("DFS_METADATA") or env.get("MONGO_URI", "")

    assert uri == "mongodb://mongodb" or uri.startswith(("mongodb://mongodb:", "mongodb://mongodb/"))
    assert service(compose, "peer")["depends_on"]["mongodb"]["condition"] == "service_healthy"


def test_peer_seeds_by_service_name_on_the_gossip_port(compose: dict[str, Any]) -> None:
    env = {**dockerfile_env(), **environment(service(compose, "peer"))}
    seeds = [s.strip() for s in env["DFS_SEEDS"].split(",") if s.strip()]
    _, gossip_port = split_hostport(env["DFS_GOSSIP_ADDR"])

    assert seeds == [f"peer:{gossip_port}"]


def test_peer_runs_several_replicas(compose: dict[str, Any]) -> None:
    svc = service(compose, "peer")
    replicas = int((svc.get("deploy") or {}).get("replicas", svc.get("scale", 1)))

    assert replicas >= 3
    assert "container_name" not in svc, "a fixed container name prevents scaling"


def test_peer_publishes_a_grpc_port_range_matching_the_listener(compose: dict[str, Any]) -> None:
    svc = service(compose, "peer")
    env = {**dockerfile_env(), **environment(svc)}
    _, grpc_port = split_hostport(env["DFS_GRPC_ADDR"])
    replicas = int((svc.get("deploy") or {}).get("replicas", svc.get("scale", 1)))
    grpc = [m for m in port_mappings(svc) if m.target == grpc_port]

    assert len(grpc) == 1, f"expected one mapping to container port {grpc_port}: {port_mappings(svc)}"
    assert len(published_range(grpc[0].published)) >= max(replicas, 5), "each replica needs its own host port"


def test_peer_healthcheck_is_dfs_peer_health(compose: dict[str, Any]) -> None:
    check = service(compose, "peer")["healthcheck"]

    assert check["test"] == ["CMD", "dfs-peer", "health"]
    assert main.get_command(click.Context(main), "health") is health_command


def test_health_reads_the_listener_and_ca_the_peer_serves_with(compose: dict[str, Any]) -> None:
    """`dfs-peer health` has no arguments in the container: it must find the peer's gossip
    address and CA under the same variables `serve` reads, which the container sets."""
    env = {**dockerfile_env(), **environment(service(compose, "peer"))}
    by_name = {p.name: p.envvar for p in health_command.params}

    assert by_name["gossip_addr"] == "DFS_GOSSIP_ADDR" and by_name["tls_ca"] == "DFS_TLS_CA"
    assert envvars(health_command) <= serve_envvars()
    assert {"DFS_GOSSIP_ADDR", "DFS_TLS_CA"} <= set(env)


def test_certs_service_is_a_one_shot_of_the_peer_image(compose: dict[str, Any]) -> None:
    certs, peer = service(compose, "certs"), service(compose, "peer")

    assert certs["build"] == peer["build"] and certs.get("image") == peer.get("image")
    assert certs_init_args(compose)[:2] == ["certs", "init"]
    # A restart policy would start it again after every successful exit.
    assert certs.get("restart", "no") in ("no", "on-failure")
    assert (certs.get("healthcheck") or {}).get("disable") is True, "not a peer: the image's check does not apply"
    assert "deploy" not in certs and "ports" not in certs


def test_peers_start_after_the_certificates_exist(compose: dict[str, Any]) -> None:
    depends = service(compose, "peer")["depends_on"]

    assert depends["certs"]["condition"] == "service_completed_successfully"
    assert depends["mongodb"]["condition"] == "service_healthy"


def test_peers_read_the_certificates_where_the_certs_service_writes_them(compose: dict[str, Any]) -> None:
    args = certs_init_args(compose)
    written_to, certs_mode = named_mount(compose, service(compose, "certs"), "certs")
    read_from, peer_mode = named_mount(compose, service(compose, "peer"), "certs")
    env = environment(service(compose, "peer"))
    peers = int(option_value(args, "--peers"))

    assert option_value(args, "--dir") == written_to and certs_mode in ("", "rw")
    assert peer_mode == "ro", "peers only read the certificates (and must not touch the CA key)"
    assert env["DFS_TLS_CA"] == f"{read_from}/ca.crt"
    stem = re.fullmatch(rf"{re.escape(read_from)}/peer-(\d+)\.crt", env["DFS_TLS_CERT"])
    assert stem and 1 <= int(stem.group(1)) <= peers, env["DFS_TLS_CERT"]
    assert env["DFS_TLS_KEY"] == f"{read_from}/peer-{stem.group(1)}.key"


def test_the_certs_service_command_makes_a_working_peer_certificate(compose: dict[str, Any], tmp_path: Path) -> None:
    """Runs the service's command with its directory moved to tmp_path, then loads the files the
    peers name exactly as a peer does (a key that does not match its certificate fails here)."""
    from cryptography import x509

    args = certs_init_args(compose)
    in_container, _ = named_mount(compose, service(compose, "certs"), "certs")
    args[args.index("--dir") + 1] = str(tmp_path)
    env = environment(service(compose, "peer"))
    files = {name: tmp_path / Path(env[name]).relative_to(in_container)
             for name in ("DFS_TLS_CERT", "DFS_TLS_KEY", "DFS_TLS_CA", "DFS_S3_KEY_FILE")}

    result = CliRunner().invoke(main, args)
    again = CliRunner().invoke(main, args)  # `up` runs it every time: it must succeed and keep the CA

    assert result.exit_code == 0, result.output
    assert again.exit_code == 0 and "nothing to write" in again.output, again.output
    # Every replica seals S3 secrets under this one key, so a key made through one peer opens on all.
    first = load_secret_box(str(files["DFS_S3_KEY_FILE"]), "", tmp_path / "data-a")
    assert first.key_id == load_secret_box(str(files["DFS_S3_KEY_FILE"]), "", tmp_path / "data-b").key_id
    assert files["DFS_S3_KEY_FILE"].stat().st_mode & 0o077 == 0
    server_ssl_context(files["DFS_TLS_CERT"], files["DFS_TLS_KEY"], files["DFS_TLS_CA"])
    client_ssl_context(files["DFS_TLS_CERT"], files["DFS_TLS_KEY"], files["DFS_TLS_CA"])
    cert = x509.load_pem_x509_certificate(files["DFS_TLS_CERT"].read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = set(sans.get_values_for_type(x509.DNSName))
    ips = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    # Peers and `dfs-peer health` verify PEER_TLS_NAME; clients verify the address they dial:
    # 127.0.0.1 (the published ports) or the service name (on the project network).
    assert {PEER_TLS_NAME, "peer"} <= names and "127.0.0.1" in ips


def test_compose_header_shows_the_client_workflow(compose: dict[str, Any]) -> None:
    """The commands the header comment gives are real: the CA path, `token create`, the client flags."""
    from client.cli import cli as dfs

    header = COMPOSE.read_text().split("\nname:")[0]
    in_container, _ = named_mount(compose, service(compose, "certs"), "certs")
    token_create = main.get_command(click.Context(main), "token").get_command(click.Context(main), "create")
    dfs_flags = {opt for p in dfs.params for opt in p.opts}

    assert f"docker compose cp certs:{in_container}/ca.crt" in header
    assert "dfs-peer token create --role admin" in header
    assert "admin" in next(p for p in token_create.params if p.name == "role").type.choices
    assert re.search(r"dfs --peer 127\.0\.0\.1:\d+ --tls-ca \S+ --token \S+ status", header)
    assert {"--peer", "--tls-ca", "--token"} <= dfs_flags


def test_peer_data_directory_is_not_a_shared_named_volume(compose: dict[str, Any]) -> None:
    """Replicas must not share one data directory: each needs its own node id and chunks."""
    named = set(compose.get("volumes") or {})
    data_dir = dockerfile_env()["DFS_DATA_DIR"]
    for volume in service(compose, "peer").get("volumes") or []:
        source, _, target = str(volume).partition(":")
        assert not (source in named and target.split(":")[0] == data_dir), volume


def test_compose_environment_resolves_to_a_valid_peer_config(compose: dict[str, Any]) -> None:
    """The compose environment alone (no secret, no DFS_NO_AUTH) is a valid, authenticated config.
    The certificate files exist only in the volume: --print-config does not open them."""
    env = {**dockerfile_env(), **environment(service(compose, "peer"))}

    config = print_config(env)

    assert config["metadata"].startswith("mongodb://mongodb")
    assert config["database"] == "filestore"
    assert config["metadata_write_concern"] == "majority"
    assert config["seeds"] == ["peer:7946"]
    assert config["data_dir"] == "/data"
    assert (config["tls_cert"], config["tls_key"], config["tls_ca"]) == (
        "/certs/peer-1.crt", "/certs/peer-1.key", "/certs/ca.crt")
    assert config["no_auth"] is False, "clients need tokens"
    assert config["cluster_secret"] == "", "TLS authenticates the peers; a secret in the file would be public"


def test_compose_tls_is_what_makes_the_peers_config_valid(compose: dict[str, Any]) -> None:
    env = {**dockerfile_env(), **environment(service(compose, "peer"))}
    without_tls = {k: v for k, v in env.items() if not k.startswith("DFS_TLS_")}
    only_cert = {**without_tls, "DFS_TLS_CERT": env["DFS_TLS_CERT"]}

    refused = invoke_print_config(without_tls)
    partial = invoke_print_config(only_cert)

    assert refused.exit_code == 2 and "DFS_CLUSTER_SECRET" in refused.output
    assert partial.exit_code == 2 and "set all three or none" in partial.output


def test_compose_internal_port_stays_on_the_project_network(compose: dict[str, Any]) -> None:
    env = {**dockerfile_env(), **environment(service(compose, "peer"))}
    config = PeerConfig(data_dir=Path("/data"), grpc_addr=env["DFS_GRPC_ADDR"],
                        peer_grpc_addr=env.get("DFS_PEER_GRPC_ADDR", ""))
    _, internal_port = split_hostport(config.internal_grpc_addr)

    assert internal_port == 50151
    assert internal_port not in {m.target for m in port_mappings(service(compose, "peer"))}


# -- docker-compose.yml: the S3 endpoint and the monitoring profile --------------------------------

MONITORING = ("monitoring-ca", "prometheus", "grafana")


def network_subnet(compose: dict[str, Any]) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The project network's fixed subnet, as Compose interpolates it."""
    config = compose["networks"]["default"]["ipam"]["config"]
    assert len(config) == 1, config
    return ipaddress.ip_network(interpolated(str(config[0]["subnet"])))


def test_peer_publishes_an_s3_port_range_like_the_grpc_one(compose: dict[str, Any]) -> None:
    svc = service(compose, "peer")
    env = {**dockerfile_env(), **environment(svc)}
    s3_host, s3_port = split_hostport(env["DFS_S3_ADDR"])
    _, grpc_port = split_hostport(env["DFS_GRPC_ADDR"])
    replicas = int((svc.get("deploy") or {}).get("replicas", svc.get("scale", 1)))
    s3 = [m for m in port_mappings(svc) if m.target == s3_port]
    grpc = next(m for m in port_mappings(svc) if m.target == grpc_port)

    assert s3_host == "0.0.0.0", "published ports reach the container's network interface"
    assert len(s3) == 1, f"expected one mapping to container port {s3_port}: {port_mappings(svc)}"
    assert s3[0].host_ip == "127.0.0.1"
    assert len(published_range(s3[0].published)) == len(published_range(grpc.published)) >= max(replicas, 5)
    assert print_config(env)["s3_addr"] == env["DFS_S3_ADDR"]


def test_compose_header_shows_the_s3_endpoint_and_key(compose: dict[str, Any]) -> None:
    header = COMPOSE.read_text().split("\nname:")[0]
    s3_key = main.get_command(click.Context(main), "s3-key")
    assert isinstance(s3_key, click.Group)
    create = s3_key.get_command(click.Context(s3_key), "create")
    s3 = next(m for m in port_mappings(service(compose, "peer")) if m.target == 9000)
    endpoint = re.search(r"--endpoint-url https://127\.0\.0\.1:(\d+)", header)

    assert "docker compose exec peer dfs-peer s3-key create --role admin" in header
    assert create is not None and "admin" in next(p for p in create.params if p.name == "role").type.choices
    assert endpoint and int(endpoint.group(1)) in published_range(s3.published), "the first replica's port"
    assert "docker compose --profile monitoring up -d" in header


def test_every_published_port_is_on_loopback_only(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        for mapping in port_mappings(svc):
            assert mapping.host_ip == "127.0.0.1", (name, mapping)
            assert mapping.published, f"{name}: an unpublished host port would be a random one on all interfaces"


def test_monitoring_services_run_only_in_their_profile(compose: dict[str, Any]) -> None:
    for name in MONITORING:
        assert service(compose, name).get("profiles") == ["monitoring"], name
    for name in set(compose["services"]) - set(MONITORING):
        assert "profiles" not in service(compose, name), f"{name} must start with a plain `up`"
    assert {"prometheus", "grafana"} <= set(MONITORING)


@pytest.mark.parametrize(("name", "pattern"), [
    ("prometheus", r"(docker\.io/|quay\.io/)?prom/prometheus:v\d+\.\d+\.\d+"),
    ("grafana", r"(docker\.io/)?grafana/grafana(-oss)?:\d+\.\d+\.\d+"),
])
def test_monitoring_images_are_official_and_pinned(compose: dict[str, Any], name: str, pattern: str) -> None:
    assert re.fullmatch(pattern, service(compose, name)["image"])


def test_monitoring_mounts_the_files_of_docs_monitoring(compose: dict[str, Any]) -> None:
    """Every bind mount of the profile names a file or directory of the repository, read-only;
    Prometheus reads its configuration where its --config.file points."""
    for name in ("prometheus", "grafana"):
        binds = [(s, t, m) for s, t, m in volume_mounts(service(compose, name)) if s.startswith("./")]
        assert binds, name
        for source, _, mode in binds:
            assert (ROOT / source).exists(), source
            assert source.startswith("./docs/monitoring/") and mode == "ro", (name, source, mode)
    config_file = next(a.split("=", 1)[1] for a in service(compose, "prometheus")["command"]
                       if a.startswith("--config.file="))
    targets = {t: s for s, t, _ in volume_mounts(service(compose, "prometheus"))}
    assert targets[config_file] == "./docs/monitoring/prometheus.yml"
    grafana = {t: s for s, t, _ in volume_mounts(service(compose, "grafana"))}
    assert grafana["/etc/grafana/provisioning/datasources"] == "./docs/monitoring/grafana/datasources"
    assert grafana["/etc/grafana/provisioning/dashboards"] == "./docs/monitoring/grafana/dashboards"


def test_prometheus_gets_the_ca_certificate_but_not_the_ca_key(compose: dict[str, Any]) -> None:
    """monitoring-ca copies ca.crt alone from the certs volume into a volume Prometheus mounts."""
    copier = service(compose, "monitoring-ca")
    certs_at, certs_mode = named_mount(compose, copier, "certs")
    out_at, _ = named_mount(compose, copier, "monitoring-ca")
    prom_at, prom_mode = named_mount(compose, service(compose, "prometheus"), "monitoring-ca")

    assert copier["entrypoint"] == ["cp", f"{certs_at}/ca.crt", f"{out_at}/ca.crt"]
    assert out_at == dockerfile_env()["DFS_DATA_DIR"], "the image's user owns it, so a fresh volume is writable"
    assert certs_mode == "ro" and prom_mode == "ro"
    assert not any(source == "certs" for source, _, _ in volume_mounts(service(compose, "prometheus")))
    assert copier["depends_on"]["certs"]["condition"] == "service_completed_successfully"
    assert service(compose, "prometheus")["depends_on"]["monitoring-ca"]["condition"] == \
        "service_completed_successfully"
    assert (copier.get("healthcheck") or {}).get("disable") is True


def test_peers_let_the_project_network_read_metrics(compose: dict[str, Any]) -> None:
    """Prometheus scrapes from the project network without a token: DFS_METRICS_ALLOW covers exactly
    that network's fixed subnet (plus loopback), not the world."""
    env = {**dockerfile_env(), **environment(service(compose, "peer"))}
    allowed_networks = PeerConfig(data_dir=Path("/data"), metrics_allow=tuple(
        env["DFS_METRICS_ALLOW"].split(","))).metrics_networks
    subnet = network_subnet(compose)

    assert subnet in allowed_networks
    assert subnet.is_private and subnet.num_addresses <= 65536
    assert all(net == subnet or net.is_loopback for net in allowed_networks), allowed_networks
    raw_allow = str(service(compose, "peer")["environment"]["DFS_METRICS_ALLOW"])
    raw_subnet = str(compose["networks"]["default"]["ipam"]["config"][0]["subnet"])
    assert raw_subnet in raw_allow, "one variable overrides both"


# -- Dockerfile ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions, with continuation lines joined and comments dropped."""
    result: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, args = full.partition(" ")
        result.append(Instruction(keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continuation line"
    return result


def stages() -> list[list[Instruction]]:
    """Instructions grouped by build stage (each starts at a FROM)."""
    groups: list[list[Instruction]] = []
    for ins in instructions(DOCKERFILE.read_text()):
        if ins.keyword == "FROM":
            groups.append([])
        if groups:
            groups[-1].append(ins)
    return groups


def final_stage() -> list[Instruction]:
    return stages()[-1]


def env_pairs(args: str) -> dict[str, str]:
    words = shlex.split(args)
    if len(words) >= 2 and "=" not in words[0]:  # legacy form: ENV KEY value
        return {words[0]: " ".join(words[1:])}
    return dict(word.split("=", 1) for word in words)


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in final_stage():
        if ins.keyword == "ENV":
            env.update(env_pairs(ins.args))
    return env


def only(keyword: str, stage: list[Instruction]) -> Instruction:
    found = [ins for ins in stage if ins.keyword == keyword]
    assert found, f"the final stage has no {keyword}"
    return found[-1]


def exec_form(ins: Instruction) -> list[str]:
    value = json.loads(ins.args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"{ins.keyword} is not exec form"
    return value


def test_dockerfile_is_multi_stage_on_python_311_slim() -> None:
    froms = [ins.args for ins in instructions(DOCKERFILE.read_text()) if ins.keyword == "FROM"]
    args = {k: v for ins in instructions(DOCKERFILE.read_text()) if ins.keyword == "ARG"
            for k, _, v in [ins.args.partition("=")]}
    final_image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), froms[-1].split()[0])

    assert len(froms) >= 2
    assert final_image == "python:3.11-slim"
    assert any(ins.keyword == "COPY" and "--from=" in ins.args for ins in final_stage())


def test_dockerfile_runs_as_a_non_root_user() -> None:
    user = only("USER", final_stage()).args.split(":")[0]

    assert user not in ("", "root", "0")


def test_dockerfile_entrypoint_is_a_console_script() -> None:
    scripts = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]

    entrypoint = exec_form(only("ENTRYPOINT", final_stage()))
    command = exec_form(only("CMD", final_stage()))

    assert entrypoint[0] in scripts and scripts[entrypoint[0]] == "peer.cli:main"
    assert command == ["serve"]
    assert main.get_command(click.Context(main), "serve") is serve


def test_dockerfile_sets_only_variables_the_peer_reads() -> None:
    env = set(dockerfile_env())
    peer_vars = {name for name in env if name.startswith("DFS_")}

    assert peer_vars <= serve_envvars(), sorted(peer_vars - serve_envvars())
    assert env - peer_vars <= RUNTIME_ENV, sorted(env - peer_vars - RUNTIME_ENV)
    assert {"DFS_DATA_DIR", "DFS_GRPC_ADDR", "DFS_GOSSIP_ADDR"} <= peer_vars


def test_dockerfile_listens_on_all_interfaces_and_exposes_every_port() -> None:
    env = dockerfile_env()
    exposed = {int(p.split("/")[0]) for ins in final_stage() if ins.keyword == "EXPOSE" for p in ins.args.split()}
    grpc_host, grpc_port = split_hostport(env["DFS_GRPC_ADDR"])
    gossip_host, gossip_port = split_hostport(env["DFS_GOSSIP_ADDR"])
    internal_host, internal_port = split_hostport(
        PeerConfig(data_dir=Path("/data"), grpc_addr=env["DFS_GRPC_ADDR"]).internal_grpc_addr)

    assert grpc_host == gossip_host == internal_host == "0.0.0.0"
    assert {grpc_port, gossip_port, internal_port} <= exposed
    assert internal_port == 50151


def test_dockerfile_declares_the_data_directory_a_volume() -> None:
    volumes: set[str] = set()
    for ins in final_stage():
        if ins.keyword == "VOLUME":
            volumes.update(json.loads(ins.args) if ins.args.startswith("[") else ins.args.split())

    assert dockerfile_env()["DFS_DATA_DIR"] in volumes


def test_dockerfile_healthcheck_is_dfs_peer_health_within_its_timeout() -> None:
    check = only("HEALTHCHECK", final_stage()).args
    options, _, command = check.partition("CMD")
    docker_timeout = re.search(r"--timeout=(\d+)s\b", options)
    health_timeout = next(p.default for p in health_command.params if p.name == "timeout_s")

    assert json.loads(command) == ["dfs-peer", "health"]
    assert docker_timeout, options
    # The command gives up first, so Docker records its one-line reason rather than a kill.
    assert isinstance(health_timeout, float) and health_timeout < int(docker_timeout.group(1))


def run_commands(stage: list[Instruction]) -> list[list[str]]:
    """Every shell command of the stage's RUN instructions, split on && and ;, as words."""
    commands = []
    for ins in stage:
        if ins.keyword == "RUN":
            for part in re.split(r"&&|;", ins.args):
                if part.strip():
                    commands.append(shlex.split(part))
    return commands


def runtime_user_names() -> set[str]:
    """The USER of the final stage, as uid and as the user name created with that uid."""
    uid = only("USER", final_stage()).args.split(":")[0]
    names = {uid}
    for words in run_commands(final_stage()):
        if words[0] == "useradd" and "--uid" in words and words[words.index("--uid") + 1] == uid:
            names.add(words[-1])
    return names


@pytest.mark.parametrize("directory", ["/data", "/certs"])
def test_dockerfile_creates_directories_owned_by_the_runtime_user(directory: str) -> None:
    """A fresh named volume copies the ownership of the image directory it is mounted on, so
    the peer (and `certs init`) can write there without root."""
    commands = run_commands(final_stage())
    owners = runtime_user_names()

    assert any(w[0] == "mkdir" and directory in w[1:] for w in commands), f"no mkdir {directory}"
    chowns = [w for w in commands if w[0] == "chown" and directory in w[2:]]
    assert chowns and chowns[-1][1].split(":")[0] in owners, (chowns, owners)


def test_dockerfile_certs_directory_is_where_compose_mounts_the_certificates(compose: dict[str, Any]) -> None:
    target, _ = named_mount(compose, service(compose, "certs"), "certs")
    commands = run_commands(final_stage())

    assert target == "/certs"
    assert any(w[0] == "chmod" and w[1] == "700" and "/certs" in w[2:] for w in commands), "it may hold the CA key"


def test_dockerfile_copies_only_files_the_build_context_keeps() -> None:
    ignored = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    copied: list[str] = []
    for stage in stages():
        for ins in stage:
            if ins.keyword == "COPY" and "--from=" not in ins.args:
                copied += [w for w in shlex.split(ins.args) if not w.startswith("--")][:-1]
    readme = tomllib.loads(PYPROJECT.read_text())["project"]["readme"]

    assert "pyproject.toml" in copied and readme in copied
    for source in copied:
        assert (ROOT / source).exists(), source
        assert source not in ignored, f"{source} is excluded by .dockerignore"
    assert {".venv", ".git"} <= ignored


# -- serve --print-config: the MongoDB variables ---------------------------------------------------


def print_config(env: dict[str, str], *args: str) -> dict[str, Any]:
    result = invoke_print_config(env, *args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert isinstance(doc, dict)
    return doc


def invoke_print_config(env: dict[str, str], *args: str) -> Result:
    """`dfs-peer serve --print-config` with exactly `env` among the variables serve reads."""
    isolated: dict[str, str | None] = dict.fromkeys(serve_envvars())
    isolated.update(env)
    return CliRunner().invoke(main, ["serve", "--print-config", *args], env=isolated)


def test_print_config_does_not_start_or_touch_the_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "never-created"

    config = print_config({**SECRET_ENV, "DFS_DATA_DIR": str(data_dir)})

    assert config["data_dir"] == str(data_dir)
    assert config["metadata_uri"] == f"sqlite:///{(data_dir / 'metadata.db').resolve()}"
    assert not data_dir.exists()


def test_mongo_uri_and_database_configure_the_metadata_store() -> None:
    config = print_config({**SECRET_ENV, "MONGO_URI": "mongodb://mongodb:27017", "DATABASE": "files"})

    assert config["metadata"] == config["metadata_uri"] == "mongodb://mongodb:27017"
    assert config["database"] == "files"


def test_dfs_names_win_over_the_original_names() -> None:
    config = print_config({
        **SECRET_ENV, "DFS_METADATA": "mongodb://primary:27017", "MONGO_URI": "mongodb://other:27017",
        "DFS_DATABASE": "chosen", "DATABASE": "ignored",
    })

    assert config["metadata"] == "mongodb://primary:27017"
    assert config["database"] == "chosen"


def test_an_empty_dfs_metadata_falls_back_to_mongo_uri() -> None:
    config = print_config({**SECRET_ENV, "DFS_METADATA": "", "MONGO_URI": "mongodb://mongodb:27017"})

    assert config["metadata"] == "mongodb://mongodb:27017"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [("mongodb://mongodb:27017", "filestore"), ("mongodb://mongodb:27017/meta?w=majority", "meta")],
)
def test_database_defaults_to_the_uri_then_filestore(uri: str, expected: str) -> None:
    assert print_config({**SECRET_ENV, "MONGO_URI": uri})["database"] == expected


def test_flags_win_over_environment() -> None:
    config = print_config({**SECRET_ENV, "MONGO_URI": "mongodb://env:27017"}, "--metadata", "mongodb://flag:27017",
                          "--database", "flagdb")

    assert (config["metadata"], config["database"]) == ("mongodb://flag:27017", "flagdb")


def test_write_concern_defaults_to_majority_and_reads_its_variable() -> None:
    assert print_config(SECRET_ENV)["metadata_write_concern"] == "majority"
    assert print_config({**SECRET_ENV, "DFS_METADATA_WRITE_CONCERN": "2"})["metadata_write_concern"] == "2"


@pytest.mark.parametrize("value", ["0", "00"])
def test_unacknowledged_write_concern_is_refused(value: str) -> None:
    result = invoke_print_config({**SECRET_ENV, "MONGO_URI": "mongodb://m:27017", "DFS_METADATA_WRITE_CONCERN": value})

    assert result.exit_code == 2
    assert "DFS_METADATA_WRITE_CONCERN" in result.output


def test_print_config_hides_credentials() -> None:
    result = invoke_print_config({**SECRET_ENV, "MONGO_URI": "mongodb://admin:s3cret@mongodb:27017"})

    assert result.exit_code == 0 and "s3cret" not in result.output
    assert SECRET_ENV["DFS_CLUSTER_SECRET"] not in result.output
    assert json.loads(result.output)["metadata"] == "mongodb://***@mongodb:27017"
    assert json.loads(result.output)["cluster_secret"] == "***"


def test_print_config_accepts_tls_files_that_do_not_exist_yet(tmp_path: Path) -> None:
    """Only the peer opens them, at start; in a container they appear once the volume is mounted."""
    names = ("DFS_TLS_CERT", "DFS_TLS_KEY", "DFS_TLS_CA")
    missing = {name: str(tmp_path / f"absent-{name.lower()}.pem") for name in names}

    config = print_config(missing)

    assert config["tls_ca"] == missing["DFS_TLS_CA"]
    assert not any(tmp_path.iterdir())


def test_print_config_reports_bad_settings_like_serve() -> None:
    result = invoke_print_config({**SECRET_ENV, "MONGO_URI": "redis://cache:6379"})

    assert result.exit_code == 2
    assert "MONGO_URI" in result.output


def test_print_config_is_hidden_from_help() -> None:
    result = CliRunner().invoke(main, ["serve", "--help"])

    assert result.exit_code == 0 and "--print-config" not in result.output
    assert "MONGO_URI" in result.output and "DATABASE" in result.output


def test_peer_config_carries_the_mongodb_settings() -> None:
    config = PeerConfig(data_dir=Path("."), metadata="mongodb://m", database="db", metadata_write_concern="1",
                        cluster_secret=SECRET_ENV["DFS_CLUSTER_SECRET"])

    assert config.validate() is config
    with pytest.raises(ConfigError, match="DFS_METADATA_WRITE_CONCERN"):
        PeerConfig(data_dir=Path("."), metadata_write_concern="").validate()


# -- advertised() ---------------------------------------------------------------------------------


def fixed(ip: str) -> Any:
    seen: list[str] = []

    def resolve(wildcard: str) -> str:
        seen.append(wildcard)
        return ip

    resolve.seen = seen  # type: ignore[attr-defined]
    return resolve


def failing(wildcard: str) -> str:
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def test_explicit_advertise_address_wins() -> None:
    resolve = fixed("10.0.0.9")

    assert advertised("0.0.0.0:50051", "peer-1.example:6000", resolve) == "peer-1.example:6000"
    assert resolve.seen == []


@pytest.mark.parametrize(("bind", "wildcard"), [("0.0.0.0:50051", "0.0.0.0"), ("[::]:7946", "::")])
def test_wildcard_bind_host_is_replaced_by_this_hosts_address(bind: str, wildcard: str) -> None:
    resolve = fixed("172.18.0.5")

    assert advertised(bind, "", resolve) == f"172.18.0.5:{bind.rpartition(':')[2]}"
    assert resolve.seen == [wildcard]


def test_ipv6_results_are_bracketed() -> None:
    assert advertised("[::]:7946", "", fixed("fd00::5")) == "[fd00::5]:7946"
    assert advertised("::1:7946", "", fixed("unused")) == "[::1]:7946"


@pytest.mark.parametrize("bind", ["127.0.0.1:50051", "10.1.2.3:7946", "peer-host:1"])
def test_specific_bind_hosts_are_advertised_as_they_are(bind: str) -> None:
    assert advertised(bind, "", fixed("172.18.0.5")) == bind


def test_unresolvable_host_name_keeps_the_bind_address() -> None:
    assert advertised("0.0.0.0:50051", "", failing) == "0.0.0.0:50051"


def test_default_resolution_uses_the_host_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "3f2a9c1d7e4b")
    monkeypatch.setattr(socket, "gethostbyname", lambda name: {"3f2a9c1d7e4b": "172.18.0.7"}[name])

    assert advertised("0.0.0.0:50051", "") == "172.18.0.7:50051"


def test_bad_bind_address_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        advertised("no-port", "")


@pytest.fixture
def host_is_localhost(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This host's name resolves to 127.0.0.1, as a container's resolves to its own IP."""
    monkeypatch.setattr(socket, "gethostname", lambda: "localhost")
    yield


async def test_node_bound_to_all_interfaces_advertises_a_dialable_address(
    tmp_path: Path, host_is_localhost: None
) -> None:
    from peer.node import Node

    node = Node(PeerConfig.local(tmp_path, grpc_addr="0.0.0.0:0", gossip_addr="0.0.0.0:0"), handle_signals=False)
    run = asyncio.create_task(node.run())
    ready = tmp_path / "ready.json"
    try:
        async with asyncio.timeout(15):
            while not ready.exists():
                assert not run.done(), run
                await asyncio.sleep(0.05)
        doc = json.loads(ready.read_text())
    finally:
        node.stop_event.set()
        await run

    assert doc["grpc_addr"].startswith("127.0.0.1:") and not doc["grpc_addr"].endswith(":0")
    assert doc["gossip_addr"].startswith("127.0.0.1:") and not doc["gossip_addr"].endswith(":0")
