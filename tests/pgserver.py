"""A PostgreSQL server of the tests' own: `initdb` into a fresh directory, served on a Unix socket there.

The server listens on no TCP port at all (`listen_addresses=''`): its socket lives in its own temp
directory, so runs of the suite never meet each other or a system cluster. PostgreSQL refuses to run
as root, so under root (CI) `initdb` and `postgres` run as the `postgres` user Debian's package
creates, over a directory handed to it, through `setpriv` (which execs, so the pid is the server's);
otherwise as the current user. Not through subprocess's `user=`: that makes Python fork() rather than
vfork(), and a fork() of a process running gRPC threads can abort in gRPC's fork handlers. `kill()` SIGKILLs the
postmaster and every process it started (each of which PostgreSQL puts in a session of its own, so no
process-group signal reaches them), as a crashed machine would lose them all; `stop()` asks for a fast
shutdown (SIGINT: what `pg_ctl stop -m fast` sends); `start()` brings the same data directory back up,
through crash recovery after a kill.

Without the binaries a test skips with one line; on CI (CI set, as .ci/run exports it, after
installing Debian's `postgresql`) it fails instead.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

ON_CI = os.environ.get("CI", "").lower() not in ("", "0", "false")
SUPERUSER = "dfs"
PORT = 5432  # names the socket file only: nothing listens on TCP
READY_TIMEOUT_S = 60.0
MISSING = "PostgreSQL is not installed (apt-get install postgresql); CI installs it"


def find_bindir() -> Path | None:
    """The directory of `initdb` and `postgres`: Debian's newest /usr/lib/postgresql/N/bin, else PATH."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: [int(n) for n in re.findall(r"\d+", p.parent.parent.name)] or [0])
    if versions:
        return versions[-1].parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def require_bindir() -> Path:
    """The binaries' directory, or a skip (locally) or failure (on CI) naming what is missing."""
    bindir = find_bindir()
    if bindir is None:
        if ON_CI:
            pytest.fail(MISSING)
        pytest.skip(MISSING)
    return bindir


class PgServer:
    """One PostgreSQL data directory and the server process serving it, if any."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.as_user: list[str] = []
        owner = os.getuid()
        if owner == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail("running as root needs the `postgres` user (Debian's postgresql package creates it)")
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                pytest.fail("running PostgreSQL's tests as root needs setpriv (Debian's util-linux)")
            owner = account.pw_uid
            self.as_user = [setpriv, f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups", "--"]
        # Not under pytest's tmp_path: its parents are private to root, and the server user must reach it.
        self.root = Path(tempfile.mkdtemp(prefix="dfs-pg-"))
        os.chown(self.root, owner, -1)
        self.data = self.root / "data"
        self.log_path = self.root / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._run(["initdb", "-D", str(self.data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
                   "--locale=C", "--no-sync", "--no-instructions"])

    def uri(self, dbname: str = "postgres", **params: str) -> str:
        """A libpq URI reaching this server through its socket, with extra query parameters."""
        query = "&".join(f"{key}={quote(value, safe='')}" for key, value in
                         {"host": str(self.root), "port": str(PORT), **params}.items())
        return f"postgresql://{SUPERUSER}@/{dbname}?{query}"

    def start(self) -> None:
        """Starts the server on the existing data directory and waits until it takes connections."""
        assert not self.running, "the server is already running"
        args = [*self.as_user, str(self.bindir / "postgres"), "-D", str(self.data), "-k", str(self.root),
                "-p", str(PORT), "-c", "listen_addresses=", "-c", "max_connections=100", "-c", "shared_buffers=16MB",
                "-c", "logging_collector=off", "-c", "log_min_messages=warning"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=self.root, start_new_session=True)
        self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        last = ""
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise AssertionError(f"postgres exited while starting:\n{self.tail()}")
            try:
                with closing(psycopg.connect(self.uri(), connect_timeout=2)) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                last = str(exc).strip()
            time.sleep(0.05)
        raise AssertionError(f"postgres did not accept connections within {READY_TIMEOUT_S} s: {last}\n{self.tail()}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL to the postmaster and every backend together: a crash, not a shutdown. A backend
        left alive would go on answering its client for a moment after its postmaster died."""
        if self.proc is None:
            return
        postmaster = self.proc.pid
        victims = [postmaster]
        if self.proc.poll() is None:
            os.kill(postmaster, signal.SIGSTOP)  # so that it starts no process while its children are listed
            victims += _children(postmaster)
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(30)
        _wait_gone(victims)
        self.proc = None

    def stop(self) -> None:
        """A fast shutdown: open transactions are rolled back, clients disconnected, data checkpointed."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(60)  # the postmaster exits only after every process it started
        self.proc = None

    def execute(self, sql: str, dbname: str = "postgres") -> None:
        with closing(psycopg.connect(self.uri(dbname), autocommit=True, connect_timeout=5)) as conn:
            conn.execute(sql.encode())

    def close(self) -> None:
        try:
            self.kill()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return "(no server log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _run(self, args: list[str]) -> None:
        done = subprocess.run([*self.as_user, str(self.bindir / args[0]), *args[1:]], capture_output=True,
                              cwd=self.root, stdin=subprocess.DEVNULL, timeout=120, check=False)
        if done.returncode != 0:
            raise AssertionError(f"{args[0]} failed ({done.returncode}): {done.stderr.decode(errors='replace')}")


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first, then the parent pid)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and fields[1] == str(parent):
                found.append(int(entry.name))
    return found


def _wait_gone(pids: list[int]) -> None:
    """Until every pid has exited (a zombie has: it holds no memory or socket a restart could meet)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if all((fields := _stat(pid)) is None or fields[0] in ("Z", "X") for pid in pids):
            return
        time.sleep(0.01)
    raise AssertionError(f"postgres processes {pids} still alive 30 s after SIGKILL")


@contextmanager
def postgres_server() -> Iterator[PgServer]:
    """A running server of its own, removed with its data afterwards (skips or fails as the module says)."""
    server = PgServer(require_bindir())
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One server for the session's contract tests; each test takes a schema of its own (pg_schema_uri)."""
    with postgres_server() as server:
        yield server


@contextmanager
def pg_schema_uri(server: PgServer) -> Iterator[str]:
    """A URI whose connections see only a fresh, empty schema (dropped afterwards): a test's own store."""
    schema = f"t_{uuid.uuid4().hex}"
    server.execute(f"CREATE SCHEMA {schema}")
    try:
        yield server.uri(options=f"-c search_path={schema}")
    finally:
        server.execute(f"DROP SCHEMA {schema} CASCADE")
