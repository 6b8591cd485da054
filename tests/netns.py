"""Peers on their own hosts: one Linux network namespace per peer, wired to a private bridge.

`Network` builds what a set of separate machines on one LAN would have: a bridge in the root namespace
with the first address of a private /24 (10.213.X.0/24, X picked so no route of this machine
overlaps), and per host a namespace with a veth pair, its peer end named `eth0` inside the namespace
with its own address. Peers bind and advertise those addresses, so they dial each other across the
bridge exactly as they would across hosts. The test process stays in the root namespace: through the
bridge's address it reaches every host, whatever the faults between hosts, so clients can work on
both sides of a partition.

Faults, all between hosts (the bridge address stays reachable unless a host's link is down):
- `cut(i)`: host i's link goes down; nothing reaches it, from hosts or clients (`restore(i)` undoes it);
- `block(src, dst)`: a blackhole route in src's namespace for dst's address; src's packets to dst are
  dropped, dst's packets still reach src (TCP then fails both ways, differently on each end: see
  docs/ARCHITECTURE.md "Partitions");
- `split(groups)`: blackhole routes between every pair of hosts in different groups, both ways;
- `flap(i, ...)`: host i's link goes down and up again at random intervals until a deadline;
- `heal()`: every route removed and every link up.

Names carry this run's random tag (bridge `dfb<tag>`, host veth ends `dfv<tag><i>`, namespaces
`dfsnet-<pid>-<tag>-<i>`), so two runs never collide; `close()` removes them all, and `sweep_stale()`
removes what a run that died without cleaning up (SIGKILL) left behind, recognised by its pid.

Needs root and iproute2's `ip`. `require_netns()` skips a test with one line when either is missing,
and fails it instead when the CI environment variable is set. On a host whose bridged traffic passes
iptables (br_netfilter with a FORWARD policy of DROP, as Docker sets) the hosts cannot reach each other
and cluster convergence fails; such a host must accept forwarding on `dfb*` bridges.
"""

from __future__ import annotations

import ipaddress
import os
import random
import re
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pytest

SUBNET_PREFIX = "10.213"
"""Hosts live in 10.213.X.0/24 for a free X: private, and unlikely to clash with a real network."""
NS_PREFIX = "dfsnet"
HOST_OFFSET = 10
"""Host i gets the address .(10 + i); the bridge (the test process) has .1."""
MAX_HOSTS = 200
_ALIAS = "dfs-netns pid="


class NetnsError(RuntimeError):
    """An `ip` command failed; the message carries its command line and stderr."""


