"""Takes the README's screenshots of the web console: `make console-screenshot`.

Starts three real peers in three zones with client tokens on (as tests/cluster.py does), stores a few files through
the SDK, logs in to the console in headless Chromium (Debian's /usr/bin/chromium, as in
tests/test_console.py) and saves the cluster page as docs/console.png and the file browser, with one
file's chunks open, as docs/console-files.png. Run it again when the pages change.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.cluster import Cluster, wait_for

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CHROMIUM = Path(os.environ.get("DFS_CHROMIUM", "/usr/bin/chromium"))
MIB = 1024 * 1024
ZONES = ("rack-a", "rack-b", "rack-c")  # one peer in each, so the page shows its zone column
FILES = {  # name -> size: a few folders and sizes, so both pages have something to show
    "reports/2024-q4.pdf": 3 * MIB + 123_456,
    "reports/2025-q1.pdf": 2 * MIB + 4_321,
    "photos/harbour.jpg": 5 * MIB + 77_000,
    "photos/lighthouse.jpg": 4 * MIB + 12_345,
    "backups/db-2025-03-01.tar.zst": 9 * MIB + 512,
    "README.txt": 2_048,
}


def make_token(metadata: str, role: str) -> str:
    made = subprocess.run(
        [sys.executable, "-m", "peer", "token", "create", "--role", role, "--name", "operator", "--metadata", metadata],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return made.stdout.strip()


def store_files(cluster: Cluster) -> None:
    rng = random.Random(2025)
    with cluster.peers[0].client() as client:
        for name, size in FILES.items():
            client.upload(rng.randbytes(size), name=name)
        client.upload(rng.randbytes(2 * MIB), name="reports/2025-q1.pdf")  # a second version


def screenshots(cluster: Cluster, token: str) -> None:
    from playwright.sync_api import sync_playwright

    peer = cluster.peers[0]
    base = f"http://{peer.gossip_addr}/console/"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_context(viewport={"width": 1440, "height": 760}).new_page()
            page.set_default_timeout(30_000)
            page.goto(base)
            page.fill("#token", token)
            page.click("#login-button")
            for p in cluster.peers:
                page.wait_for_selector(f'#members tr[data-node="{p.node_id}"][data-state="alive"]')
                page.wait_for_selector(f'#resources tr[data-node="{p.node_id}"] td.disk .meter')
            page.wait_for_selector("#metadata-health:has-text('healthy')")
            page.screenshot(path=str(DOCS / "console.png"), full_page=True)
            page.goto(base + "#files/reports%2F")
            row = 'tr[data-name="reports/2025-q1.pdf"]'
            page.click(f"{row} button.details")
            page.wait_for_selector("#details:not([hidden]) #chunk-table tbody tr")
            page.screenshot(path=str(DOCS / "console-files.png"), full_page=True)
        finally:
            browser.close()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="dfs-console-shot-") as tmp:
        base = Path(tmp)
        metadata = f"sqlite:///{base / 'metadata.db'}"
        token = make_token(metadata, "write")
        cluster = Cluster(base, metadata=metadata, client_kwargs={"token": token})
        try:
            for zone in ZONES:
                cluster.add_peer(env={"DFS_NO_AUTH": "", "DFS_ZONE": zone})
            cluster.wait_converged()
            store_files(cluster)

            def synced() -> bool:  # every peer has finished an anti-entropy round since the uploads
                with cluster.peers[0].client() as client:
                    members = client.status().members
                return all(m.stats is not None and m.stats.last_sync_s >= 0 for m in members)

            wait_for(synced, 60, "an anti-entropy round on every peer")
            screenshots(cluster, token)
        except BaseException:
            print(cluster.tail_logs(), file=sys.stderr)
            raise
        finally:
            cluster.close()
    print(f"wrote {DOCS / 'console.png'} and {DOCS / 'console-files.png'}")


if __name__ == "__main__":
    main()
