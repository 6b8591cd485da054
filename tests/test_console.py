"""The web console at /console/: its ring arithmetic and sessions, its HTTP API against a real peer
with client authentication on (login, cookie flags, CSRF, roles), and the pages themselves in headless
Chromium driven by Playwright: log in, upload through the page, download and compare, delete, and a
SIGKILLed peer turning dead on the cluster page without a reload.

Chromium is Debian's `chromium` package (`.ci/run` installs it); Playwright drives it through
`executable_path`, so no browser is downloaded. Without it the browser tests skip locally and fail on
CI (the CI environment variable set). Screenshots of each page go to build/console-screenshots/;
with DFS_UPDATE_CONSOLE_SCREENSHOT set, the cluster page's also replaces docs/console.png.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from peer.http.console.overview import KEY_SPACE, ring_shares
from peer.http.console.sessions import Sessions
from peer.ring.hashring import HashRing, key_position
from peer.security.tokens import ANONYMOUS_ADMIN
from tests.cluster import Cluster, PeerProc

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "build" / "console-screenshots"
DOCS_SCREENSHOT = ROOT / "docs" / "console.png"
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
    page.wait_for_selector("#metadata-health:has-text('healthy')")
    page.screenshot(path=str(shots / "cluster.png"), full_page=True)
    if os.environ.get("DFS_UPDATE_CONSOLE_SCREENSHOT"):
        shutil.copy(shots / "cluster.png", DOCS_SCREENSHOT)
    page.evaluate("window.__sameDocument = true")
    victim.kill()
    page.wait_for_selector(f'#members tr[data-node="{victim.node_id}"][data-state="dead"]', timeout=30_000)
    assert page.evaluate("window.__sameDocument === true")  # the page updated itself: no reload
    page.screenshot(path=str(shots / "cluster-dead.png"), full_page=True)
    page.context.close()
