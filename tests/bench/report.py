"""Turns section results into table rows with targets (PASS/MISS) and the Swift reference figures."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from tests.bench.common import KIB, MIB

SWIFT = {
    "version": "Swift 2.38",
    "put_mb_s": "250-270",
    "get_mb_s": "290-320",
    "uploads_per_s_20c_64k": 127,
    "downloads_per_s_20c_64k": 334,
}

SWIFT_S3_VERSION = "Swift 2.38 s3api, boto3, R=2, 2 cores"
SWIFT_S3: dict[str, tuple[int, int]] = {
    "put_mb_s": (154, 177),
    "get_mb_s": (279, 285),
    "put_4k_ops_s": (57, 78),
    "get_4k_ops_s": (122, 188),
}
# One loopback hop of 256 MiB in 1 MiB pieces, sender + receiver CPU, measured earlier on the 2-core
# reference machine: (MB/s, ms CPU per MiB).
HOP_REFERENCE = {
    "grpc_aio": (741, 2.46),
    "aiohttp": (1861, 0.82),
    "asyncio": (3736, 0.47),
}
# CPU ms per MiB of every process together (3 peers R=2 and the client) for the large file.
LARGE_CPU_TARGETS = {"upload": 6.0, "download": 3.5}
LEAD = 1.2
"""How far the S3 endpoint should lead each Swift s3api reference (the top of its range)."""


@dataclass
class Row:
    section: str
    metric: str
    value: str
    target: str = ""
    status: str = ""  # PASS, MISS, n/a or ""
    reference: str = ""


def _check(ok: bool | None) -> str:
    if ok is None:
        return "n/a"
    return "PASS" if ok else "MISS"


def _size(size: int) -> str:
    return f"{size // KIB} KiB" if size < MIB else f"{size // MIB} MiB"


def rows(results: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    errors = results.get("errors", {})
    base = results.get("baselines", {})
    g, d = base.get("grpc"), base.get("disk")
    if g:
        mib = g["bytes"] // MIB
        out.append(Row("baselines", f"raw gRPC upload, 1 stream, {mib} MiB", f"{g['upload_mb_s']:.1f} MB/s"))
        out.append(Row("baselines", f"raw gRPC download, 1 stream, {mib} MiB", f"{g['download_mb_s']:.1f} MB/s"))
    if d:
        out.append(Row("baselines", "disk write, 1 MiB chunk files (chunk-store recipe)",
                       f"{d['write_mb_s']:.1f} MB/s"))
        out.append(Row("baselines", "disk write, same, 2 writers at once", f"{d['write_2_writers_mb_s']:.1f} MB/s"))
        out.append(Row("baselines", "upload ceiling set by the disk (R=2: 2 writes/byte)",
                       f"{d['r2_upload_ceiling_mb_s']:.1f} MB/s"))
        out.append(Row("baselines", "disk read, same files (chunk-store recipe)", f"{d['read_mb_s']:.1f} MB/s"))
    hops = base.get("hops")
    if hops:
        for key, hop in hops["hops"].items():
            ref = HOP_REFERENCE.get(key)
            out.append(Row(
                "baselines", f"hop: {hop['label']}",
                f"{hop['mb_s']:.1f} MB/s, {hop['cpu_ms_per_mib']:.2f} ms CPU per MiB (both ends)",
                reference=f"earlier here: {ref[0]} MB/s, {ref[1]} ms" if ref else ""))
    h, floors = base.get("hashing"), base.get("floors")
    if h:
        out.append(Row("baselines", "SHA-256, one thread, 1 MiB pieces",
                       f"{h['sha256_mb_s']:.1f} MB/s ({h['sha256_ms_per_mib']:.2f} ms CPU per MiB)"))
        out.append(Row("baselines", "XXH3-64 (replicas' transfer check), same",
                       f"{h['xxh3_64_mb_s']:.1f} MB/s ({h['xxh3_64_ms_per_mib']:.3f} ms CPU per MiB)"))
    if floors:
        for way in ("upload", "download"):
            f = floors[way]
            peer_hop = "chunk-stream PUT" if way == "upload" else "chunk-stream GET"
            metric = (f"{way} CPU floor: {f['client_hops']:.0f} gRPC hop + {f['peer_hops']:.2f} {peer_hop} hops"
                      f" + {f['sha256_passes']:.0f} SHA-256 passes")
            value = (f"{f['floor_ms_per_mib']:.2f} ms per MiB -> at most {f['ceiling_mb_s']:.0f} MB/s"
                     f" on {floors['cores']} cores")
            out.append(Row("baselines", metric, value))

    large = results.get("large_file")
    if large:
        mib = large["bytes"] // MIB
        up_ratio = down_ratio = None
        if g:
            up_ratio = large["upload_mb_s"] / g["upload_mb_s"]
            down_ratio = large["download_mb_s"] / g["download_mb_s"]
        out.append(Row(
            "large file", f"upload {mib} MiB, 3 peers R=2", f"{large['upload_mb_s']:.1f} MB/s"
            + (f" ({up_ratio:.0%} of gRPC)" if up_ratio is not None else ""),
            ">= 50% of raw gRPC upload", _check(None if up_ratio is None else up_ratio >= 0.5),
            f"{SWIFT['version']} PUT {SWIFT['put_mb_s']} MB/s"))
        out.append(Row(
            "large file", f"download {mib} MiB (sha256 {'ok' if large['sha256_verified'] else 'BAD'})",
            f"{large['download_mb_s']:.1f} MB/s" + (f" ({down_ratio:.0%} of gRPC)" if down_ratio is not None else ""),
            ">= 80% of raw gRPC download", _check(None if down_ratio is None else down_ratio >= 0.8),
            f"{SWIFT['version']} GET {SWIFT['get_mb_s']} MB/s"))
        for way, goal in LARGE_CPU_TARGETS.items():
            ms = large.get(f"cpu_ms_per_mib_{way}")
            if ms is None:
                continue
            out.append(Row(
                "large file", f"{way} {mib} MiB CPU, all processes",
                f"{ms:.2f} ms per MiB ({_floor(floors, large, way)})", f"<= {goal:g} ms per MiB", _check(ms <= goal)))

    conc = results.get("concurrency")
    if conc:
        for run in conc["runs"]:
            c, size = run["clients"], run["size"]
            up, down = run["upload"], run["download"]
            is_20_64k = c == 20 and size == 64 * KIB
            prefix = f"{c} clients x {_size(size)}"
            out.append(Row(
                "concurrency", f"{prefix} upload ({up['ops']} ops)",
                f"{up['ops_per_s']:.1f} ops/s, p50 {up['p50_ms']:.1f} ms, p99 {up['p99_ms']:.1f} ms",
                ">= 300 uploads/s" if is_20_64k else "", _check(up["ops_per_s"] >= 300) if is_20_64k else "",
                f"Swift {SWIFT['uploads_per_s_20c_64k']} uploads/s" if is_20_64k else ""))
            out.append(Row(
                "concurrency", f"{prefix} download ({down['ops']} ops)",
                f"{down['ops_per_s']:.1f} ops/s, p50 {down['p50_ms']:.1f} ms, p99 {down['p99_ms']:.1f} ms",
                ">= 600 downloads/s, p99 < 100 ms" if is_20_64k else "",
                _check(down["ops_per_s"] >= 600 and down["p99_ms"] < 100) if is_20_64k else "",
                f"Swift {SWIFT['downloads_per_s_20c_64k']} downloads/s" if is_20_64k else ""))
            errs = up["errors"] + down["errors"]
            incomplete = up["hit_deadline"] or down["hit_deadline"]
            out.append(Row(
                "concurrency", f"{prefix} errors", f"{errs}" + (" (time limit hit)" if incomplete else ""),
                "0 errors", _check(errs == 0)))
        for label, cal in conc.get("calibration", {}).items():
            up, down = cal["upload"], cal["download"]
            out.append(Row(
                "concurrency", f"calibration 20 x 64 KiB, clients in {label.replace('_', ' ')}",
                f"up {up['ops_per_s']:.0f}/s, down {down['ops_per_s']:.0f}/s, client CPU "
                f"{up['client_worker_cpu_pct']}/{down['client_worker_cpu_pct']} %"))

    ring = results.get("ring")
    if ring:
        for peers in (3, 100):
            r = ring[f"peers_{peers}"]
            out.append(Row(
                "ring", f"owners(key, 2), {peers} peers x {ring['vnodes']} vnodes",
                f"{r['lookup_ns_best']:.0f} ns/op CPU ({r.get('lookup_wall_ns_best', 0):.0f} wall)",
                "<= 1 us" if peers == 100 else "", _check(r["lookup_ns_best"] <= 1000) if peers == 100 else ""))
        r = ring["peers_100"]
        out.append(Row("ring", "build, 100 peers (+ first lookup builds owner table)",
                       f"{r['build_ms']:.1f} ms (+{r['first_lookup_ms']:.1f} ms)"))

    mem = results.get("memory")
    if mem:
        for key, label in (("big_upload", None), ("concurrent_uploads", None)):
            m = mem.get(key)
            if not m:
                continue
            if key == "big_upload":
                label = f"peak RSS per peer, {m['bytes'] // MIB} MiB upload"
            else:
                label = f"peak RSS per peer, {m['clients']} concurrent {_size(m['size'])} uploads"
            peaks = [p["vmhwm_mib"] for p in m["peers"]]
            out.append(Row("memory", label, " / ".join(f"{p:.0f}" for p in peaks) + " MiB",
                           f"<= {mem['limit_mib']} MiB each", _check(max(peaks) <= mem["limit_mib"])))
        many = mem.get("concurrent_uploads")
        if many:
            out.append(Row("memory", "concurrent uploads errors", str(many["uploads"]["errors"]), "0 errors",
                           _check(many["uploads"]["errors"] == 0)))

    memb = results.get("membership")
    if memb:
        n = memb["peers"]
        out.append(Row(
            "membership", f"{n} peers agree on one ring digest",
            f"{memb['agree_s_from_last_start']:.2f} s after last start "
            f"({memb['agree_s_from_last_ready']:.2f} s after ready)",
            "<= 5 s" if n == 20 else "", _check(memb["agree_s_from_last_start"] <= 5) if n == 20 else "n/a"))
        dead = memb["dead_by_all_s"]
        out.append(Row(
            "membership", "SIGKILLed peer marked dead by all survivors",
            f"{dead:.2f} s" if dead is not None
            else f"not all ({memb['survivors_reporting_dead']}/{memb['survivors']})",
            "<= 10 s", _check(dead is not None and dead <= 10)))

    out += _s3_rows(results.get("s3"))
    out += _observability_rows(results.get("observability"))
    out += _policy_rows(results.get("policies"))

    for section, load in results.get("machine_load", {}).items():
        if load and load.get("other_processes_pct", 0) >= 20:
            out.append(Row(section.replace("_", " "), "WARNING: other processes were busy",
                           f"{load['other_processes_pct']:.0f}% of a core on average (machine busy "
                           f"{load['machine_busy_pct']:.0f}% of {load['cores'] * 100}%)"))
    for section, message in errors.items():
        out.append(Row(section, "SECTION FAILED", message[:100], "", "MISS"))
    return out


def _floor(floors: dict[str, Any] | None, large: dict[str, Any], way: str) -> str:
    """The baselines' CPU floor for `way`, for the peer-to-peer hop the large-file run used."""
    if not floors:
        return "floor n/a: baselines not run"
    f = floors[way]
    if large.get("peer_hop") == "grpc":
        return f"floor {f['floor_ms_per_mib_grpc_peers']:.2f}, peers copied over gRPC"
    return f"floor {f['floor_ms_per_mib']:.2f}"


