"""`dfs-peer`: run one peer (`serve`) or a local cluster of peers (`cluster up`).

Every flag of `serve` also reads a DFS_* environment variable, so containers are configured by
environment only; the MongoDB settings also accept the MONGO_URI and DATABASE names of the original
design. `serve --print-config` prints the resolved settings as JSON and exits without starting.
Errors are one line on stderr with a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shlex
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from peer.cli_health import health_command
from peer.config import PeerConfig
from peer.errors import ConfigError, DfsError
from peer.localcluster.ports import DEFAULT_BASE_PORT
from peer.logs import setup_logging
from peer.memory import tune_allocator
from peer.security.certs import init_certs
from peer.settings import Declared, declared

EXIT_CONFIG = 2
EXIT_RUNTIME = 1


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"dfs-peer: error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def main() -> None:
    """A peer of the dfs storage mesh. Every peer runs this same process."""


def _serve_options(fn: Any) -> Any:
    """One click option per declared PeerConfig setting (peer/settings.py): flag, variables, default, help."""
    for d in reversed(declared(PeerConfig)):
        option_class = _EmptyEnvOption if d.setting.empty_env else click.Option
        fn = click.option(d.flag, d.name, cls=option_class, **_option_kwargs(d))(fn)
    return fn


class _EmptyEnvOption(click.Option):
    """Reads a variable that is set but empty as the value "" (click takes it for an unset one), for a
    setting where "" means something (DFS_S3_ADDR="" turns the S3 endpoint off)."""

    def resolve_envvar_value(self, ctx: click.Context) -> str | None:
        value = super().resolve_envvar_value(ctx)
        if value is None:
            names = [self.envvar] if isinstance(self.envvar, str) else list(self.envvar or ())
            value = next((os.environ[name] for name in names if name in os.environ), None)
        return value


def _option_kwargs(d: Declared) -> dict[str, Any]:
    s = d.setting
    envs = ", else ".join(s.env)
    shown = f"  [default: {s.shown_default.replace('`', '')}]" if s.shown_default else ""
    kwargs: dict[str, Any] = {
        "envvar": list(s.env) if len(s.env) > 1 else s.env[0],
        "help": f"{s.help.replace('`', '')} (env {envs}){shown}",
        "show_default": not s.shown_default and not s.secret,
    }
    if d.type is bool:
        return {**kwargs, "is_flag": True, "default": d.default}
    if s.choices:
        return {**kwargs, "type": click.Choice(list(s.choices), case_sensitive=False), "default": d.default}
    if d.type in (int, float):
        return {**kwargs, "type": d.type, "default": d.default}
    default = ",".join(d.default) if isinstance(d.default, tuple) else str(d.default)
    return {**kwargs, "type": str, "default": default}


def config_from_options(opts: dict[str, Any]) -> PeerConfig:
    """The PeerConfig of parsed `serve` options, converting the few types a flag cannot carry."""
    values: dict[str, Any] = {}
    for d in declared(PeerConfig):
        value = opts[d.name]
        if d.type is Path:
            value = Path(value)
        elif d.type == tuple[str, ...]:
            value = tuple(part.strip() for part in value.split(",") if part.strip())
        elif d.setting.choices:  # as declared, whatever the case typed
            value = next(c for c in d.setting.choices if c.lower() == value.lower())
        values[d.name] = value
    return PeerConfig(**values)


def config_document(config: PeerConfig) -> dict[str, Any]:
    """The settings as JSON-ready values, with credentials removed from the metadata URIs."""
    from peer.metadata.open import database_for, redact

    doc = dataclasses.asdict(config)
    doc["data_dir"] = str(config.data_dir)
    doc["seeds"] = list(config.seeds)
    doc["metadata"] = redact(config.metadata)
    doc["metadata_uri"] = redact(config.metadata_uri)
    doc["cluster_secret"] = "***" if config.cluster_secret else ""
    if config.metadata_uri.startswith("mongodb"):
        doc["database"] = database_for(config.metadata_uri, config.database)
    return doc


@main.command()
@_serve_options
@click.option("--print-config", is_flag=True, hidden=True,
              help="Print the resolved settings as JSON and exit without starting.")
def serve(print_config: bool, **opts: Any) -> None:
    """Run one peer until SIGTERM, SIGINT or SIGHUP, then announce leaving and stop."""
    from peer.node import Node

    try:
        config = config_from_options(opts).validate()
        if print_config:
            click.echo(json.dumps(config_document(config), indent=2, sort_keys=True))
            return
        node = Node(config)
    except (DfsError, OSError) as exc:
        _fail(str(exc), EXIT_CONFIG)
        return
    listener = setup_logging(config.log_level, node.node_id, config.log_format)
    tune_allocator()
    failure: DfsError | OSError | KeyboardInterrupt | None = None
    try:
        asyncio.run(node.run())
    except (DfsError, OSError, KeyboardInterrupt) as exc:
        failure = exc
    finally:
        listener.stop()  # the peer's last log lines come before the error line
    if isinstance(failure, KeyboardInterrupt):
        sys.exit(130)
    if failure is not None:
        _fail(str(failure), EXIT_RUNTIME)


@main.group()
def cluster() -> None:
    """Run several local peers on this host (development and demos)."""


def _dir_option(fn: Any) -> Any:
    return click.option("--dir", "base_dir", envvar="DFS_CLUSTER_DIR", default=".dfs-cluster", show_default=True,
                        type=click.Path(file_okay=False), help="The cluster's directory (state, data, logs).")(fn)


def _json_option(fn: Any) -> Any:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")(fn)


@cluster.command("up")
@click.option("--peers", "count", envvar="DFS_CLUSTER_PEERS", default=3, show_default=True,
              type=click.IntRange(1, 64))
@_dir_option
@click.option("--replicas", envvar="DFS_CLUSTER_REPLICAS", default=2, show_default=True, type=click.IntRange(min=1),
              help="Copies of every chunk; at most --peers (never lowered to fit).")
@click.option("--base-port", "--grpc-port", "base_port", envvar="DFS_CLUSTER_BASE_PORT", default=DEFAULT_BASE_PORT,
              show_default=True, type=int,
              help="Peer K serves gRPC on BASE+K-1, gossip on BASE+64+K-1, internal TLS gRPC on BASE+128+K-1, "
                   "S3 on BASE+192+K-1.")
@click.option("--tls", is_flag=True, envvar="DFS_CLUSTER_TLS", default=False,
              help="TLS for clients and mutual TLS between peers, with certificates from DIR/certs "
                   "(created with a development CA if missing).")
@click.option("--auth/--no-auth", envvar="DFS_CLUSTER_AUTH", default=False, show_default=True,
              help="Require client tokens; an admin token is written to DIR/admin.token.")
@click.option("--demo/--no-demo", envvar="DFS_CLUSTER_DEMO", default=False,
              help="Upload, list and download a sample file once up.")
@click.option("--foreground", is_flag=True, envvar="DFS_CLUSTER_FOREGROUND", default=False,
              help="Stay attached: report peers that die, stop them all on Ctrl-C.")
@_json_option
def cluster_up(count: int, base_dir: str, replicas: int, base_port: int, tls: bool, auth: bool, demo: bool,
               foreground: bool, as_json: bool) -> None:
    """Start COUNT peers sharing one SQLite metadata file and return once they agree on one ring.

    Prints each peer's gRPC address, one per line (its S3 endpoint URL goes to stderr, on a line
    that says S3, and into --json). The peers run in the background, logging to DIR/peerK/peer.log,
    until `dfs-peer cluster down`; with --foreground, until Ctrl-C."""
    from peer.localcluster.cluster import LocalCluster, s3_endpoint
    from peer.localcluster.demo import run_demo

    local = LocalCluster(Path(base_dir))
    try:
        local.check_layout(count, replicas, base_port)
    except DfsError as exc:
        _fail(str(exc), EXIT_CONFIG)
    signal.signal(signal.SIGTERM, _interrupt)
    # Ctrl-C must stop the cluster even where this process was started with SIGINT ignored (a shell
    # starts background jobs so), since Python then raises no KeyboardInterrupt by itself.
    signal.signal(signal.SIGINT, _interrupt)
    try:
        state, ready, digest = local.up(count, replicas, base_port, tls=tls, auth=auth, tied=foreground)
        if as_json:
            click.echo(json.dumps(_up_document(local, state, ready, digest), indent=2))
        else:
            for r in ready:
                click.echo(r["grpc_addr"])
        endpoints = [s3_endpoint(r.get("s3_addr", ""), state.tls) for r in ready]
        for k, (r, endpoint) in enumerate(zip(ready, endpoints, strict=True), start=1):
            _note(f"peer {k}: gRPC {r['grpc_addr']}, S3 endpoint {endpoint or '(off)'}")
        _note(f"{count} peers up (replicas {replicas}, TLS {'on' if tls else 'off'}, auth {'on' if auth else 'off'}),"
              f" ring digest {digest}; logs in {local.base}/peerK/peer.log")
        addrs = [r["grpc_addr"] for r in ready]
        if demo:
            run_demo(local.base, lambda addr: local.client(addr, state), addrs, _note)
        _note(f"try: dfs --peer {addrs[0]}{local.client_flags(state)} status")
        _note(f"S3 credentials (admin): AWS_SHARED_CREDENTIALS_FILE={local.s3_credentials}")
        if endpoints[0]:
            ca_bundle = f" --ca-bundle {local.certs / 'ca.crt'}" if state.tls else ""
            _note(f"try S3: AWS_SHARED_CREDENTIALS_FILE={local.s3_credentials} "
                  f"aws --endpoint-url {endpoints[0]}{ca_bundle} s3 ls")
        if not foreground:
            _note(f"stop: dfs-peer cluster down --dir {base_dir}")
            return
        _note("Ctrl-C stops the cluster")
        local.supervise(_note)
    except KeyboardInterrupt:
        if foreground:
            _note("stopping peers...")
            local.down()
        sys.exit(130 if not foreground else 0)
    except (DfsError, OSError) as exc:
        _fail(str(exc), EXIT_RUNTIME)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _note(text: str) -> None:
    """Human commentary goes to stderr, so stdout carries only what scripts read."""
    click.echo(text, err=True)


def _up_document(local: Any, state: Any, ready: list[dict[str, Any]], digest: str) -> dict[str, Any]:
    from peer.localcluster.cluster import s3_endpoint

    return {
        "dir": str(local.base), "ring_digest": digest, "replicas": state.replicas, "tls": state.tls,
        "auth": state.auth, "base_port": state.base_port, "s3_credentials": str(local.s3_credentials),
        "peers": [{"index": k, "pid": r.get("pid"), "node_id": r["node_id"], "grpc_addr": r["grpc_addr"],
                   "gossip_addr": r["gossip_addr"], "peer_addr": r.get("peer_addr") or r["grpc_addr"],
                   "s3_endpoint": s3_endpoint(r.get("s3_addr", ""), state.tls),
                   "log": str(local.base / f"peer{k}" / "peer.log")}
                  for k, r in enumerate(ready, start=1)],
    }


@cluster.command("down")
@_dir_option
def cluster_down(base_dir: str) -> None:
    """Stop every peer of DIR gracefully (SIGTERM: each announces it leaves; SIGKILL after a timeout)."""
    from peer.localcluster.cluster import LocalCluster

    try:
        stopped = LocalCluster(Path(base_dir)).down()
    except (DfsError, OSError) as exc:
        _fail(str(exc), EXIT_RUNTIME)
    _note(f"stopped peers {', '.join(map(str, stopped))}" if stopped else "no peer was running")


@cluster.command("status")
@_dir_option
@_json_option
def cluster_status(base_dir: str, as_json: bool) -> None:
    """Each peer's index, pid, addresses, whether it runs, and its state as the cluster sees it."""
    from peer.localcluster.cluster import LocalCluster

    try:
        rows = LocalCluster(Path(base_dir)).status()
    except (DfsError, OSError) as exc:
        _fail(str(exc), EXIT_RUNTIME)
    if as_json:
        click.echo(json.dumps({"dir": str(Path(base_dir).resolve()), "peers": [r.to_dict() for r in rows]}, indent=2))
        return
    header = ("PEER", "PID", "PROCESS", "CLUSTER VIEW", "GRPC", "GOSSIP", "S3", "NODE")
    table = [header] + [(str(r.index), str(r.pid or "-"), "running" if r.running else "stopped", r.state or "-",
                         r.grpc_addr, r.gossip_addr, r.s3_endpoint or "-", r.node_id[:12] or "-") for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _peer_option(fn: Any) -> Any:
    return click.option("--peer", "index", required=True, type=click.IntRange(1, 64),
                        help="The peer's index K (from 1, as in the port scheme).")(fn)


@cluster.command("stop")
@_dir_option
@_peer_option
def cluster_stop(base_dir: str, index: int) -> None:
    """Stop one peer gracefully; its data directory and ports stay its own."""
    from peer.localcluster.cluster import LocalCluster

    try:
        was_running = LocalCluster(Path(base_dir)).stop_peer(index)
    except (DfsError, OSError) as exc:
        _fail(str(exc), EXIT_RUNTIME)
    _note(f"stopped peer {index}" if was_running else f"peer {index} was not running")


@cluster.command("start")
@_dir_option
@_peer_option
def cluster_start(base_dir: str, index: int) -> None:
    """Start one stopped peer again on its own data directory and ports; returns once the ring agrees."""
    from peer.localcluster.cluster import LocalCluster

    try:
        ready = LocalCluster(Path(base_dir)).start_peer(index)
    except (DfsError, OSError) as exc:
        _fail(str(exc), EXIT_RUNTIME)
    click.echo(ready["grpc_addr"])
    _note(f"started peer {index} (pid {ready.get('pid')}), the cluster agrees on its ring")


def _store_options(fn: Any) -> Any:
    options = [
        click.option("--data-dir", envvar="DFS_DATA_DIR", default="./dfs-data", show_default=True,
                     type=click.Path(file_okay=False), help="Locates the default SQLite metadata file."),
        click.option("--metadata", envvar=["DFS_METADATA", "MONGO_URI"], default="",
                     help="sqlite:///PATH, mongodb://HOST:PORT/DB or postgresql://USER@HOST/DB, as the peers use."),
        click.option("--database", envvar=["DFS_DATABASE", "DATABASE"], default=""),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _open_tokens(data_dir: str, metadata: str, database: str) -> Any:
    from peer.metadata.open import open_store

    config = PeerConfig(data_dir=Path(data_dir), metadata=metadata, database=database)
    return open_store(config.metadata_uri, config.database or None, config.metadata_write_concern)


@main.group()
def token() -> None:
    """Manage client API tokens directly in the metadata store (on a host that can reach it).

    Clients with an admin token can do the same through any peer: `dfs token ...`."""


@token.command("create")
@click.option("--role", required=True, type=click.Choice(["read", "write", "admin"]),
              help="read: download, list, info, versions, status; write: + upload, delete; "
                   "admin: + token management.")
@click.option("--name", default="", help="A label for the token (who or what uses it).")
@_store_options
def token_create(role: str, name: str, data_dir: str, metadata: str, database: str) -> None:
    """Create a token and print it once; only its hash is stored."""
    import time

    from peer.security.tokens import new_token

    try:
        secret, record = new_token(role, name, time.time())
        store = _open_tokens(data_dir, metadata, database)
        try:
            store.add_token(record)
        finally:
            store.close()
    except DfsError as exc:
        _fail(str(exc), EXIT_CONFIG)
        return
    click.echo(secret)
    click.echo(f"created {role} token {record.token_id}; it is shown only this once", err=True)


@token.command("list")
@_store_options
def token_list(data_dir: str, metadata: str, database: str) -> None:
    """List tokens (ids, roles, names; never secrets)."""
    import time

    try:
        store = _open_tokens(data_dir, metadata, database)
        try:
            records = store.list_tokens()
        finally:
            store.close()
    except DfsError as exc:
        _fail(str(exc), EXIT_CONFIG)
        return
    for r in records:
        created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(r.created_at))
        state = "revoked" if r.revoked_at is not None else "active"
        click.echo(f"{r.token_id}  {r.role:<5}  {state:<7}  {created}  {r.name}")


@token.command("revoke")
@click.argument("token_id")
@_store_options
def token_revoke(token_id: str, data_dir: str, metadata: str, database: str) -> None:
    """Revoke a token; peers refuse it within DFS_TOKEN_CACHE seconds."""
    import time

    from peer.files.rules import check_token_id

    try:
        store = _open_tokens(data_dir, metadata, database)
        try:
            store.revoke_token(check_token_id(token_id), time.time())
        finally:
            store.close()
    except DfsError as exc:
        _fail(str(exc), EXIT_CONFIG)
        return
    click.echo(f"revoked {token_id}")


@main.group("s3-key")
def s3_key() -> None:
    """Manage S3 access keys directly in the metadata store (on a host that can reach it).

    A key's secret is sealed under the peers' encryption key, so creating one needs what the peers
    derive it from: --s3-key-file, else --cluster-secret, else DATA_DIR/s3-secret.key (generated if
    missing). Clients with an admin token can do the same through any peer: `dfs s3-key ...`."""


def _s3_key_source_options(fn: Any) -> Any:
    options = [
        click.option("--s3-key-file", envvar="DFS_S3_KEY_FILE", default="",
                     help="The peers' S3 key file (env DFS_S3_KEY_FILE)."),
        click.option("--cluster-secret", envvar="DFS_CLUSTER_SECRET", default="",
                     help="The peers' cluster secret, used without a key file (prefer env DFS_CLUSTER_SECRET)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@s3_key.command("create")
@click.option("--role", required=True, type=click.Choice(["read", "write", "admin"]),
              help="The role the key carries, as a token would (read < write < admin).")
@click.option("--name", default="", help="A label for the key (who or what uses it).")
@_store_options
@_s3_key_source_options
@_json_option
def s3_key_create(role: str, name: str, data_dir: str, metadata: str, database: str, s3_key_file: str,
                  cluster_secret: str, as_json: bool) -> None:
    """Create an access key and print its id and secret once; the secret is stored only sealed."""
    import time

    from peer.security.s3keys import load_secret_box, new_s3_key

    try:
        box = load_secret_box(s3_key_file, cluster_secret, Path(data_dir))
        made = new_s3_key(box, role, name, time.time())
        store = _open_tokens(data_dir, metadata, database)
        try:
            store.add_s3_key(made.record)
        finally:
            store.close()
    except DfsError as exc:
        _fail(str(exc), EXIT_CONFIG)
        return
    if as_json:
        click.echo(json.dumps({"access_key_id": made.access_key_id, "secret_access_key": made.secret,
                               "info": dataclasses.asdict(made.info)}, indent=2))
    else:
        click.echo(f"aws_access_key_id = {made.access_key_id}\naws_secret_access_key = {made.secret}")
    _note(f"created {role} S3 access key {made.access_key_id}, sealed under {box.source};"
          " the secret is shown only this once")


@s3_key.command("list")
@_store_options
@_json_option
def s3_key_list(data_dir: str, metadata: str, database: str, as_json: bool) -> None:
    """List S3 access keys (ids, roles, names; never secrets)."""
    import time

    from peer.security.s3keys import S3KeyInfo

    try:
        store = _open_tokens(data_dir, metadata, database)
        try:
            keys = [S3KeyInfo.of(record) for record in store.list_s3_keys()]
        finally:
            store.close()
    except DfsError as exc:
        _fail(str(exc), EXIT_CONFIG)
        return
    if as_json:
        click.echo(json.dumps({"keys": [dataclasses.asdict(k) for k in keys]}, indent=2))
        return
    for k in keys:
        created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(k.created_at))
        state = "revoked" if k.revoked_at is not None else "active"
        click.echo(f"{k.access_key_id}  {k.role:<5}  {state:<7}  {created}  {k.name}")


@s3_key.command("revoke")
@click.argument("access_key_id")
@_store_options
def s3_key_revoke(access_key_id: str, data_dir: str, metadata: str, database: str) -> None:
    """Revoke an S3 access key; peers refuse it within DFS_TOKEN_CACHE seconds."""
    import time

    from peer.security.s3keys import check_access_key_id

    try:
        store = _open_tokens(data_dir, metadata, database)
        try:
            store.revoke_s3_key(check_access_key_id(access_key_id), time.time())
        finally:
            store.close()
    except DfsError as exc:
        _fail(str(exc), EXIT_CONFIG)
        return
    click.echo(f"revoked {access_key_id}")


@click.group("certs")
def certs_command() -> None:
    """Development certificates for TLS between peers and clients."""


@certs_command.command("init")
@click.option("--dir", "directory", required=True, type=click.Path(path_type=Path), help="Where to write the files.")
@click.option("--peers", default=3, show_default=True, type=int, help="Certificates for peer-1..peer-N.")
@click.option("--host", "hosts", multiple=True, help="Extra SAN on every peer cert: a DNS name or IP (repeatable).")
@click.option("--days", default=825, show_default=True, type=int, help="Validity of the peer certificates.")
@click.option("--force", is_flag=True, help="Regenerate the CA and all peer certificates, replacing existing files.")
def certs_init(directory: Path, peers: int, hosts: tuple[str, ...], days: int, force: bool) -> None:
    """Create a CA and one certificate per peer; an existing CA is reused and existing peer files kept."""
    try:
        written = init_certs(directory, peers, hosts, valid_days=days, force=force)
    except ConfigError as exc:
        _fail(str(exc), EXIT_CONFIG)
    for path in written:
        click.echo(f"wrote {path}")
    if not written:
        click.echo(f"nothing to write: the CA and peer-1..peer-{peers} already exist in {directory}")

    cert, key, ca = (shlex.quote(str(directory / name)) for name in ("peer-1.crt", "peer-1.key", "ca.crt"))
    click.echo(f"start a peer: dfs-peer serve --tls-cert {cert} --tls-key {key} --tls-ca {ca}")
    click.echo(f"clients verify peers with: dfs --tls-ca {ca} ...")


main.add_command(certs_command)
main.add_command(health_command)


if __name__ == "__main__":
    main()
