"""The web console at /console/: its ring and redundancy arithmetic and sessions, its HTTP API against
a real peer with client authentication on (login, cookie flags, CSRF, roles) and off, and the pages
themselves in headless Chromium driven by Playwright: log in, upload through the page, download and
compare, delete, a SIGKILLed peer turning dead on the cluster page without a reload, the session
cookie's flags as the browser holds them under TLS, and a `--no-auth` peer's console (no login form,
an "Authentication is off" notice, uploads work).

Chromium is Debian's `chromium` package (`.ci/run` installs it); Playwright drives it through
`executable_path`, so no browser is downloaded. Without it the browser tests skip locally and fail on
CI (the CI environment variable set). Screenshots of each page go to build/console-screenshots/;
the README's pictures (docs/console*.png) come from `make console-screenshot` (tests/console_screenshot.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import types
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from peer.files.cluster import ClusterSnapshot, MemberSnapshot
from peer.http.console import COOKIE
from peer.http.console.overview import KEY_SPACE, cluster_doc, redundancy, ring_shares
from peer.http.console.sessions import Sessions
from peer.ring.hashring import HashRing, key_position
from peer.security.certs import init_certs
from peer.security.tokens import ANONYMOUS_ADMIN
from tests.cluster import Cluster, PeerProc

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "build" / "console-screenshots"
CHROMIUM = Path(os.environ.get("DFS_CHROMIUM", "/usr/bin/chromium"))
STATIC = ROOT / "peer" / "http" / "console" / "static"


# ------------------------------------------------------------------------------ pure parts


def test_ring_shares_cover_the_key_space_as_the_ring_resolves_keys() -> None:
    ring = HashRing.build(["peer-a", "peer-b", "peer-c"], vnodes=32)
    shares = ring_shares(ring)
    assert shares.points == {"peer-a": 32, "peer-b": 32, "peer-c": 32}
    assert sum(shares.share.values()) == pytest.approx(1.0)
    assert shares.arcs[0][0] == 0.0 and shares.arcs[-1][1] == 1.0
    assert all(a[1] == b[0] for a, b in zip(shares.arcs, shares.arcs[1:], strict=False))
    rng = random.Random(7)
    for _ in range(500):
        key = f"chunk-{rng.getrandbits(64):x}"
        where = key_position(key) / KEY_SPACE
        owner = next(node for start, end, node in shares.arcs if start <= where <= end)
        assert ring.owners(key, 1) == (owner,)


def test_redundancy_is_the_share_of_owned_chunks_with_every_copy() -> None:
    assert redundancy(0, 0) == 1.0  # an empty peer lacks nothing
    assert redundancy(40, 0, misplaced=5) == 1.0
    assert redundancy(40, 10) == 0.75  # (chunk_count - under_replicated) / chunk_count
    assert redundancy(40, 10, misplaced=20) == 0.5  # misplaced copies are held, not owned
    assert redundancy(10, 30) == 0.0 and redundancy(5, 3, misplaced=9) == 0.0  # counts from different moments
    assert redundancy(0, 2) == 0.0


def _member(node_id: str, state: str = "alive", stats: dict[str, Any] | None = None) -> MemberSnapshot:
    return MemberSnapshot(node_id=node_id, state=state, grpc_addr=f"{node_id}:1", gossip_addr=f"{node_id}:2",
                          incarnation=1, heartbeat=1, chunk_count=0, chunk_bytes=0, on_ring=True, last_seen_s=0.25,
                          stats=stats)


def test_the_cluster_document_carries_resources_redundancy_and_zones() -> None:
    ring = HashRing.build(["a", "b", "c"], vnodes=8)
    disk = {"disk_total_bytes": 1000, "disk_free_bytes": 400, "rss_bytes": 50, "memory_budget_bytes": 64,
            "memory_in_use_bytes": 8}
    members = (
        _member("a", stats={"chunk_count": 30, "under_replicated": 0, "repaired": 4, **disk}),
        _member("b", stats={"chunk_count": 10, "under_replicated": 5, "misplaced": 2, "handed_off": 1, **disk}),
        _member("c", state="dead"),
    )
    snap = ClusterSnapshot(node_id="a", ring_digest=ring.digest, replicas=2, vnodes=8, chunk_size=1 << 20,
                           members=members, metadata_backend="sqlite", metadata_healthy=True, metadata_error="")
    doc = cluster_doc(snap, ring_shares(ring))
    by_id = {m["node_id"]: m for m in doc["members"]}
    assert (by_id["a"]["redundancy"], by_id["b"]["redundancy"], by_id["c"]["redundancy"]) == (1.0, 0.375, None)
    assert doc["redundancy"] == (38 - 5) / 38  # the sums of the peers that answered
    assert (doc["totals"]["repaired"], doc["totals"]["handed_off"]) == (4, 1)
    assert by_id["a"]["stats"]["disk_free_bytes"] == 400 and by_id["b"]["stats"]["memory_in_use_bytes"] == 8
    assert by_id["c"]["stats"] is None
    assert doc["zones"] == [] and all(m["zone"] == "" for m in doc["members"])
    # A member snapshot that names its zone (peers started with DFS_ZONE) shows it.
    zoned = tuple(types.SimpleNamespace(**{**vars(m), "zone": z}) for m, z in zip(members, ("eu-1", "eu-2", ""),
                                                                                  strict=True))
    doc = cluster_doc(ClusterSnapshot(**{**vars(snap), "members": zoned}), ring_shares(ring))  # type: ignore[arg-type]
    assert [m["zone"] for m in doc["members"]] == ["eu-1", "eu-2", ""] and doc["zones"] == ["eu-1", "eu-2"]


def test_sessions_expire_and_are_bounded() -> None:
    now = [100.0]
    sessions = Sessions(ttl_s=10, max_sessions=2, clock=lambda: now[0])
    first = sessions.open("t1", ANONYMOUS_ADMIN)
    assert sessions.get(first.session_id) is first
    assert first.csrf_ok(first.csrf) and not first.csrf_ok("") and not first.csrf_ok(None)
    second, third = sessions.open("t2", ANONYMOUS_ADMIN), sessions.open("t3", ANONYMOUS_ADMIN)
    assert sessions.get(first.session_id) is None and len(sessions) == 2  # the oldest made room
    now[0] += 11
    assert sessions.get(second.session_id) is None and sessions.get(third.session_id) is None


def test_assets_reach_for_nothing_beyond_the_peer() -> None:
    for path in STATIC.iterdir():
        text = path.read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, path.name


# ------------------------------------------------------------------------------ a real peer


@dataclass
class Secured:
    cluster: Cluster
    write_token: str
    read_token: str


def _token(metadata: str, role: str) -> str:
    made = subprocess.run(
        [sys.executable, "-m", "peer", "token", "create", "--role", role, "--name", f"console-{role}",
         "--metadata", metadata],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return made.stdout.strip()


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Secured]:
    """Two peers with client tokens required; a write and a read token."""
    base = tmp_path_factory.mktemp("console")
    metadata = f"sqlite:///{base / 'metadata.db'}"
    write_token, read_token = _token(metadata, "write"), _token(metadata, "read")
    cluster = Cluster(base, metadata=metadata, client_kwargs={"token": write_token})
    failed_before = request.session.testsfailed
    try:
        for _ in range(2):
            cluster.add_peer(env={"DFS_NO_AUTH": ""})
        cluster.wait_converged()
        yield Secured(cluster, write_token, read_token)
    finally:
        cluster.close()
        if request.session.testsfailed > failed_before:
            print(cluster.tail_logs())


@pytest.fixture(scope="module")
def secured_tls(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Secured]:
    """Two peers with TLS (certificates from `certs init`, as tests/test_security.py makes them) and
    client tokens required: the console is served over https on the HTTP listener."""
    base = tmp_path_factory.mktemp("console-tls")
    certs = base / "certs"
    init_certs(certs, 2)
    metadata = f"sqlite:///{base / 'metadata.db'}"
    write_token, read_token = _token(metadata, "write"), _token(metadata, "read")

    def per_peer(i: int) -> list[str]:
        return ["--tls-cert", str(certs / f"peer-{i + 1}.crt"), "--tls-key", str(certs / f"peer-{i + 1}.key"),
                "--tls-ca", str(certs / "ca.crt"), "--peer-grpc-addr", "127.0.0.1:0"]

    cluster = Cluster(base, metadata=metadata, per_peer=per_peer,
                      client_kwargs={"tls_ca": str(certs / "ca.crt"), "token": write_token})
    failed_before = request.session.testsfailed
    try:
        for _ in range(2):
            cluster.add_peer(env={"DFS_NO_AUTH": ""})
        cluster.wait_converged()
        yield Secured(cluster, write_token, read_token)
    finally:
        cluster.close()
        if request.session.testsfailed > failed_before:
            print(cluster.tail_logs())


@pytest.fixture(scope="module")
def open_peer(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[PeerProc]:
    """One peer with client authentication off (`--no-auth`, as tests/cluster.py starts peers), one replica."""
    cluster = Cluster(tmp_path_factory.mktemp("console-noauth"), replicas=1)
    failed_before = request.session.testsfailed
    try:
        cluster.start(1)
        yield cluster.peers[0]
    finally:
        cluster.close()
        if request.session.testsfailed > failed_before:
            print(cluster.tail_logs())


@dataclass
class Reply:
    status: int
    headers: Any
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def call(peer: PeerProc, method: str, path: str, *, body: bytes | None = None, headers: dict[str, str] | None = None,
         cookie: str = "") -> Reply:
    req = urllib.request.Request(f"http://{peer.gossip_addr}/console/{path}", data=body, method=method,
                                 headers=headers or {})
    if cookie:
        req.add_header("Cookie", cookie)
    try:
        with urllib.request.urlopen(req, timeout=20) as reply:
            return Reply(reply.status, reply.headers, reply.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return Reply(exc.code, exc.headers, exc.read())


def login(peer: PeerProc, token: str) -> tuple[Reply, str, str]:
    """(the login reply, the Cookie header to send back, the session's CSRF token)."""
    reply = call(peer, "POST", "api/login", body=json.dumps({"token": token}).encode(),
                 headers={"Content-Type": "application/json"})
    cookie = reply.headers.get("Set-Cookie", "").split(";", 1)[0]
    return reply, cookie, reply.json().get("csrf", "") if reply.status == 200 else ""


def test_the_page_is_served_with_a_strict_content_policy(secured: Secured) -> None:
    peer = secured.cluster.peers[0]
    page = call(peer, "GET", "")
    assert page.status == 200 and b'<script src="static/console.js"' in page.body
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    script = call(peer, "GET", "static/console.js")
    assert script.status == 200 and script.headers["Content-Type"].startswith("text/javascript")
    assert call(peer, "GET", "static/..%2Fapp.py").status == 404


def test_the_api_needs_a_session_and_a_valid_token(secured: Secured) -> None:
    peer = secured.cluster.peers[0]
    assert call(peer, "GET", "api/cluster").status == 401
    assert call(peer, "GET", "api/session").json() == {"authenticated": False, "auth": True}
    bad, _, _ = login(peer, "dfs_0123456789abcdef_" + "A" * 43)
    assert bad.status == 401
    reply, cookie, csrf = login(peer, secured.read_token)
    assert reply.status == 200 and csrf
    flags = [part.strip().lower() for part in reply.headers["Set-Cookie"].split(";")]
    assert "httponly" in flags and "samesite=strict" in flags and "path=/console" in flags
    assert "secure" not in flags  # plain HTTP here; under TLS the cookie is Secure
    assert call(peer, "GET", "api/cluster", cookie=cookie).status == 200
    assert call(peer, "GET", "api/cluster", cookie=cookie + "x").status == 401


def test_changes_without_the_csrf_token_are_refused(secured: Secured) -> None:
    peer = secured.cluster.peers[0]
    _, cookie, csrf = login(peer, secured.write_token)
    body = b"hello console"
    for headers in ({}, {"X-CSRF-Token": "wrong"}):
        put = call(peer, "PUT", "api/upload?name=csrf/x.txt", body=body, headers=headers, cookie=cookie)
        assert put.status == 403 and "X-CSRF-Token" in put.json()["message"]
        assert call(peer, "POST", "api/logout", headers=headers, cookie=cookie).status == 403
    listed = call(peer, "GET", "api/files?prefix=csrf/", cookie=cookie).json()
    assert listed["files"] == []  # nothing was stored
    put = call(peer, "PUT", "api/upload?name=csrf/x.txt", body=body, headers={"X-CSRF-Token": csrf}, cookie=cookie)
    assert put.status == 201, put.body
    assert call(peer, "DELETE", "api/file?name=csrf/x.txt", cookie=cookie).status == 403
    assert call(peer, "DELETE", "api/file?name=csrf/x.txt", headers={"X-CSRF-Token": csrf}, cookie=cookie).status == 200
    assert call(peer, "POST", "api/logout", headers={"X-CSRF-Token": csrf}, cookie=cookie).status == 200
    assert call(peer, "GET", "api/cluster", cookie=cookie).status == 401


def test_a_read_token_cannot_upload(secured: Secured) -> None:
    peer = secured.cluster.peers[0]
    _, cookie, csrf = login(peer, secured.read_token)
    put = call(peer, "PUT", "api/upload?name=ro/x.txt", body=b"x", headers={"X-CSRF-Token": csrf}, cookie=cookie)
    assert put.status == 403 and put.json()["error"] == "permission_denied"


def test_with_auth_off_every_visitor_has_a_session_but_changes_still_need_its_csrf_token(open_peer: PeerProc) -> None:
    reply = call(open_peer, "GET", "api/session")
    doc = reply.json()
    assert (doc["authenticated"], doc["auth"], doc["role"]) == (True, False, "admin") and doc["csrf"]
    cookie = reply.headers["Set-Cookie"].split(";", 1)[0]
    assert call(open_peer, "GET", "api/cluster").status == 200  # reading needs no session at all
    put = call(open_peer, "PUT", "api/upload?name=open/x.txt", body=b"x", cookie=cookie)
    assert put.status == 403  # a cross-site page must not upload through a visitor's browser
    put = call(open_peer, "PUT", "api/upload?name=open/x.txt", body=b"x", headers={"X-CSRF-Token": doc["csrf"]},
               cookie=cookie)
    assert put.status == 201, put.body


# ------------------------------------------------------------------------------ the browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium under Playwright; skips locally, fails on CI, when it is missing."""
    missing = ""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright is not installed (pip install -e '.[dev]')"
    if not missing and not CHROMIUM.exists():
        missing = f"{CHROMIUM} is missing (apt-get install chromium)"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests cannot run on CI: {missing}")
        pytest.skip(f"console browser tests skipped: {missing}")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def shots(tmp_path: Path) -> Iterator[Path]:
    """Screenshots go to the test's tmp dir and are copied to build/console-screenshots/."""
    yield tmp_path
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for png in tmp_path.glob("*.png"):
        shutil.copy(png, SCREENSHOTS / png.name)


def open_console(browser: Any, peer: PeerProc, token: str, shots: Path | None = None) -> Any:
    context = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(f"http://{peer.gossip_addr}/console/")
    page.wait_for_selector("#login-view:not([hidden])")
    if shots is not None:
        page.screenshot(path=str(shots / "login.png"))
    page.fill("#token", "dfs_0123456789abcdef_" + "A" * 43)
    page.click("#login-button")
    page.wait_for_selector("#login-error:has-text('invalid')")
    page.fill("#token", token)
    page.click("#login-button")
    page.wait_for_selector("#cluster-view:not([hidden]) #members tbody tr")
    return page


def test_upload_list_download_details_and_delete_in_the_browser(
    secured: Secured, browser: Any, shots: Path, tmp_path: Path
) -> None:
    peer = secured.cluster.peers[0]
    page = open_console(browser, peer, secured.write_token, shots)
    data = random.Random(15).randbytes(2 * 1024 * 1024 + 512 * 1024)  # three 1 MiB chunks
    source = tmp_path / "report.bin"
    source.write_bytes(data)

    page.goto(f"http://{peer.gossip_addr}/console/#files/reports%2F")
    page.wait_for_selector("#files-view:not([hidden]) #crumbs a:has-text('reports')")
    page.set_input_files("#upload-input", str(source))
    page.click("#upload-button")
    row = 'tr[data-name="reports/report.bin"]'
    page.wait_for_selector(row)
    assert page.input_value("#upload-input") == ""
    assert page.eval_on_selector("#upload-progress", "bar => bar.value") == 100
    assert "uploaded reports/report.bin v1" in page.inner_text("#upload-status")

    page.click("#crumbs a:has-text('root')")  # the folder shows at the root, and leads back to the file
    page.click('tr[data-prefix="reports/"] a.folder')
    page.wait_for_selector(row)

    with page.expect_download() as waiting:
        page.click(f"{row} a.download")
    downloaded = Path(waiting.value.path())
    assert hashlib.sha256(downloaded.read_bytes()).digest() == hashlib.sha256(data).digest()

    page.click(f"{row} button.details")
    page.wait_for_selector("#details:not([hidden]) #chunk-table tbody tr")
    chunk_rows = page.query_selector_all("#chunk-table tbody tr")
    assert len(chunk_rows) == 3
    node_ids = {p.node_id for p in secured.cluster.peers}
    for chunk_row in chunk_rows:
        holders = {span.get_attribute("title") for span in chunk_row.query_selector_all("td.holders span.peer")}
        assert holders == node_ids  # two peers, two replicas: each chunk on both
    assert page.query_selector_all("#version-list tbody tr")[0].inner_text().startswith("v1 (latest)")
    page.screenshot(path=str(shots / "files.png"), full_page=True)

    # A request without the CSRF header is refused from the page's own origin too.
    status = page.evaluate("fetch('api/file?name=reports/report.bin', {method: 'DELETE'}).then(r => r.status)")
    assert status == 403

    page.click(f"{row} button.delete")
    page.wait_for_selector("#confirm-dialog[open]")
    page.click("#confirm-no")
    assert page.query_selector(row) is not None
    page.click(f"{row} button.delete")
    page.click("#confirm-yes")
    page.wait_for_selector(row, state="detached")
    with secured.cluster.peers[1].client() as client:
        assert [f.name for f in client.list(prefix="reports/")] == []
    page.context.close()


def test_a_killed_peer_turns_dead_on_the_cluster_page_without_a_reload(
    secured: Secured, browser: Any, shots: Path
) -> None:
    watcher, victim = secured.cluster.peers
    page = open_console(browser, watcher, secured.read_token)
    for p in (watcher, victim):
        page.wait_for_selector(f'#members tr[data-node="{p.node_id}"][data-state="alive"]')
        page.wait_for_selector(f'#resources tr[data-node="{p.node_id}"] td.disk .meter')  # disk, as it reported
        assert "B" in page.inner_text(f'#resources tr[data-node="{p.node_id}"] td.rss')  # its memory, in bytes
    page.wait_for_selector("#metadata-health:has-text('healthy')")
    page.wait_for_selector("#card-redundancy:has-text('100 %')")
    page.screenshot(path=str(shots / "cluster.png"), full_page=True)
    page.evaluate("window.__sameDocument = true")
    victim.kill()
    page.wait_for_selector(f'#members tr[data-node="{victim.node_id}"][data-state="dead"]', timeout=30_000)
    assert page.evaluate("window.__sameDocument === true")  # the page updated itself: no reload
    assert page.inner_text(f'#resources tr[data-node="{victim.node_id}"] td.disk') == "–"  # a dead peer reports nothing
    page.screenshot(path=str(shots / "cluster-dead.png"), full_page=True)
    page.context.close()


def test_under_tls_the_session_cookie_is_secure_httponly_and_strict_in_the_browser(
    secured_tls: Secured, browser: Any, shots: Path
) -> None:
    peer = secured_tls.cluster.peers[0]
    # The peers' certificates come from the test CA and name `dfs-peer`, not 127.0.0.1: the browser is
    # told to accept them, as an operator accepts the cluster CA.
    context = browser.new_context(viewport={"width": 1440, "height": 900}, ignore_https_errors=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(f"https://{peer.gossip_addr}/console/")
    page.wait_for_selector("#login-view:not([hidden])")
    assert [c for c in context.cookies() if c["name"] == COOKIE] == []
    page.fill("#token", secured_tls.read_token)
    page.click("#login-button")
    for p in secured_tls.cluster.peers:
        page.wait_for_selector(f'#members tr[data-node="{p.node_id}"][data-state="alive"]')
        page.wait_for_selector(f'#resources tr[data-node="{p.node_id}"] td.disk .meter')
    [cookie] = [c for c in context.cookies() if c["name"] == COOKIE]
    flags = (cookie["secure"], cookie["httpOnly"], cookie["sameSite"], cookie["path"])
    assert flags == (True, True, "Strict", "/console")
    assert page.evaluate("document.cookie") == ""  # HttpOnly: no script of the page can read it
    assert page.evaluate("location.protocol") == "https:"
    assert page.is_hidden("#auth-off")
    page.screenshot(path=str(shots / "cluster-tls.png"), full_page=True)
    context.close()


def test_with_auth_off_the_console_opens_without_a_login_says_so_and_uploads(
    open_peer: PeerProc, browser: Any, shots: Path, tmp_path: Path
) -> None:
    context = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(f"http://{open_peer.gossip_addr}/console/")
    page.wait_for_selector(f'#cluster-view:not([hidden]) #members tr[data-node="{open_peer.node_id}"]')
    assert page.is_hidden("#login-view") and page.is_hidden("#logout")
    assert page.is_visible("#auth-off") and "Authentication is off" in page.inner_text("#auth-off")
    assert page.inner_text("#who") == "authentication off"
    page.screenshot(path=str(shots / "noauth-cluster.png"), full_page=True)

    data = random.Random(3).randbytes(1024 * 1024 + 4321)
    source = tmp_path / "open.bin"
    source.write_bytes(data)
    page.click("#nav-files")
    page.wait_for_selector("#files-view:not([hidden])")
    assert page.is_visible("#auth-off")  # on every page
    page.set_input_files("#upload-input", str(source))
    page.click("#upload-button")
    row = 'tr[data-name="open.bin"]'
    page.wait_for_selector(row)
    with page.expect_download() as waiting:
        page.click(f"{row} a.download")
    assert Path(waiting.value.path()).read_bytes() == data
    with open_peer.client() as client:
        assert client.read("open.bin") == data
    page.screenshot(path=str(shots / "noauth-files.png"), full_page=True)
    context.close()


def test_errors_a_retry_may_cure_answer_503_not_500() -> None:
    """A download whose holders cannot be reached, or an upload short of peers, is the cluster's
    temporary state: the page says "unavailable", never "internal error"."""
    from peer.errors import ChunkUnreachable, InsufficientReplicas, NotFound, PeerUnavailable
    from peer.http.console.app import _status

    assert _status(ChunkUnreachable("ab" * 32, 1, 2)) == 503
    assert _status(InsufficientReplicas(2, 1, policy="rep:2")) == 503
    assert _status(PeerUnavailable("n" * 32, "no route")) == 503
    assert _status(NotFound("f")) == 404