def _s3_rows(s3: dict[str, Any] | None) -> list[Row]:
    """The S3 endpoint's figures, each beside the gRPC path's figure from the same run."""
    if not s3:
        return []
    out: list[Row] = []

    def ref(key: str, unit: str) -> str:
        low, high = SWIFT_S3[key]
        return f"Swift s3api {low}-{high} {unit} (x{LEAD}: {high * LEAD:.0f})"

    large = s3.get("large")
    if large:
        mib = large["bytes"] // MIB
        for verb, key in (("PUT", "put_mb_s"), ("GET", "get_mb_s")):
            value, grpc = large[f"s3_{key}"], large[f"grpc_{key}"]
            ratio = value / grpc if grpc else None
            out.append(Row(
                "s3", f"boto3 {verb} {mib} MiB, 3 peers R=2",
                f"{value:.1f} MB/s" + (f" ({ratio:.0%} of gRPC {grpc:.1f} MB/s)" if ratio is not None else ""),
                ">= 85% of gRPC", _check(None if ratio is None else ratio >= 0.85), ref(key, "MB/s")))
    conc = s3.get("concurrent")
    if conc:
        prefix = f"{conc['clients']} clients x {_size(conc['size'])}"
        for verb in ("put", "get"):
            m, g = conc["s3"][verb], conc["grpc"][verb]
            ratio = m["ops_per_s"] / g["ops_per_s"] if g["ops_per_s"] else None
            targeted = conc["clients"] == 20  # the target is stated for 20 clients
            out.append(Row(
                "s3", f"{prefix} {verb.upper()} ({m['ops']} ops)",
                f"{m['ops_per_s']:.1f} ops/s, p50 {m['p50_ms']:.1f} ms, p99 {m['p99_ms']:.1f} ms"
                + (f" ({ratio:.0%} of gRPC {g['ops_per_s']:.1f} ops/s)" if ratio is not None else ""),
                ">= 70% of gRPC" if targeted else "", _check(None if ratio is None or not targeted else ratio >= 0.7)))
        errs = sum(conc[path][verb]["errors"] for path in ("s3", "grpc") for verb in ("put", "get"))
        cut = any(conc[path][verb]["hit_deadline"] for path in ("s3", "grpc") for verb in ("put", "get"))
        out.append(Row("s3", f"{prefix} errors (S3 and gRPC)", f"{errs}" + (" (time limit hit)" if cut else ""),
                       "0 errors", _check(errs == 0)))
    single = s3.get("single_client")
    if single:
        for verb, key in (("put", "put_4k_ops_s"), ("get", "get_4k_ops_s")):
            m, g = single["s3"][verb], single["grpc"][verb]
            goal = SWIFT_S3[key][1] * LEAD
            out.append(Row(
                "s3", f"1 client x {_size(single['size'])} {verb.upper()} ({m['ops']} ops, {m['errors']} errors)",
                f"{m['ops_per_s']:.1f} ops/s, p50 {m['p50_ms']:.1f} ms (gRPC {g['ops_per_s']:.1f} ops/s)",
                f">= {goal:.0f} ops/s", _check(m["ops_per_s"] >= goal and m["errors"] == 0), ref(key, "ops/s")))
    listing = s3.get("listing")
    if listing:
        out.append(Row(
            "s3", f"ListObjectsV2, {listing['keys']:,} keys, {listing['page_size']} per page",
            f"{listing['keys_per_s']:.0f} keys/s ({listing['seconds']:.1f} s)"))
        out.append(Row(
            "s3", "RSS of the listing peer",
            f"{listing['peer_rss_before_mib']:.0f} MiB before, at most {listing['peer_max_rss_mib']:.0f} MiB "
            "while listing"))
    return out


