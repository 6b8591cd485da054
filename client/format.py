"""Human-readable rendering for the CLI: sizes, times and aligned tables. Pure functions, no I/O."""

from __future__ import annotations

import time
from collections.abc import Sequence

from client.models import (
    BucketInfo,
    ClusterStatus,
    MemberStatus,
    S3KeyInfo,
    TokenInfo,
    VersionInfo,
    WorkerStatus,
)
from client.profiles import Profile

_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def human_size(num_bytes: int) -> str:
    """Binary units with one decimal ("1.5 MiB"); plain bytes below 1 KiB ("512 B")."""
    if abs(num_bytes) < 1024:
        return f"{num_bytes} B"
    value = float(num_bytes)
    for unit in _UNITS:
        value /= 1024
        # Round before comparing so 1048575 bytes reads "1.0 MiB", not "1024.0 KiB".
        if abs(round(value, 1)) < 1024 or unit == _UNITS[-1]:
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def plural(count: int, noun: str) -> str:
    """The count and its noun, plural unless the count is exactly one: "1 file", "3 files"."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def human_time(epoch_s: float) -> str:
    """Local time to the second; "-" for an unset (zero) timestamp."""
    if epoch_s <= 0:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch_s))


def short_id(node_id: str, width: int = 12) -> str:
    return node_id if len(node_id) <= width else node_id[:width]


def table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], right: frozenset[int] = frozenset()
) -> str:
    """Columns separated by two spaces, padded to the widest cell; `right` lists right-aligned columns."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def files_table(files: Sequence[VersionInfo]) -> str:
    rows = [(f.name, f.version, human_size(f.size), human_time(f.created_at), f.file_id) for f in files]
    return table(("NAME", "VERSION", "SIZE", "CREATED", "FILE ID"), rows, right=frozenset({1, 2}))


def prefix_lines(prefixes: Sequence[str]) -> str:
    """The folders of a listing, one "PRE  name/" line each, as `aws s3 ls` shows them."""
    return "\n".join(f"PRE  {p}" for p in prefixes)


def profiles_table(profiles: Sequence[Profile], active: str | None = None) -> str:
    """Saved profiles, the active one marked "*"; the token is shown only as the file that holds it."""
    rows = [
        (p.name + (" *" if p.name == active else ""), p.peer, p.tls_ca or "-", p.token_file or "-") for p in profiles
    ]
    return table(("NAME", "PEER", "TLS CA", "TOKEN FILE"), rows)


def versions_table(versions: Sequence[VersionInfo]) -> str:
    """One row per version; a delete marker shows "(delete marker)" in place of its size and digest."""
    rows = [
        (
            v.version,
            "*" if v.latest else "",
            "-" if v.delete_marker else human_size(v.size),
            human_time(v.created_at),
            v.version_id,
            "(delete marker)" if v.delete_marker else v.sha256[:16],
        )
        for v in versions
    ]
    headers = ("VERSION", "LATEST", "SIZE", "CREATED", "VERSION ID", "SHA256")
    return table(headers, rows, right=frozenset({0, 2}))


def version_details(info: VersionInfo, max_chunks: int = 20) -> str:
    """Every field of a version, then one line per chunk (the first `max_chunks` of them)."""
    metadata = ", ".join(f"{k}={v}" for k, v in sorted(info.metadata.items())) or "-"
    fields = [
        ("name", info.name),
        ("file id", info.file_id),
        ("version", f"{info.version}{' (latest)' if info.latest else ''}"),
        ("version id", info.version_id),
        ("size", f"{human_size(info.size)} ({info.size} bytes)"),
        ("sha256", info.sha256),
        ("content type", info.content_type or "-"),
        ("policy", info.policy or "cluster default"),
        ("created", human_time(info.created_at)),
        ("metadata", metadata),
        ("chunks", str(info.chunk_count)),
    ]
    lines = [key_values(fields)]
    if info.chunks:
        shown = info.chunks[:max_chunks]
        rows = [
            (i, short_id(c.chunk_id, 16), human_size(c.size), ", ".join(short_id(p) for p in c.peers) or "-")
            for i, c in enumerate(shown)
        ]
        lines.append(_indent(table(("#", "CHUNK ID", "SIZE", "PEERS"), rows, right=frozenset({0, 2}))))
        if len(info.chunks) > max_chunks:
            lines.append(f"  ... and {len(info.chunks) - max_chunks} more chunks")
    return "\n".join(lines)


