"""PeerConfig: every setting of a peer, with its unit, default, trade-off and DFS_* variable.

One frozen value is built at start (cli.py reads flags and environment), validated, and then each
component receives only the fields it needs. `PeerConfig.local()` is the loopback profile tests use:
short gossip intervals so clusters converge in well under a second.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from peer.errors import ConfigError
from peer.identity import check_node_id
from peer.logs import LOG_FORMATS
from peer.settings import REQUIRED, setting

MIB = 1024 * 1024
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class PeerConfig:
    # DFS_DATA_DIR: chunks, node id and ready.json live here; a restart on it keeps identity and chunks.
    data_dir: Path = setting(REQUIRED, "DFS_DATA_DIR", "chunks, node id, ready.json", cli_default="./dfs-data")
    # DFS_NODE_ID: this peer's id on the ring; empty: the id kept in DATA_DIR/node.json, or a new
    # random one. A data directory that already belongs to another id is refused.
    node_id: str = setting(
        "",
        "DFS_NODE_ID",
        "this peer's id on the ring; a data directory holding another id is refused",
        shown_default="the id in the data directory, else random",
    )
    # DFS_GRPC_ADDR: public and internal gRPC listener, HOST:PORT (port 0 picks a free port).
    grpc_addr: str = setting("127.0.0.1:50051", "DFS_GRPC_ADDR", "gRPC listen address (port 0: any free port)")
    # DFS_GOSSIP_ADDR: aiohttp gossip and /health listener, HOST:PORT.
    gossip_addr: str = setting("127.0.0.1:7946", "DFS_GOSSIP_ADDR", "gossip and `/health` HTTP listen address")
    # DFS_ADVERTISE_GRPC / DFS_ADVERTISE_GOSSIP: the addresses other peers dial, when the bind
    # address is not reachable as such; default: the bound address, with a wildcard host (0.0.0.0 or
    # ::, as in a container) replaced by this host's name resolved to an IP (see `advertised`).
    advertise_grpc: str = setting(
        "",
        "DFS_ADVERTISE_GRPC",
        "gRPC address other peers dial (0.0.0.0 is replaced by this host's IP)",
        shown_default="listen address",
    )
    advertise_gossip: str = setting(
        "", "DFS_ADVERTISE_GOSSIP", "gossip address other peers dial", shown_default="listen address"
    )
    # DFS_S3_ADDR: the S3-compatible API's HTTP listener, HOST:PORT (HTTPS when the peer has TLS;
    # port 0 picks a free port); empty: no S3 endpoint on this peer.
    s3_addr: str = setting(
        "127.0.0.1:9000", "DFS_S3_ADDR", "S3 API listen address, HTTPS with TLS (empty: no S3 endpoint)",
        empty_env=True,
    )
    # DFS_S3_DOMAIN: the domain of virtual-hosted style addressing (BUCKET.DOMAIN); empty: path style
    # only (http://HOST/BUCKET/KEY), which is always served.
    s3_domain: str = setting(
        "", "DFS_S3_DOMAIN", "S3 virtual-hosted style domain (`BUCKET.DOMAIN`); path style is always on",
        shown_default="none (path style only)",
    )
    # DFS_SEEDS: comma-separated gossip HOST:PORT of peers to join through; empty starts a new cluster.
    seeds: tuple[str, ...] = setting(
        (),
        "DFS_SEEDS",
        "comma-separated gossip `HOST:PORT`s to join through; a name resolving to several addresses reaches each",
        shown_default="none",
    )
    # DFS_ZONE: the failure domain this peer is in (a rack, a room, a data centre), gossiped to every
    # member; placement puts a chunk's pieces in as many distinct zones as exist. Empty: the one
    # unnamed zone, which is also what peers that set none share.
    zone: str = setting(
        "",
        "DFS_ZONE",
        "failure domain of this peer (rack, room, site); pieces of a chunk go to distinct zones first",
        shown_default="none (one zone)",
    )
    # DFS_METADATA, else MONGO_URI: sqlite:///PATH (peers of one host share the file), mongodb://...
    # or postgresql://... (peers on several hosts share the database).
    metadata: str = setting(
        "", ("DFS_METADATA", "MONGO_URI"), "metadata store URI", shown_default="`sqlite:///DATA_DIR/metadata.db`"
    )
    # DFS_DATABASE, else DATABASE: the MongoDB database; empty means the one named in the URI path,
    # else "filestore". Ignored by SQLite.
    database: str = setting(
        "", ("DFS_DATABASE", "DATABASE"), "MongoDB database", shown_default="database in the URI, else `filestore`"
    )
    # DFS_METADATA_WRITE_CONCERN: MongoDB write concern, "majority" or a node count >= 1 (always
    # journaled). "majority" keeps acknowledged uploads through a primary failover. Ignored by SQLite.
    metadata_write_concern: str = setting("majority", "DFS_METADATA_WRITE_CONCERN", "MongoDB write concern")
    # DFS_REPLICAS: copies of every chunk on distinct peers. Every peer of a cluster must agree.
    replicas: int = setting(2, "DFS_REPLICAS", "copies of every chunk, on distinct peers")
    # DFS_DEFAULT_POLICY: the redundancy policy of every upload that names none (nor its bucket):
    # `rep:R` or `ec:K+M`. Empty means rep:DFS_REPLICAS, so clusters configured by DFS_REPLICAS keep
    # their behaviour; set, it takes precedence. Every peer of a cluster must agree (gossip refuses
    # a peer with another), and it is checked with the peer's policy parser when the peer starts.
    default_policy: str = setting(
        "", "DFS_DEFAULT_POLICY",
        "redundancy policy of uploads that name none: `rep:R` or `ec:K+M` (overrides `--replicas`)",
        shown_default="`rep:R`, R = `--replicas`",
    )
    # DFS_VNODES: virtual nodes per peer on the ring; more evens out load, costs ring memory.
    vnodes: int = setting(150, "DFS_VNODES", "virtual nodes per peer on the ring")
    # DFS_CHUNK_SIZE: bytes per chunk (1 MiB); also bounds the size of one gRPC message.
    chunk_size: int = setting(MIB, "DFS_CHUNK_SIZE", "bytes per chunk")
    # DFS_UPLOAD_WINDOW: chunks of one upload in flight at once; memory per upload ~ window x chunk.
    upload_window: int = setting(
        4, "DFS_UPLOAD_WINDOW", "chunks of one upload in flight (memory per upload ≈ window × chunk)"
    )
    # DFS_INFLIGHT_CHUNKS: bytes of ALL uploads of this peer in flight at once, in chunk sizes: the
    # peer-wide memory budget, however many clients upload concurrently (small chunks take less).
    inflight_chunks: int = setting(
        6,
        "DFS_INFLIGHT_CHUNKS",
        "bytes of all uploads in flight at once, in chunk sizes: the peer's upload memory budget",
    )
    # DFS_DOWNLOAD_WINDOW: chunks of one download fetched ahead of the one being sent.
    download_window: int = setting(8, "DFS_DOWNLOAD_WINDOW", "chunks fetched ahead during a download")
    # DFS_GOSSIP_INTERVAL: seconds between push-pull rounds; each round also bumps our heartbeat.
    gossip_interval_s: float = setting(0.5, "DFS_GOSSIP_INTERVAL", "seconds between gossip rounds")
    # DFS_GOSSIP_FANOUT: members contacted per round.
    gossip_fanout: int = setting(3, "DFS_GOSSIP_FANOUT", "members contacted per round")
    # DFS_SUSPECT_TIMEOUT: seconds without heartbeat news before a member is suspect.
    suspect_timeout_s: float = setting(3.0, "DFS_SUSPECT_TIMEOUT", "seconds without news before a member is suspect")
    # DFS_DEAD_TIMEOUT: seconds without news before a member is dead (>= suspect timeout).
    dead_timeout_s: float = setting(6.0, "DFS_DEAD_TIMEOUT", "seconds without news before a member is dead")
    # DFS_DEAD_GRACE: seconds a dead member stays on the ring, so a flapping peer does not reshuffle it.
    dead_grace_s: float = setting(60.0, "DFS_DEAD_GRACE", "seconds a dead member stays on the ring")
    # DFS_RPC_TIMEOUT: seconds for one internal chunk call before another peer is tried.
    rpc_timeout_s: float = setting(10.0, "DFS_RPC_TIMEOUT", "seconds for one internal chunk call")
    # DFS_REPAIR_INTERVAL: seconds between anti-entropy rounds (digest comparison with every owner
    # peer, re-replication, hinted handoff). Shorter heals faster, costs more idle traffic.
    repair_interval_s: float = setting(10.0, "DFS_REPAIR_INTERVAL", "seconds between anti-entropy rounds")
    # DFS_REPAIR_BATCH: chunk copies moved per anti-entropy round at most, so repair leaves room
    # for client traffic; a round with more to do runs again at once.
    repair_batch: int = setting(256, "DFS_REPAIR_BATCH", "chunk copies moved per round at most")
    # DFS_SCRUB_RATE: bytes per second the scrubber re-reads and verifies (0: unlimited).
    scrub_bytes_per_s: float = setting(
        16 * MIB, "DFS_SCRUB_RATE", "bytes/s the scrubber verifies (0: unlimited)", flag="--scrub-rate"
    )
    # DFS_SCRUB_INTERVAL: seconds between the end of one scrub pass and the start of the next.
    scrub_interval_s: float = setting(3600.0, "DFS_SCRUB_INTERVAL", "seconds between scrub passes")
    # DFS_GC_INTERVAL: seconds between garbage-collection passes.
    gc_interval_s: float = setting(600.0, "DFS_GC_INTERVAL", "seconds between garbage-collection passes")
    # DFS_GC_GRACE: seconds an unreferenced chunk must stay untouched before it is deleted. Must
    # exceed the longest upload: chunks are written before their version is committed.
    gc_grace_s: float = setting(
        86400.0,
        "DFS_GC_GRACE",
        "seconds an unreferenced chunk stays untouched before deletion (must exceed the longest upload)",
    )
    # DFS_MULTIPART_EXPIRY: seconds an unfinished S3 multipart upload may go without a new part before
    # garbage collection aborts it; its parts' chunks are then collected after DFS_GC_GRACE.
    multipart_expiry_s: float = setting(
        7 * 86400.0,
        "DFS_MULTIPART_EXPIRY",
        "seconds an unfinished S3 multipart upload may go without a new part before it is aborted (7 days)",
    )
    # DFS_MAX_GOSSIP_BYTES: largest gossip body accepted; larger gets HTTP 413.
    max_gossip_bytes: int = setting(4 * MIB, "DFS_MAX_GOSSIP_BYTES", "largest gossip body accepted (larger: HTTP 413)")
    # DFS_TLS_CERT / DFS_TLS_KEY: this peer's certificate and private key (PEM). With DFS_TLS_CA they
    # turn on TLS for clients and mutual TLS between peers; all three or none.
    tls_cert: str = setting(
        "",
        "DFS_TLS_CERT",
        "this peer's certificate (PEM); with the key and CA, TLS for clients and mutual TLS between peers",
        shown_default="none",
    )
    tls_key: str = setting("", "DFS_TLS_KEY", "this peer's private key (PEM)", shown_default="none")
    # DFS_TLS_CA: the cluster CA (PEM). Peers accept peer traffic only from certificates it signed.
    tls_ca: str = setting(
        "",
        "DFS_TLS_CA",
        "the cluster CA: peer traffic is accepted only from certificates it signed",
        shown_default="none",
    )
    # DFS_PEER_GRPC_ADDR: with TLS, the internal chunk service listens here with mutual TLS, apart
    # from the client API; default: the gRPC host, port + 100 (port 0 stays 0). Without TLS the
    # internal service shares the gRPC listener and this setting is ignored.
    peer_grpc_addr: str = setting(
        "",
        "DFS_PEER_GRPC_ADDR",
        "with TLS, the internal (mutual TLS) chunk service listen address",
        shown_default="gRPC port + 100",
    )
    # DFS_ADVERTISE_PEER_GRPC: the internal address other peers dial (rules as DFS_ADVERTISE_GRPC).
    advertise_peer_grpc: str = setting(
        "", "DFS_ADVERTISE_PEER_GRPC", "internal gRPC address other peers dial", shown_default="listen address"
    )
    # DFS_CLUSTER_SECRET: shared secret (>= 16 characters) that signs every gossip message and
    # internal call when TLS is off. Required without TLS unless DFS_NO_AUTH is set.
    cluster_secret: str = setting(
        "",
        "DFS_CLUSTER_SECRET",
        "shared secret (≥ 16 characters) signing gossip and internal calls when TLS is off",
        secret=True,
        shown_default="none",
    )
    # DFS_S3_KEY_FILE: a file (>= 32 bytes, e.g. `openssl rand -base64 32`) from which the key that
    # seals S3 secrets in the metadata store is derived; every peer of a cluster needs the same one.
    # Empty: the key is derived from DFS_CLUSTER_SECRET, and without that too a key file is generated
    # in the data directory, which suits one host only (peers elsewhere could not open its keys).
    s3_key_file: str = setting(
        "",
        "DFS_S3_KEY_FILE",
        "file the key sealing S3 secrets is derived from; the same on every peer",
        shown_default="derived from the cluster secret, else `DATA_DIR/s3-secret.key` (generated)",
    )
    # DFS_NO_AUTH: development only. Clients need no token (every caller is admin) and, without TLS
    # or a cluster secret, peers accept each other unauthenticated. A warning is logged at start.
    no_auth: bool = setting(
        False,
        "DFS_NO_AUTH",
        "development only: no client tokens (every caller is admin); without TLS or secret, no peer checks",
    )
    # DFS_TOKEN_CACHE: seconds a verified token (or S3 access key) is trusted before the metadata
    # store is asked again; a revoked one stops working within this time.
    token_cache_s: float = setting(
        5.0,
        "DFS_TOKEN_CACHE",
        "seconds a verified token or S3 key is trusted; a revocation takes effect within this time",
    )
    # DFS_MAX_FILE_SIZE: bytes one upload may carry; a larger stream is refused and nothing is committed.
    max_file_size: int = setting(1024**4, "DFS_MAX_FILE_SIZE", "bytes one upload may carry (1 TiB)")
    # DFS_MAX_METADATA_BYTES: bytes of user metadata (keys plus values) one version may carry.
    max_metadata_bytes: int = setting(8 * 1024, "DFS_MAX_METADATA_BYTES", "bytes of user metadata per version")
    # DFS_MAX_MESSAGE_BYTES: largest gRPC message accepted or sent, at least chunk size + 64 KiB;
    # 0 means chunk size + 1 MiB, and at least 8 MiB.
    max_message_bytes: int = setting(
        0, "DFS_MAX_MESSAGE_BYTES", "largest gRPC message (0: chunk size + 1 MiB, at least 8 MiB)"
    )
    # DFS_MAX_STREAMS_PER_CLIENT: calls one client connection may have open at once (HTTP/2
    # concurrent streams); more wait in the client until one finishes.
    max_streams_per_client: int = setting(
        256, "DFS_MAX_STREAMS_PER_CLIENT", "calls one client connection may have open at once (HTTP/2 streams)"
    )
    # DFS_MAX_CONCURRENT_RPCS: calls this peer serves at once, all clients together; more are
    # refused with RESOURCE_EXHAUSTED rather than queued without bound.
    max_concurrent_rpcs: int = setting(
        2048, "DFS_MAX_CONCURRENT_RPCS", "calls served at once; more are refused with RESOURCE_EXHAUSTED"
    )
    # DFS_CLIENT_IDLE_TIMEOUT: seconds an upload may wait for the client's next message, or a
    # download for the client to read, before the call is cancelled (slow or stalled clients); also
    # bounds reading one gossip body.
    client_idle_timeout_s: float = setting(
        60.0,
        "DFS_CLIENT_IDLE_TIMEOUT",
        "seconds an upload waits for data, or a download for the client to read, before cancelling"
        " (also a gossip body)",
    )
    # DFS_CONNECTION_IDLE_TIMEOUT: seconds an idle client connection (gRPC or gossip HTTP) stays open.
    connection_idle_timeout_s: float = setting(
        300.0, "DFS_CONNECTION_IDLE_TIMEOUT", "seconds an idle client connection (gRPC or HTTP) stays open"
    )
    # DFS_LOG_LEVEL
    log_level: str = setting(
        "INFO", "DFS_LOG_LEVEL", "DEBUG, INFO, WARNING, ERROR", choices=("DEBUG", "INFO", "WARNING", "ERROR")
    )
    # DFS_LOG_FORMAT: "text" (one human-readable line per record) or "json" (one JSON object per
    # line with time, level, node id, request id, logger and message), for log collectors.
    log_format: str = setting("text", "DFS_LOG_FORMAT", "log lines as `text` or `json` objects", choices=LOG_FORMATS)
    # DFS_ACCESS_LOG: one log line per client call (method, name, bytes, duration, result).
    access_log: bool = setting(
        True, "DFS_ACCESS_LOG", "one log line per client call", flag="--access-log/--no-access-log"
    )
    # DFS_METRICS: count every client request (by API, operation and code; duration; bytes) and serve
    # GET /metrics. Off, the request path does no metrics work at all and /metrics answers 404; the
    # background figures (chunks, repair, workers) are still kept, since `dfs status` reads them.
    metrics: bool = setting(
        True, "DFS_METRICS", "count client requests and serve `/metrics` (off: `/metrics` answers 404)",
        flag="--metrics/--no-metrics",
    )
    # DFS_METRICS_ALLOW: addresses and CIDR networks that may read GET /metrics without a token;
    # anyone else needs a client token of any role (with DFS_NO_AUTH, anyone may read it).
    metrics_allow: tuple[str, ...] = setting(
        ("127.0.0.1", "::1"),
        "DFS_METRICS_ALLOW",
        "comma-separated addresses and CIDRs that may read `/metrics` without a token",
        shown_default="`127.0.0.1,::1`",
    )
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def local(cls, data_dir: Path, **overrides: object) -> PeerConfig:
        """Loopback profile: ephemeral ports and fast failure detection for tests."""
        base = cls(
            data_dir=data_dir,
            grpc_addr="127.0.0.1:0",
            gossip_addr="127.0.0.1:0",
            s3_addr="127.0.0.1:0",
            gossip_interval_s=0.1,
            suspect_timeout_s=1.0,
            dead_timeout_s=2.0,
            dead_grace_s=5.0,
            rpc_timeout_s=5.0,
            repair_interval_s=0.5,
            scrub_bytes_per_s=0.0,
            scrub_interval_s=2.0,
            gc_interval_s=1.0,
            gc_grace_s=2.0,
            no_auth=True,
        )
        return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]

    @property
    def metadata_uri(self) -> str:
        return self.metadata or f"sqlite:///{(self.data_dir / 'metadata.db').resolve()}"

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)

    @property
    def policy_text(self) -> str:
        """The cluster's default policy as configured (DFS_DEFAULT_POLICY, else rep:DFS_REPLICAS);
        parsed by the node, since the policy type lives in a layer above this one."""
        return self.default_policy or f"rep:{self.replicas}"

    def validate(self) -> PeerConfig:
        """Refuses values that would be unsafe or meaningless, with a message naming the setting."""
        checks: list[tuple[bool, str]] = [
            (self.replicas >= 1, "DFS_REPLICAS must be at least 1"),
            (1 <= self.vnodes <= 4096, "DFS_VNODES must be between 1 and 4096"),
            (64 * 1024 <= self.chunk_size <= 64 * MIB, "DFS_CHUNK_SIZE must be between 64 KiB and 64 MiB"),
            (self.upload_window >= 1, "DFS_UPLOAD_WINDOW must be at least 1"),
            (self.inflight_chunks >= self.upload_window, "DFS_INFLIGHT_CHUNKS must be >= DFS_UPLOAD_WINDOW"),
            (self.download_window >= 1, "DFS_DOWNLOAD_WINDOW must be at least 1"),
            (self.gossip_interval_s > 0, "DFS_GOSSIP_INTERVAL must be positive"),
            (self.gossip_fanout >= 1, "DFS_GOSSIP_FANOUT must be at least 1"),
            (self.suspect_timeout_s > self.gossip_interval_s, "DFS_SUSPECT_TIMEOUT must exceed DFS_GOSSIP_INTERVAL"),
            (self.dead_timeout_s >= self.suspect_timeout_s, "DFS_DEAD_TIMEOUT must be >= DFS_SUSPECT_TIMEOUT"),
            (self.dead_grace_s >= 0, "DFS_DEAD_GRACE must not be negative"),
            (self.rpc_timeout_s > 0, "DFS_RPC_TIMEOUT must be positive"),
            (self.repair_interval_s > 0, "DFS_REPAIR_INTERVAL must be positive"),
            (self.repair_batch >= 1, "DFS_REPAIR_BATCH must be at least 1"),
            (self.scrub_bytes_per_s >= 0, "DFS_SCRUB_RATE must not be negative"),
            (self.scrub_interval_s > 0, "DFS_SCRUB_INTERVAL must be positive"),
            (self.gc_interval_s > 0, "DFS_GC_INTERVAL must be positive"),
            (self.gc_grace_s >= 0, "DFS_GC_GRACE must not be negative"),
            (self.multipart_expiry_s > 0, "DFS_MULTIPART_EXPIRY must be positive"),
            (self.max_gossip_bytes >= 64 * 1024, "DFS_MAX_GOSSIP_BYTES must be at least 64 KiB"),
            (
                self.metadata_uri.startswith(
                    ("sqlite:///", "mongodb://", "mongodb+srv://", "postgresql://", "postgres://")
                ),
                "DFS_METADATA (or MONGO_URI) must be sqlite:///PATH, mongodb://HOST:PORT/... or postgresql://...",
            ),
            (
                bool(self.metadata_write_concern) and self.metadata_write_concern.strip("0") != "",
                'DFS_METADATA_WRITE_CONCERN must be "majority" or a node count of at least 1',
            ),
            (
                len({bool(self.tls_cert), bool(self.tls_key), bool(self.tls_ca)}) == 1,
                "DFS_TLS_CERT, DFS_TLS_KEY and DFS_TLS_CA go together: set all three or none",
            ),
            (
                not self.cluster_secret or len(self.cluster_secret) >= 16,
                "DFS_CLUSTER_SECRET must be at least 16 characters",
            ),
            (
                self.tls or bool(self.cluster_secret) or self.no_auth,
                "without TLS, peers need DFS_CLUSTER_SECRET to authenticate each other "
                "(or DFS_NO_AUTH for local development)",
            ),
            (self.token_cache_s >= 0, "DFS_TOKEN_CACHE must not be negative"),
            (self.max_file_size >= 1, "DFS_MAX_FILE_SIZE must be at least 1"),
            (0 <= self.max_metadata_bytes <= MIB, "DFS_MAX_METADATA_BYTES must be between 0 and 1 MiB"),
            (
                self.max_message_bytes == 0 or self.max_message_bytes >= self.chunk_size + 64 * 1024,
                "DFS_MAX_MESSAGE_BYTES must be at least DFS_CHUNK_SIZE + 64 KiB",
            ),
            (self.max_streams_per_client >= 1, "DFS_MAX_STREAMS_PER_CLIENT must be at least 1"),
            (self.max_concurrent_rpcs >= 16, "DFS_MAX_CONCURRENT_RPCS must be at least 16"),
            (self.client_idle_timeout_s > 0, "DFS_CLIENT_IDLE_TIMEOUT must be positive"),
            (self.connection_idle_timeout_s > 0, "DFS_CONNECTION_IDLE_TIMEOUT must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if self.node_id:
            check_node_id(self.node_id)
        check_zone(self.zone)
        for name in ("grpc_addr", "gossip_addr"):
            split_hostport(getattr(self, name), name)
        _ = self.metrics_networks
        if self.s3_addr:
            split_hostport(self.s3_addr, "s3_addr")
        if self.peer_grpc_addr:
            split_hostport(self.peer_grpc_addr, "peer_grpc_addr")
        return self

    @property
    def metrics_networks(self) -> tuple[IPNetwork, ...]:
        """DFS_METRICS_ALLOW parsed: a bare address is a network of one."""
        try:
            return tuple(ipaddress.ip_network(part, strict=False) for part in self.metrics_allow)
        except ValueError as exc:
            raise ConfigError(f"DFS_METRICS_ALLOW: {exc}") from None

    @property
    def message_limit(self) -> int:
        return self.max_message_bytes or max(self.chunk_size + MIB, 8 * MIB)

    @property
    def internal_grpc_addr(self) -> str:
        """Where the mutual-TLS internal service listens (only meaningful with TLS)."""
        if self.peer_grpc_addr:
            return self.peer_grpc_addr
        host, port = split_hostport(self.grpc_addr)
        host = f"[{host}]" if ":" in host else host
        return f"{host}:{port + 100 if port else 0}"


#: What a zone name may be (DFS_ZONE): short and printable, since it travels in every gossip entry and
#: lands in status tables and log lines. Gossip decoding holds other peers' zones to the same rule.
MAX_ZONE_LEN = 32
ZONE_RE = re.compile(rf"[A-Za-z0-9._-]{{0,{MAX_ZONE_LEN}}}")


def check_zone(zone: str) -> str:
    """Returns `zone` or raises ConfigError naming the rule it breaks."""
    if not ZONE_RE.fullmatch(zone):
        raise ConfigError(
            f"DFS_ZONE {zone[:80]!r} is invalid: at most {MAX_ZONE_LEN} characters of letters, digits, "
            "'.', '_' or '-'"
        )
    return zone


def split_hostport(addr: str, what: str = "address") -> tuple[str, int]:
    """Parses HOST:PORT (IPv6 as [::1]:PORT) or raises ConfigError naming the setting."""
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{what}: expected HOST:PORT, got {addr!r}")
    return host.strip("[]"), int(port)


WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})


def own_ip(wildcard: str) -> str:
    """This host's address as its own name resolves (in a container: its network IP), IPv6 for "::".

    The gossip listener bound to "::" accepts IPv6 only, so it must not be advertised by an IPv4 address.
    """
    if wildcard == "::":
        return str(socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET6)[0][4][0])
    return socket.gethostbyname(socket.gethostname())


def advertised(bind_addr: str, explicit: str, resolve: Callable[[str], str] = own_ip) -> str:
    """The HOST:PORT other peers should dial for a listener bound to `bind_addr` (with its real port).

    `explicit` (DFS_ADVERTISE_GRPC / DFS_ADVERTISE_GOSSIP) wins. A wildcard bind host (0.0.0.0 or ::)
    is not dialable from elsewhere, so it is replaced by `resolve(host)`, by default this host's name
    resolved to an IP. If that fails, the bind address is kept (dialable from this host only).
    """
    if explicit:
        return explicit
    host, port = split_hostport(bind_addr)
    if host in WILDCARD_HOSTS:
        try:
            host = resolve(host)
        except OSError:
            pass
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