OBSERVABILITY_MAX_COST_PCT = 3.0
"""How much slower the defaults (request metrics and access log on) may be than both off."""


def _slower(cost_pct: float) -> str:
    return f"on {abs(cost_pct):.1f}% {'slower' if cost_pct >= 0 else 'faster'}"


def _observability_rows(obs: dict[str, Any] | None) -> list[Row]:
    """Each row with metrics and access log on beside the same row with both off, from the same run."""
    if not obs:
        return []
    on, off, cost = obs["best"]["on"], obs["best"]["off"], obs["cost_pct"]
    target = f"on < {OBSERVABILITY_MAX_COST_PCT:g}% slower"
    prefix = f"{obs['clients']} clients x {_size(obs['size'])}"
    out: list[Row] = []
    for kind in ("upload", "download"):
        key = f"{kind}_ops_s"
        out.append(Row(
            "observability", f"{prefix} {kind}, metrics+access log on / off",
            f"{on[key]:.1f} / {off[key]:.1f} ops/s ({_slower(cost[key])}); peer CPU "
            f"{on[f'{kind}_peer_cpu_ms_per_op']:.2f} / {off[f'{kind}_peer_cpu_ms_per_op']:.2f} ms per op",
            target, _check(cost[key] < OBSERVABILITY_MAX_COST_PCT)))
    mib = obs["bytes"] // MIB
    for kind in ("upload", "download"):
        key, cpu = f"large_{kind}_mb_s", f"large_{kind}_peer_cpu_ms_per_mib"
        out.append(Row(
            "observability", f"{kind} {mib} MiB, metrics+access log on / off",
            f"{on[key]:.1f} / {off[key]:.1f} MB/s ({_slower(cost[key])}); peer CPU "
            f"{on[cpu]:.2f} / {off[cpu]:.2f} ms per MiB",
            target, _check(cost[key] < OBSERVABILITY_MAX_COST_PCT)))
    return out