def cluster_details(status: ClusterStatus) -> str:
    health = "healthy" if status.metadata_healthy else f"UNHEALTHY: {status.metadata_error or 'no detail'}"
    summary = [
        ("peer", f"{status.node_id} (answering)"),
        (
            "ring",
            f"{status.ring_digest or '-'} (replicas {status.replicas}, vnodes {status.vnodes},"
            f" chunk size {human_size(status.chunk_size)})",
        ),
        ("policy", f"{status.default_policy or f'rep:{status.replicas}'} (the cluster's default)"),
        ("metadata", f"{status.metadata_backend or '-'}: {health}"),
    ]
    rows = [
        (
            short_id(m.node_id) + (" *" if m.node_id == status.node_id else ""),
            m.state,
            m.zone or "-",
            m.grpc_addr or "-",
            m.gossip_addr or "-",
            "yes" if m.on_ring else "no",
            m.chunk_count,
            human_size(m.chunk_bytes),
            f"{m.last_seen_s:.1f}s",
        )
        for m in sorted(status.members, key=lambda m: m.node_id)
    ]
    headers = ("NODE", "STATE", "ZONE", "GRPC", "GOSSIP", "RING", "CHUNKS", "BYTES", "LAST SEEN")
    members = table(headers, rows, right=frozenset({6, 7, 8}))
    return "\n\n".join([
        key_values(summary),
        members,
        "repair (each member's own counters)\n" + repair_table(status),
        "workers (each member's background work)\n" + workers_table(status),
    ])  # fmt: skip


_REPAIR_HEADERS = (
    "NODE", "HELD", "UNDER-REPL", "MISPLACED", "REPAIRED", "HANDED OFF",
    "SCRUB PASSES", "THIS PASS", "CORRUPT", "GC DELETED", "LAST SYNC",
)  # fmt: skip


def repair_table(status: ClusterStatus) -> str:
    """One row of self-healing counters per member; "-" for a member that did not report them."""
    rows = [_repair_row(m, m.node_id == status.node_id) for m in sorted(status.members, key=lambda m: m.node_id)]
    return table(_REPAIR_HEADERS, rows, right=frozenset(range(1, len(_REPAIR_HEADERS))))


def _repair_row(member: MemberStatus, answering: bool) -> tuple[object, ...]:
    node = short_id(member.node_id) + (" *" if answering else "")
    s = member.stats
    if s is None:
        return (node, *["-"] * (len(_REPAIR_HEADERS) - 1))
    last_sync = "never" if s.last_sync_s < 0 else f"{s.last_sync_s:.1f}s ago"
    return (
        node,
        s.chunk_count,
        s.under_replicated,
        s.misplaced,
        s.repaired,
        s.handed_off,
        s.scrub_passes,
        human_size(s.scrubbed_bytes),
        s.corrupt_found,
        s.gc_deleted,
        last_sync,
    )


_WORKER_HEADERS = ("NODE", "WORKER", "STATE", "RUNS", "ERRORS", "LAST RUN", "LAST ERROR")
ERROR_WIDTH = 60  # of a worker's last error in the table; --json carries all of it


def workers_table(status: ClusterStatus) -> str:
    """One row per background worker of each member; one "-" row for a member that did not report them."""
    rows: list[tuple[object, ...]] = []
    for m in sorted(status.members, key=lambda m: m.node_id):
        node = short_id(m.node_id) + (" *" if m.node_id == status.node_id else "")
        if not m.workers:
            rows.append((node, *["-"] * (len(_WORKER_HEADERS) - 1)))
        rows.extend((node, *_worker_cells(w)) for w in m.workers)
    return table(_WORKER_HEADERS, rows, right=frozenset({3, 4, 5}))


def _worker_cells(w: WorkerStatus) -> tuple[object, ...]:
    last_run = "never" if w.last_run_s < 0 else f"{w.last_run_s:.1f}s ago"
    first_line = w.last_error.splitlines()[0] if w.last_error else ""
    last_error = "-" if not first_line else f"{w.last_error_s:.0f}s ago: {first_line[:ERROR_WIDTH]}"
    return (w.name, w.state, w.runs, w.errors, last_run, last_error)


def tokens_table(tokens: Sequence[TokenInfo]) -> str:
    rows = [
        (t.token_id, t.role, t.name or "-", human_time(t.created_at), human_time(t.revoked_at or 0))
        for t in tokens
    ]
    return table(("ID", "ROLE", "NAME", "CREATED", "REVOKED"), rows)


def s3_keys_table(keys: Sequence[S3KeyInfo]) -> str:
    rows = [
        (k.access_key_id, k.role, k.name or "-", human_time(k.created_at), human_time(k.revoked_at or 0))
        for k in keys
    ]
    return table(("ACCESS KEY ID", "ROLE", "NAME", "CREATED", "REVOKED"), rows)


def buckets_table(buckets: Sequence[BucketInfo]) -> str:
    rows = [
        (b.name, b.policy or "cluster default", b.versioning or "-", human_time(b.created_at)) for b in buckets
    ]
    return table(("BUCKET", "POLICY", "VERSIONING", "CREATED"), rows)


def token_details(info: TokenInfo) -> str:
    """whoami: the caller's token as the peer sees it."""
    return key_values(
        [
            ("token id", info.token_id or "- (the peer runs without authentication)"),
            ("role", info.role or "-"),
            ("name", info.name or "-"),
            ("created", human_time(info.created_at)),
            ("revoked", human_time(info.revoked_at or 0)),
        ]
    )


def key_values(pairs: Sequence[tuple[str, str]]) -> str:
    """One "key  value" line per pair, values aligned."""
    width = max((len(k) for k, _ in pairs), default=0)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in pairs)


def _indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())
