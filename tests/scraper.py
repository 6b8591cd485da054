"""Scrapes GET /metrics of every running peer of a cluster, periodically, and checks each answer.

What must hold for every scrape a peer answers with 200: the body parses with prometheus_client's
own parser; the core families are there (requests, chunks stored, members by state,
under-replication); and no counter sample (counters, and a histogram's buckets, count and sum) is
lower than in the previous scrape of the same peer process. A restarted peer is a new process with a
new pid, whose counters start again from 0, so the comparison is per pid.

What is expected and only counted: a peer that does not answer. Under chaos, peers are SIGKILLed
(connection refused), SIGSTOPped (timeout) or stopping; scrapes use a short timeout so a paused
peer delays a round by that much and no more. An answer is attributed to a process only when the
peer's pid and address were the same before and after the request (a restart during it is skipped).

The peers are reached as a scraper on their own host would be: from 127.0.0.1, which the default
`--metrics-allow` admits without a token (and the test clusters run with --no-auth anyway).
"""

from __future__ import annotations

import http.client
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from tests.cluster import PeerProc

CORE_FAMILIES = {  # as the parser names them (a counter without its `_total`), with their types
    "dfs_requests": "counter",
    "dfs_chunks_stored": "gauge",
    "dfs_members": "gauge",
    "dfs_under_replicated_chunks": "gauge",
}
MEMBER_STATES = {"alive", "suspect", "dead", "left"}
MONOTONIC_TYPES = {"counter", "histogram"}
Key = tuple[str, tuple[tuple[str, str], ...]]
"""A sample: its name and sorted labels."""


def check_exposition(body: str) -> dict[Key, float]:
    """The monotonic samples of one exposition; AssertionError when it does not parse or lacks a core family."""
    try:
        families = list(text_string_to_metric_families(body))
    except Exception as exc:  # noqa: BLE001 - the parser raises ValueError and others; all are failures
        raise AssertionError(f"does not parse: {type(exc).__name__}: {exc}") from exc
    types = {f.name: f.type for f in families}
    missing = {name: kind for name, kind in CORE_FAMILIES.items() if types.get(name) != kind}
    if missing:
        raise AssertionError(f"core families missing or of another type: {missing}")
    states = {s.labels.get("state") for f in families if f.name == "dfs_members" for s in f.samples}
    if states != MEMBER_STATES:
        raise AssertionError(f"dfs_members lists states {sorted(map(str, states))}")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families if f.type in MONOTONIC_TYPES
        for s in f.samples
    }


def went_back(before: dict[Key, float], after: dict[Key, float]) -> list[str]:
    """The samples lower in `after` than in `before` (a sample absent from either is not compared)."""
    return [f"{name}{dict(labels)} {before[(name, labels)]:g} -> {value:g}"
            for (name, labels), value in after.items()
            if (name, labels) in before and value < before[(name, labels)]]


@dataclass
class ScrapeStats:
    parsed: Counter[int] = field(default_factory=Counter)
    """Scrapes answered, parsed and checked, by peer index."""
    unanswered: int = 0
    """Scrapes of running peers that got no answer in time (killed, paused, stopping)."""
    statuses: Counter[int] = field(default_factory=Counter)
    """Answers other than 200, by HTTP status (a peer stopping may give one)."""
    processes: int = 0
    """Peer processes scraped at least once (a restart counts as a new one)."""

    def describe(self) -> str:
        return (f"{sum(self.parsed.values())} parsed from {len(self.parsed)} peers ({self.processes} processes), "
                f"{self.unanswered} unanswered (peers down, paused or stopping)"
                + (f", other answers {dict(self.statuses)}" if self.statuses else ""))


class MetricsScraper:
    """A background thread that scrapes `peers()` every `interval_s` until stopped; `on_problem(message)`
    hears of each check that failed (the scraper carries on)."""

    def __init__(self, peers: Callable[[], Iterable[PeerProc]], on_problem: Callable[[str], None],
                 interval_s: float = 1.0, timeout_s: float = 2.0) -> None:
        self._peers = peers
        self._on_problem = on_problem
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._last: dict[int, dict[Key, float]] = {}  # by pid
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-scraper", daemon=True)
        self.stats = ScrapeStats()

    def __enter__(self) -> MetricsScraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self._timeout_s * 10)

    def _run(self) -> None:
        while not self._stop.is_set():
            for peer in list(self._peers()):
                if self._stop.is_set():
                    return
                if peer.running and peer.gossip_addr:
                    try:
                        self.scrape(peer)
                    except Exception as exc:  # noqa: BLE001 - reported, and the scraping goes on
                        self._on_problem(f"scraping peer{peer.index} failed: {type(exc).__name__}: {exc}")
            self._stop.wait(self._interval_s)

    def scrape(self, peer: PeerProc) -> None:
        pid, addr = _pid(peer), peer.gossip_addr
        status, body = self._get(addr)
        if pid is None or (_pid(peer), peer.gossip_addr) != (pid, addr):
            return  # restarted meanwhile: the answer may be either process's
        if status is None:
            self.stats.unanswered += 1
            return
        if status != 200:
            self.stats.statuses[status] += 1
            return
        try:
            samples = check_exposition(body)
        except AssertionError as exc:
            self._on_problem(f"GET /metrics of peer{peer.index} (pid {pid}): {exc}")
            return
        previous = self._last.get(pid)
        if previous is None:
            self.stats.processes += 1
        else:
            back = went_back(previous, samples)
            if back:
                self._on_problem(f"counters of peer{peer.index} (pid {pid}) went backwards: {back[:5]}")
        self._last[pid] = samples
        self.stats.parsed[peer.index] += 1

    def _get(self, addr: str) -> tuple[int | None, str]:
        """(HTTP status, body); (None, "") when the peer gave no whole answer in time."""
        try:
            with urllib.request.urlopen(f"http://{addr}/metrics", timeout=self._timeout_s) as reply:
                return int(reply.status), reply.read().decode()
        except urllib.error.HTTPError as exc:
            exc.close()
            return exc.code, ""
        except (OSError, http.client.HTTPException):  # refused, reset, timed out, cut short
            return None, ""


def _pid(peer: PeerProc) -> int | None:
    proc = peer.proc
    return proc.pid if proc is not None and proc.poll() is None else None
