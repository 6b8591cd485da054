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
import logging
import sys
from pathlib import Path
from typing import Any

import click

from peer.config import PeerConfig
from peer.errors import DfsError
from peer.memory import tune_allocator

EXIT_CONFIG = 2
EXIT_RUNTIME = 1


class NodeFilter(logging.Filter):
    """Stamps every record with this peer's short node id, so interleaved logs stay readable."""

    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node = node_id[:8]

    def filter(self, record: logging.LogRecord) -> bool:
        record.node = self.node
        return True


def _setup_logging(level: str, node_id: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(NodeFilter(node_id))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(node)s] %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def _fail(message: str, code: int) -> None:
    click.echo(f"dfs-peer: error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def main() -> None:
    """A peer of the dfs storage mesh. Every peer runs this same process."""


def _serve_options(fn: Any) -> Any:
    d = PeerConfig(data_dir=Path("."))
    options = [
        click.option("--data-dir", envvar="DFS_DATA_DIR", default="./dfs-data", show_default=True,
                     type=click.Path(file_okay=False), help="Chunks, node id and ready.json."),
        click.option("--grpc-addr", envvar="DFS_GRPC_ADDR", default=d.grpc_addr, show_default=True,
                     help="gRPC listen HOST:PORT (port 0: any free port)."),
        click.option("--gossip-addr", envvar="DFS_GOSSIP_ADDR", default=d.gossip_addr, show_default=True,
                     help="Gossip/health HTTP listen HOST:PORT."),
        click.option("--advertise-grpc", envvar="DFS_ADVERTISE_GRPC", default="",
                     help="gRPC address other peers dial (default: the listen address, with 0.0.0.0 or :: "
                          "replaced by this host's IP)."),
        click.option("--advertise-gossip", envvar="DFS_ADVERTISE_GOSSIP", default="",
                     help="Gossip address other peers dial (default: the listen address, with 0.0.0.0 or :: "
                          "replaced by this host's IP)."),
        click.option("--seeds", envvar="DFS_SEEDS", default="", help="Comma-separated gossip HOST:PORT to join."),
        click.option("--metadata", envvar=["DFS_METADATA", "MONGO_URI"], default="",
                     help="sqlite:///PATH or mongodb://HOST:PORT/DB; env DFS_METADATA, else MONGO_URI  "
                          "[default: sqlite:///DATA_DIR/metadata.db]"),
        click.option("--database", envvar=["DFS_DATABASE", "DATABASE"], default=d.database,
                     help="MongoDB database; env DFS_DATABASE, else DATABASE  "
                          "[default: the database in the URI, else filestore]"),
        click.option("--metadata-write-concern", envvar="DFS_METADATA_WRITE_CONCERN",
                     default=d.metadata_write_concern, show_default=True,
                     help='MongoDB write concern: "majority" or a node count.'),
        click.option("--replicas", envvar="DFS_REPLICAS", default=d.replicas, show_default=True, type=int),
        click.option("--vnodes", envvar="DFS_VNODES", default=d.vnodes, show_default=True, type=int),
        click.option("--chunk-size", envvar="DFS_CHUNK_SIZE", default=d.chunk_size, show_default=True, type=int),
        click.option("--upload-window", envvar="DFS_UPLOAD_WINDOW", default=d.upload_window, show_default=True,
                     type=int),
        click.option("--inflight-chunks", envvar="DFS_INFLIGHT_CHUNKS", default=d.inflight_chunks,
                     show_default=True, type=int, help="Chunks of all uploads in flight (peer memory budget)."),
        click.option("--download-window", envvar="DFS_DOWNLOAD_WINDOW", default=d.download_window,
                     show_default=True, type=int),
        click.option("--gossip-interval", envvar="DFS_GOSSIP_INTERVAL", default=d.gossip_interval_s,
                     show_default=True, type=float, help="Seconds."),
        click.option("--gossip-fanout", envvar="DFS_GOSSIP_FANOUT", default=d.gossip_fanout, show_default=True,
                     type=int),
        click.option("--suspect-timeout", envvar="DFS_SUSPECT_TIMEOUT", default=d.suspect_timeout_s,
                     show_default=True, type=float, help="Seconds."),
        click.option("--dead-timeout", envvar="DFS_DEAD_TIMEOUT", default=d.dead_timeout_s, show_default=True,
                     type=float, help="Seconds."),
        click.option("--dead-grace", envvar="DFS_DEAD_GRACE", default=d.dead_grace_s, show_default=True,
                     type=float, help="Seconds a dead peer stays on the ring."),
        click.option("--rpc-timeout", envvar="DFS_RPC_TIMEOUT", default=d.rpc_timeout_s, show_default=True,
                     type=float, help="Seconds."),
        click.option("--repair-interval", envvar="DFS_REPAIR_INTERVAL", default=d.repair_interval_s,
                     show_default=True, type=float, help="Seconds between anti-entropy rounds."),
        click.option("--repair-batch", envvar="DFS_REPAIR_BATCH", default=d.repair_batch, show_default=True,
                     type=int, help="Chunk copies moved per round at most."),
        click.option("--scrub-rate", envvar="DFS_SCRUB_RATE", default=d.scrub_bytes_per_s, show_default=True,
                     type=float, help="Bytes/s the scrubber verifies (0: unlimited)."),
        click.option("--scrub-interval", envvar="DFS_SCRUB_INTERVAL", default=d.scrub_interval_s,
                     show_default=True, type=float, help="Seconds between scrub passes."),
        click.option("--gc-interval", envvar="DFS_GC_INTERVAL", default=d.gc_interval_s, show_default=True,
                     type=float, help="Seconds between garbage-collection passes."),
        click.option("--gc-grace", envvar="DFS_GC_GRACE", default=d.gc_grace_s, show_default=True, type=float,
                     help="Seconds an unreferenced chunk stays before deletion."),
        click.option("--max-gossip-bytes", envvar="DFS_MAX_GOSSIP_BYTES", default=d.max_gossip_bytes,
                     show_default=True, type=int),
        click.option("--log-level", envvar="DFS_LOG_LEVEL", default=d.log_level, show_default=True,
                     type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False)),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def config_from_options(opts: dict[str, Any]) -> PeerConfig:
    return PeerConfig(
        data_dir=Path(opts["data_dir"]),
        grpc_addr=opts["grpc_addr"],
        gossip_addr=opts["gossip_addr"],
        advertise_grpc=opts["advertise_grpc"],
        advertise_gossip=opts["advertise_gossip"],
        seeds=tuple(s.strip() for s in opts["seeds"].split(",") if s.strip()),
        metadata=opts["metadata"],
        database=opts["database"],
        metadata_write_concern=opts["metadata_write_concern"],
        replicas=opts["replicas"],
        vnodes=opts["vnodes"],
        chunk_size=opts["chunk_size"],
        upload_window=opts["upload_window"],
        inflight_chunks=opts["inflight_chunks"],
        download_window=opts["download_window"],
        gossip_interval_s=opts["gossip_interval"],
        gossip_fanout=opts["gossip_fanout"],
        suspect_timeout_s=opts["suspect_timeout"],
        dead_timeout_s=opts["dead_timeout"],
        dead_grace_s=opts["dead_grace"],
        rpc_timeout_s=opts["rpc_timeout"],
        repair_interval_s=opts["repair_interval"],
        repair_batch=opts["repair_batch"],
        scrub_bytes_per_s=opts["scrub_rate"],
        scrub_interval_s=opts["scrub_interval"],
        gc_interval_s=opts["gc_interval"],
        gc_grace_s=opts["gc_grace"],
        max_gossip_bytes=opts["max_gossip_bytes"],
        log_level=opts["log_level"].upper(),
    )


def config_document(config: PeerConfig) -> dict[str, Any]:
    """The settings as JSON-ready values, with credentials removed from the metadata URIs."""
    from peer.metadata.open import database_for, redact

    doc = dataclasses.asdict(config)
    doc["data_dir"] = str(config.data_dir)
    doc["seeds"] = list(config.seeds)
    doc["metadata"] = redact(config.metadata)
    doc["metadata_uri"] = redact(config.metadata_uri)
    if config.metadata_uri.startswith("mongodb"):
        doc["database"] = database_for(config.metadata_uri, config.database)
    return doc


@main.command()
@_serve_options
@click.option("--print-config", is_flag=True, hidden=True,
              help="Print the resolved settings as JSON and exit without starting.")
def serve(print_config: bool, **opts: Any) -> None:
    """Run one peer until SIGTERM/SIGINT, then announce leaving and stop."""
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
    _setup_logging(config.log_level, node.node_id)
    tune_allocator()
    try:
        asyncio.run(node.run())
    except (DfsError, OSError) as exc:
        _fail(str(exc), EXIT_RUNTIME)
    except KeyboardInterrupt:
        sys.exit(130)


@main.group()
def cluster() -> None:
    """Run several local peers on this host (development and demos)."""


@cluster.command("up")
@click.option("--peers", "count", envvar="DFS_CLUSTER_PEERS", default=3, show_default=True,
              type=click.IntRange(1, 64))
@click.option("--dir", "base_dir", envvar="DFS_CLUSTER_DIR", default=".dfs-cluster", show_default=True,
              type=click.Path(file_okay=False))
@click.option("--grpc-port", envvar="DFS_CLUSTER_GRPC_PORT", default=50051, show_default=True, type=int,
              help="First peer's gRPC port.")
@click.option("--gossip-port", envvar="DFS_CLUSTER_GOSSIP_PORT", default=7946, show_default=True, type=int,
              help="First peer's gossip port.")
@click.option("--replicas", envvar="DFS_CLUSTER_REPLICAS", default=2, show_default=True, type=int)
@click.option("--demo/--no-demo", envvar="DFS_CLUSTER_DEMO", default=False,
              help="Upload, list and download a sample file once up.")
def cluster_up(count: int, base_dir: str, grpc_port: int, gossip_port: int, replicas: int, demo: bool) -> None:
    """Start COUNT peers sharing one SQLite metadata file; Ctrl-C stops them all."""
    from peer.localcluster import run_local_cluster

    try:
        run_local_cluster(Path(base_dir), count, grpc_port, gossip_port, min(replicas, count), demo)
    except (DfsError, OSError) as exc:
        _fail(str(exc), EXIT_RUNTIME)


if __name__ == "__main__":
    main()