def _run(args: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {done.stderr.strip() or f'exit {done.returncode}'}")
    return done


_problem: str | None = None


def netns_problem() -> str:
    """Why namespaces cannot be used here ("" when they can); probed once per process."""
    global _problem
    if _problem is None:
        _problem = _probe()
    return _problem


def _probe() -> str:
    if os.geteuid() != 0:
        return "needs root (it creates network namespaces, veth pairs and a bridge)"
    if shutil.which("ip") is None:
        return "needs the `ip` command (iproute2)"
    name = f"{NS_PREFIX}-probe-{os.getpid()}-{secrets.token_hex(3)}"
    try:
        _run(["netns", "add", name])
    except (NetnsError, OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot create a network namespace: {exc}"
    _run(["netns", "del", name], check=False)
    return ""


def require_netns() -> None:
    """Skips the calling test with one line when namespaces are unavailable; under CI fails instead."""
    problem = netns_problem()
    if not problem:
        return
    if os.environ.get("CI"):
        pytest.fail(f"network-namespace test: {problem}; CI is set, so it must run", pytrace=False)
    pytest.skip(f"network-namespace test skipped: {problem}")


@dataclass(frozen=True)
class Host:
    index: int
    ns: str
    """Namespace name; `ip netns exec NS ...` runs a command on this host."""
    veth: str
    """The root-namespace end of the host's veth pair, enslaved to the bridge; its state is the link's."""
    addr: str

    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.ns]


class Network:
    """A bridge, a /24 and one namespace per host; every fault between hosts is one method."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(3)
        self.bridge = f"dfb{self.tag}"
        self.octet = -1
        self.hosts: list[Host] = []
        self._blocked: set[tuple[int, int]] = set()
        self._down: set[int] = set()
        self._lock = threading.Lock()
        self._closed = False

    @property
    def gateway(self) -> str:
        """The root namespace's address on the bridge: where the test's clients come from."""
        return f"{SUBNET_PREFIX}.{self.octet}.1"

    def __enter__(self) -> Network:
        """`with Network().create(n) as net:` removes everything on the way out, failed or not."""
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- building -------------------------------------------------------------------------------

    def create(self, hosts: int = 0) -> Network:
        """The bridge on a free /24, then `hosts` hosts. Whatever was built is removed on failure."""
        sweep_stale()
        try:
            self._create_bridge()
            for _ in range(hosts):
                self.add_host()
        except BaseException:
            self.close()
            raise
        return self

    def _create_bridge(self) -> None:
        _run(["link", "add", self.bridge, "type", "bridge"])
        _run(["link", "set", self.bridge, "alias", f"{_ALIAS}{os.getpid()}"])
        for _ in range(20):
            octet = _free_octet()
            _run(["addr", "add", f"{SUBNET_PREFIX}.{octet}.1/24", "dev", self.bridge])
            _run(["link", "set", self.bridge, "up"])
            # Two runs may have picked the same /24 at the same moment: the later one moves on.
            if len(_routes_in(octet)) == 1:
                self.octet = octet
                return
            _run(["addr", "del", f"{SUBNET_PREFIX}.{octet}.1/24", "dev", self.bridge], check=False)
        raise NetnsError(f"no free {SUBNET_PREFIX}.X.0/24 found")

    def add_host(self) -> Host:
        """A new namespace on the bridge with the next address (peers joining later get one too)."""
        index = len(self.hosts)
        if index >= MAX_HOSTS:
            raise NetnsError(f"at most {MAX_HOSTS} hosts")
        host = Host(index, f"{NS_PREFIX}-{os.getpid()}-{self.tag}-{index}", f"dfv{self.tag}{index}",
                    f"{SUBNET_PREFIX}.{self.octet}.{HOST_OFFSET + index}")
        self.hosts.append(host)  # before it exists, so close() removes a half-built host too
        inner = f"dfn{self.tag}{index}"
        _run(["netns", "add", host.ns])
        _run(["-n", host.ns, "link", "set", "lo", "up"])
        _run(["link", "add", host.veth, "type", "veth", "peer", "name", inner, "netns", host.ns])
        _run(["link", "set", host.veth, "alias", f"{_ALIAS}{os.getpid()}"])
        _run(["-n", host.ns, "link", "set", inner, "name", "eth0"])
        _run(["-n", host.ns, "addr", "add", f"{host.addr}/24", "dev", "eth0"])
        _run(["-n", host.ns, "link", "set", "eth0", "up"])
        _run(["link", "set", host.veth, "master", self.bridge, "up"])
        return host

    def close(self) -> None:
        """Removes every host and the bridge; safe to call twice and after a partial create."""
        if self._closed:
            return
        self._closed = True
        for host in self.hosts:
            _run(["link", "del", host.veth], check=False)  # deletes both ends of the pair
            _run(["netns", "del", host.ns], check=False)
        _run(["link", "del", self.bridge], check=False)

    # -- faults ---------------------------------------------------------------------------------

    def cut(self, index: int) -> None:
        """Host `index` off the network: its link down, so no host and no client reaches it."""
        with self._lock:
            _run(["link", "set", self.hosts[index].veth, "down"])
            self._down.add(index)

    def restore(self, index: int) -> None:
        with self._lock:
            _run(["link", "set", self.hosts[index].veth, "up"])
            self._down.discard(index)

    def is_cut(self, index: int) -> bool:
        with self._lock:
            return index in self._down

    def block(self, src: int, dst: int) -> None:
        """src's packets to dst are dropped: a blackhole route in src's namespace. Local senders on
        src get an error at once; dst's packets still arrive at src, but src's answers do not leave."""
        with self._lock:
            if (src, dst) in self._blocked:
                return
            _run(["-n", self.hosts[src].ns, "route", "add", "blackhole", f"{self.hosts[dst].addr}/32"])
            self._blocked.add((src, dst))

    def unblock(self, src: int, dst: int) -> None:
        with self._lock:
            if (src, dst) not in self._blocked:
                return
            _run(["-n", self.hosts[src].ns, "route", "del", "blackhole", f"{self.hosts[dst].addr}/32"])
            self._blocked.discard((src, dst))

    def one_way(self, reaching: int, cut_off: int) -> None:
        """`reaching`'s packets reach `cut_off`, `cut_off`'s do not reach `reaching` (blackhole on one side)."""
        self.block(cut_off, reaching)

    def split(self, groups: Sequence[Iterable[int]]) -> None:
        """No packet crosses between hosts of different groups, in either direction."""
        sets = [set(g) for g in groups]
        for i, a in enumerate(sets):
            for b in sets[i + 1 :]:
                for x in a:
                    for y in b:
                        self.block(x, y)
                        self.block(y, x)

    def flap(self, index: int, until: float, rng: random.Random, down_s: tuple[float, float] = (0.2, 1.2),
             up_s: tuple[float, float] = (0.2, 1.2)) -> int:
        """Takes host `index`'s link down and up at random intervals until monotonic time `until`;
        leaves it up. Returns how many times it went down."""
        flips = 0
        try:
            while time.monotonic() < until:
                self.cut(index)
                flips += 1
                time.sleep(max(0.0, min(rng.uniform(*down_s), until - time.monotonic())))
                self.restore(index)
                time.sleep(max(0.0, min(rng.uniform(*up_s), until - time.monotonic())))
        finally:
            self.restore(index)
        return flips

    def heal(self) -> None:
        """Every blackhole route removed and every link up."""
        with self._lock:
            blocked, down = sorted(self._blocked), sorted(self._down)
        for src, dst in blocked:
            self.unblock(src, dst)
        for index in down:
            self.restore(index)

    def faults(self) -> str:
        """The faults in place, for messages."""
        with self._lock:
            return f"links down {sorted(self._down)}, blocked {sorted(self._blocked)}"


def _routes_in(octet: int) -> list[str]:
    """Routes of the root namespace (any table, local and broadcast ones aside) overlapping 10.213.X.0/24."""
    net = ipaddress.ip_network(f"{SUBNET_PREFIX}.{octet}.0/24")
    found = []
    for line in _run(["-4", "route", "show", "table", "all"]).stdout.splitlines():
        words = line.split()
        if not words or words[0] in ("local", "broadcast", "default"):
            continue
        dest = words[1] if words[0] in ("unicast", "blackhole", "unreachable", "prohibit", "throw") else words[0]
        try:
            if ipaddress.ip_network(dest, strict=False).overlaps(net):
                found.append(line)
        except ValueError:
            continue
    return found


def _free_octet() -> int:
    """An X such that no route of this machine overlaps 10.213.X.0/24 (a default route aside)."""
    candidates = list(range(256))
    random.shuffle(candidates)
    for octet in candidates:
        if not _routes_in(octet):
            return octet
    raise NetnsError(f"every {SUBNET_PREFIX}.X.0/24 is in use")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale() -> list[str]:
    """Removes the namespaces, veths and bridges of runs whose process is gone; returns their names."""
    removed: list[str] = []
    for line in _run(["netns", "list"], check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.fullmatch(rf"{NS_PREFIX}-(?:probe-)?(\d+)-[0-9a-f]{{6}}(?:-\d+)?", name)
        if m and not _pid_alive(int(m.group(1))):
            _run(["netns", "del", name], check=False)
            removed.append(name)
    for line in _run(["-o", "link", "show"], check=False).stdout.splitlines():
        m = re.match(r"\d+: (df[bv][0-9a-f]{6}\d*)[@:].*alias " + re.escape(_ALIAS) + r"(\d+)", line)
        if m and not _pid_alive(int(m.group(2))):
            _run(["link", "del", m.group(1)], check=False)
            removed.append(m.group(1))
    return removed
