"""The container deployment, checked without a Docker engine.

docker-compose.yml and the Dockerfile are parsed and held against what the peer really reads: the
environment variables of `dfs-peer serve`, the console scripts in pyproject.toml, the ports and the
data directory. `serve --print-config` shows how the environment resolves, including the MONGO_URI
and DATABASE names of the original design; `advertised()` is the address a container announces.
"""

from __future__ import annotations

import asyncio
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
from peer.config import PeerConfig, advertised, split_hostport
from peer.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT = ROOT / "pyproject.toml"

# Variables a Dockerfile may set for the interpreter or the shell rather than for the peer.
RUNTIME_ENV = {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PYTHONFAULTHANDLER", "LANG", "LC_ALL"}


def serve_envvars() -> set[str]:
    """Every environment variable `dfs-peer serve` reads, from its click parameters."""
    names: set[str] = set()
    for param in serve.params:
        envvar = param.envvar
        if isinstance(envvar, str):
            names.add(envvar)
        elif envvar:
            names.update(envvar)
    return names


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


def environment(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.partition("=") for item in env)
        return {key: value for key, _, value in pairs}
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


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


def test_compose_has_mongodb_and_peer(compose: dict[str, Any]) -> None:
    assert {"mongodb", "peer"} <= set(compose["services"])


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


def test_peer_sets_only_variables_the_peer_reads(compose: dict[str, Any]) -> None:
    unknown = set(environment(service(compose, "peer"))) - serve_envvars()

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


def test_peer_healthcheck_asks_the_health_endpoint(compose: dict[str, Any]) -> None:
    env = {**dockerfile_env(), **environment(service(compose, "peer"))}
    _, gossip_port = split_hostport(env["DFS_GOSSIP_ADDR"])
    command = healthcheck_command(service(compose, "peer"))

    assert "/health" in command
    assert f":{gossip_port}/" in command or "DFS_GOSSIP_ADDR" in command


def test_peer_data_directory_is_not_a_shared_named_volume(compose: dict[str, Any]) -> None:
    """Replicas must not share one data directory: each needs its own node id and chunks."""
    named = set(compose.get("volumes") or {})
    data_dir = dockerfile_env()["DFS_DATA_DIR"]
    for volume in service(compose, "peer").get("volumes") or []:
        source, _, target = str(volume).partition(":")
        assert not (source in named and target.split(":")[0] == data_dir), volume


def test_compose_environment_resolves_to_a_valid_peer_config(compose: dict[str, Any]) -> None:
    env = {**dockerfile_env(), **environment(service(compose, "peer"))}

    config = print_config(env)

    assert config["metadata"].startswith("mongodb://mongodb")
    assert config["database"] == "filestore"
    assert config["metadata_write_concern"] == "majority"
    assert config["seeds"] == ["peer:7946"]
    assert config["data_dir"] == "/data"


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


def test_dockerfile_listens_on_all_interfaces_and_exposes_both_ports() -> None:
    env = dockerfile_env()
    exposed = {int(p.split("/")[0]) for ins in final_stage() if ins.keyword == "EXPOSE" for p in ins.args.split()}
    grpc_host, grpc_port = split_hostport(env["DFS_GRPC_ADDR"])
    gossip_host, gossip_port = split_hostport(env["DFS_GOSSIP_ADDR"])

    assert grpc_host == gossip_host == "0.0.0.0"
    assert {grpc_port, gossip_port} <= exposed


def test_dockerfile_declares_the_data_directory_a_volume() -> None:
    volumes: set[str] = set()
    for ins in final_stage():
        if ins.keyword == "VOLUME":
            volumes.update(json.loads(ins.args) if ins.args.startswith("[") else ins.args.split())

    assert dockerfile_env()["DFS_DATA_DIR"] in volumes


def test_dockerfile_healthcheck_asks_the_health_endpoint_with_a_timeout() -> None:
    check = only("HEALTHCHECK", final_stage()).args
    options, _, command = check.partition("CMD")

    assert "--timeout=" in options
    assert "/health" in command and "timeout=" in command
    assert "curl" not in command and "wget" not in command, "the slim image has neither"


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

    config = print_config({"DFS_DATA_DIR": str(data_dir)})

    assert config["data_dir"] == str(data_dir)
    assert config["metadata_uri"] == f"sqlite:///{(data_dir / 'metadata.db').resolve()}"
    assert not data_dir.exists()


def test_mongo_uri_and_database_configure_the_metadata_store() -> None:
    config = print_config({"MONGO_URI": "mongodb://mongodb:27017", "DATABASE": "files"})

    assert config["metadata"] == config["metadata_uri"] == "mongodb://mongodb:27017"
    assert config["database"] == "files"


def test_dfs_names_win_over_the_original_names() -> None:
    config = print_config({
        "DFS_METADATA": "mongodb://primary:27017", "MONGO_URI": "mongodb://other:27017",
        "DFS_DATABASE": "chosen", "DATABASE": "ignored",
    })

    assert config["metadata"] == "mongodb://primary:27017"
    assert config["database"] == "chosen"


def test_an_empty_dfs_metadata_falls_back_to_mongo_uri() -> None:
    config = print_config({"DFS_METADATA": "", "MONGO_URI": "mongodb://mongodb:27017"})

    assert config["metadata"] == "mongodb://mongodb:27017"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [("mongodb://mongodb:27017", "filestore"), ("mongodb://mongodb:27017/meta?w=majority", "meta")],
)
def test_database_defaults_to_the_uri_then_filestore(uri: str, expected: str) -> None:
    assert print_config({"MONGO_URI": uri})["database"] == expected


def test_flags_win_over_environment() -> None:
    config = print_config({"MONGO_URI": "mongodb://env:27017"}, "--metadata", "mongodb://flag:27017",
                          "--database", "flagdb")

    assert (config["metadata"], config["database"]) == ("mongodb://flag:27017", "flagdb")


def test_write_concern_defaults_to_majority_and_reads_its_variable() -> None:
    assert print_config({})["metadata_write_concern"] == "majority"
    assert print_config({"DFS_METADATA_WRITE_CONCERN": "2"})["metadata_write_concern"] == "2"


@pytest.mark.parametrize("value", ["0", "00"])
def test_unacknowledged_write_concern_is_refused(value: str) -> None:
    result = invoke_print_config({"MONGO_URI": "mongodb://m:27017", "DFS_METADATA_WRITE_CONCERN": value})

    assert result.exit_code == 2
    assert "DFS_METADATA_WRITE_CONCERN" in result.output


def test_print_config_hides_credentials() -> None:
    result = invoke_print_config({"MONGO_URI": "mongodb://admin:s3cret@mongodb:27017"})

    assert result.exit_code == 0 and "s3cret" not in result.output
    assert json.loads(result.output)["metadata"] == "mongodb://***@mongodb:27017"


def test_print_config_reports_bad_settings_like_serve() -> None:
    result = invoke_print_config({"MONGO_URI": "redis://cache:6379"})

    assert result.exit_code == 2
    assert "MONGO_URI" in result.output


def test_print_config_is_hidden_from_help() -> None:
    result = CliRunner().invoke(main, ["serve", "--help"])

    assert result.exit_code == 0 and "--print-config" not in result.output
    assert "MONGO_URI" in result.output and "DATABASE" in result.output


def test_peer_config_carries_the_mongodb_settings() -> None:
    config = PeerConfig(data_dir=Path("."), metadata="mongodb://m", database="db", metadata_write_concern="1")

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
