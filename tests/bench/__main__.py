"""`python -m tests.bench [--quick] [--only NAME[,NAME]] [--out PATH]`: run the benchmark, print a table
with targets and one JSON document, and write the JSON to bench-results.json (or --out).

Sections: baselines, large_file, concurrency, ring, memory, membership, s3, observability, policies.
Progress goes to stderr, the table and the JSON to stdout. The exit code is 1 when a section failed
to run (and with --strict also when a target was missed), else 0.
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from client.allocator import tune_allocator
from tests.bench import baselines, concurrency, membership, memory, observability, policies, ring, s3, throughput
from tests.bench.common import LoadMonitor, elapsed, kill_all, machine_info, progress, wait_for_quiet
from tests.bench.report import SWIFT, format_table, rows, targets

SECTIONS = ["baselines", "large_file", "concurrency", "ring", "memory", "membership", "s3", "observability",
            "policies"]
# Seconds a full-mode section may take on a busy 2-core machine; a section that would not end within
# --budget is skipped (and reported) rather than letting `make bench` overrun its 10 minutes.
ESTIMATE_S = {"baselines": 35, "large_file": 35, "concurrency": 215, "ring": 8, "memory": 75, "membership": 70,
              "s3": 120, "observability": 150, "policies": 150}
ALIASES = {"throughput": "large_file", "large": "large_file", "baseline": "baselines", "mem": "memory",
           "metrics": "observability"}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a fast check that everything runs")
    parser.add_argument("--only", default="", help=f"comma-separated sections to run: {','.join(SECTIONS)}")
    parser.add_argument("--out", default="bench-results.json", help="where to write the JSON document")
    parser.add_argument("--tmpdir", default=None, help="parent of the temp dir for cluster data (default: system tmp)")
    parser.add_argument("--keep", action="store_true", help="keep cluster data and peer logs after the run")
    parser.add_argument("--client-procs", type=int, default=2, help="client worker processes (default 2)")
    parser.add_argument("--budget", type=float, default=560.0,
                        help="seconds the whole run may take; a section that would end later is skipped (default 560)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when any target is missed")
    parser.add_argument("--quiet-wait", type=float, default=None,
                        help="total seconds the run may wait, before sections, for other processes on the machine "
                             "to go quiet (default 60 in full mode, 0 with --quick)")
    args = parser.parse_args(argv)
    wanted = [ALIASES.get(s.strip(), s.strip()) for s in args.only.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {unknown}; choose from {SECTIONS}")
    args.sections = [s for s in SECTIONS if not wanted or s in wanted]
    return args


def _on_signal(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    # This process is the large-file client (and the client end of the hops): it runs as `dfs` does.
    tune_allocator()
    atexit.register(kill_all)
    signal.signal(signal.SIGTERM, _on_signal)
    work = Path(tempfile.mkdtemp(prefix="dfs-bench-", dir=args.tmpdir))
    started = datetime.datetime.now(datetime.UTC)
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    durations: dict[str, float] = {}
    load: dict[str, dict[str, float]] = {}
    quick = args.quick
    progress(f"{'quick' if quick else 'full'} run of {', '.join(args.sections)}; data under {work}")
    runners: dict[str, Callable[[], Any]] = {
        "baselines": lambda: baselines.run(work / "baselines", quick),
        "large_file": lambda: throughput.run(work / "large_file", quick),
        "concurrency": lambda: concurrency.run(work / "concurrency", quick, args.client_procs),
        "ring": lambda: ring.run(quick),
        "memory": lambda: memory.run(work / "memory", quick, args.client_procs),
        "membership": lambda: membership.run(work / "membership", quick),
        "s3": lambda: s3.run(work / "s3", quick, args.client_procs),
        "observability": lambda: observability.run(work / "observability", quick, args.client_procs),
        "policies": lambda: policies.run(work / "policies", quick),
    }
    interrupted = False
    quiet_budget = args.quiet_wait if args.quiet_wait is not None else (0.0 if quick else 60.0)
    waits: dict[str, dict[str, float]] = {}
    try:
        for name in args.sections:
            estimate = 0.0 if quick else sum(ESTIMATE_S[s] for s in args.sections[args.sections.index(name):])
            spare = args.budget - elapsed() - estimate
            if quiet_budget > 0 and spare > 0:
                waits[name] = wait_for_quiet(min(quiet_budget, spare))
                quiet_budget -= waits[name]["waited_s"]
            if not quick and elapsed() + ESTIMATE_S[name] > args.budget:
                errors[name] = f"skipped: it would not end within the time budget of {args.budget:.0f} s"
                progress(f"{name}: {errors[name]}")
                continue
            progress(f"== {name}")
            t = time.monotonic()
            monitor = LoadMonitor()
            try:
                with monitor:
                    results[name] = runners[name]()
            except Exception as exc:  # noqa: BLE001 - one failed section must not hide the others
                errors[name] = f"{type(exc).__name__}: {exc}"
                progress(f"{name} FAILED: {errors[name]}")
                traceback.print_exc(file=sys.stderr)
            finally:
                kill_all()
                durations[name] = round(time.monotonic() - t, 1)
                load[name] = monitor.result
                progress(f"{name} took {durations[name]} s; machine busy {monitor.result.get('machine_busy_pct')}% "
                         f"of {os.cpu_count()} cores x 100, of which other processes "
                         f"{monitor.result.get('other_processes_pct')}%")
    except KeyboardInterrupt as exc:
        interrupted = True
        errors["interrupted"] = str(exc) or "KeyboardInterrupt"
        progress(f"interrupted: {errors['interrupted']}")
    finally:
        kill_all()
        if args.keep:
            progress(f"cluster data and logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    table = rows({**results, "errors": errors, "machine_load": load})
    doc = {
        "schema": 1,
        "mode": "quick" if quick else "full",
        "sections": args.sections,
        "started_at": started.isoformat(timespec="seconds"),
        "duration_s": round(elapsed(), 1),
        "section_durations_s": durations,
        "machine_load": load,
        "quiet_waits": waits,
        "machine": machine_info(),
        "units": {"MB/s": "10^6 bytes per second", "latency": "milliseconds, per whole upload or download"},
        "results": results,
        "targets": targets(table),
        "summary": {
            "pass": sum(r.status == "PASS" for r in table),
            "miss": sum(r.status == "MISS" for r in table),
        },
        "comparison": SWIFT,
        "errors": errors,
    }
    text = json.dumps(doc, indent=2, sort_keys=False)
    print(format_table(table))
    print()
    print(f"Reference: {SWIFT['version']}: PUT {SWIFT['put_mb_s']} MB/s, GET {SWIFT['get_mb_s']} MB/s, "
          f"{SWIFT['uploads_per_s_20c_64k']} uploads/s and {SWIFT['downloads_per_s_20c_64k']} downloads/s "
          f"at 20 clients (64 KiB).")
    print()
    print(text)
    Path(args.out).write_text(text + "\n")
    progress(f"done in {elapsed():.1f} s; JSON written to {args.out}")
    if interrupted or errors:
        return 1
    return 1 if args.strict and doc["summary"]["miss"] else 0


if __name__ == "__main__":
    sys.exit(main())