EC_MAX_GAP_PCT = 15.0


def _policy_rows(pol: dict[str, Any] | None) -> list[Row]:
    """Each policy's MB/s, storage cost and degraded read; ec:4+2 against rep:2 from the same run."""
    if not pol:
        return []
    mib = pol["bytes"] // MIB
    out: list[Row] = []
    for name, p in pol["policies"].items():
        deg = p.get("degraded", {})
        out.append(Row(
            "policies", f"{name}: {mib} MiB up / down, disk per byte, degraded down",
            f"{p['upload_mb_s']:.1f} / {p['download_mb_s']:.1f} MB/s, {p['disk_per_byte']:.2f}x, "
            f"{deg.get('download_mb_s', 0):.1f} MB/s with {deg.get('peers_down', 0)} peers down"))
    gap = pol.get("ec42_vs_rep2_pct")
    if gap:
        for kind in ("upload_mb_s", "download_mb_s"):
            out.append(Row("policies", f"ec:4+2 {kind.split('_')[0]} vs rep:2", f"{gap[kind]:.1f}%",
                           f">= {100 - EC_MAX_GAP_PCT:g}%", _check(gap[kind] >= 100 - EC_MAX_GAP_PCT)))
    restore = pol.get("restore_after_losing_a_peer")
    if restore:
        out.append(Row("policies", "full redundancy restored after losing a peer",
                       f"{restore['seconds']:.1f} s for {restore['held_mib']:.0f} MiB held "
                       f"({restore['s_per_gib_held']:.1f} s per GiB, dead grace {restore['includes_dead_grace_s']:g} s "
                       "included)"))
    return out


def format_table(table: list[Row]) -> str:
    headers = Row("section", "metric", "value", "target", "status", "reference")
    cols = list(asdict(headers))
    widths = {c: max(len(str(getattr(r, c))) for r in [headers, *table]) for c in cols}
    lines = []
    for i, r in enumerate([headers, *table]):
        lines.append("  ".join(str(getattr(r, c)).ljust(widths[c]) for c in cols).rstrip())
        if i == 0:
            lines.append("  ".join("-" * widths[c] for c in cols))
    return "\n".join(lines)


def targets(table: list[Row]) -> list[dict[str, str]]:
    return [asdict(r) for r in table if r.status]
