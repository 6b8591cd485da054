"""Carrying out a cp or sync plan, N transfers at once, and summing up what it did.

One failing file must not stop the others, so each failure becomes that file's Outcome, never an
exception; and no file is ever held whole in memory, since uploads and downloads stream piece by piece.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol, overload

from client.copy_paths import printable
from client.copy_plan import Action, Outcome, RemoteListing, Status
from client.errors import DfsClientError, InvalidArgument
from client.format import human_size, plural
from client.models import UploadResult

EXIT_FAILED = 1
EXIT_LOCAL_FILE = 2  # what the CLI exits with for any local file error (OSError)

Progress = Callable[[int], None]
"""Called with the number of bytes just moved; called from worker threads."""


class PieceStream(Protocol):
    """An open, verified download: iterating it yields the data; close() abandons it."""

    def __iter__(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...


class RemoteStore(RemoteListing, Protocol):
    """The SDK calls copying needs; DfsClient provides them (a fake can, in unit tests)."""

    def upload(
        self,
        source: Any,
        name: str | None = ...,
        content_type: str = ...,
        metadata: Mapping[str, str] | None = ...,
        progress: Progress | None = ...,
        *,
        policy: str | None = ...,
    ) -> UploadResult: ...

    @overload
    def download(
        self, ref: str, dest: None = ..., *, version: int | str | None = ..., progress: Progress | None = ...
    ) -> PieceStream: ...

    @overload
    def download(
        self, ref: str, dest: str | BinaryIO, *, version: int | str | None = ..., progress: Progress | None = ...
    ) -> object: ...

    def delete(self, ref: str) -> object: ...


class _Cancelled(Exception):
    """Raised inside a transfer once the run is being abandoned (Ctrl-C), to stop it between pieces."""


class Runner:
    """Performs actions on a thread pool that shares one client (its gRPC channel is thread-safe)."""

    def __init__(
        self, client: RemoteStore, jobs: int, *, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None,
        policy: str | None = None,
    ) -> None:
        """`policy` is the redundancy policy of every file written to the cluster (None: each name's
        default, its bucket's or the cluster's)."""
        self._client = client
        self._jobs = jobs
        self._policy = policy
        self._stdin = stdin
        self._stdout = stdout
        self._stop = threading.Event()

    def run(
        self, actions: Sequence[Action], progress: Progress, on_outcome: Callable[[Outcome], None]
    ) -> list[Outcome]:
        """Performs every transfer, then every deletion, `jobs` at a time; returns their outcomes in
        that order (a plan lists them so).

        `on_outcome` is called on this thread as each file finishes. On an exception here (Ctrl-C) the
        transfers still queued are dropped and the running ones stop at their next piece.
        """
        transfers = [a for a in actions if a.kind != "delete"]
        deletions = [a for a in actions if a.kind == "delete"]
        return [*self._run_batch(transfers, progress, on_outcome), *self._run_batch(deletions, progress, on_outcome)]

    def _run_batch(
        self, actions: Sequence[Action], progress: Progress, on_outcome: Callable[[Outcome], None]
    ) -> list[Outcome]:
        if not actions:
            return []
        pool = ThreadPoolExecutor(max_workers=min(self._jobs, len(actions)), thread_name_prefix="dfs-copy")
        outcomes: dict[int, Outcome] = {}
        try:
            futures = {pool.submit(self._perform, a, progress): i for i, a in enumerate(actions)}
            for future in as_completed(futures):
                outcomes[futures[future]] = future.result()
                on_outcome(outcomes[futures[future]])
        except BaseException:
            self._stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
        return [outcomes[i] for i in range(len(actions))]

    def _perform(self, action: Action, progress: Progress) -> Outcome:
        moved = 0

        def tick(n: int) -> None:
            nonlocal moved
            if self._stop.is_set():
                raise _Cancelled
            moved += n
            progress(n)

        try:
            if action.kind == "upload":
                self._upload(action, tick)
            elif action.kind == "download":
                self._download(action, tick)
            elif action.kind == "copy":
                self._copy(action, tick)
            else:
                self._delete(action)
        except (_Cancelled, BrokenPipeError):
            raise
        except DfsClientError as exc:
            return Outcome(action, "failed", str(exc), exc.exit_code, moved)
        except OSError as exc:
            return Outcome(action, "failed", _os_message(exc), EXIT_LOCAL_FILE, moved)
        except Exception as exc:  # one file's surprise must not stop the others; it is still reported
            return Outcome(action, "failed", f"unexpected {type(exc).__name__}: {exc}", EXIT_FAILED, moved)
        return Outcome(action, "done", moved=moved)

    def _upload(self, action: Action, tick: Progress) -> None:
        assert action.source is not None
        source: Any = self._stdin if action.source.is_stdio else action.source.path
        if source is None:
            raise InvalidArgument("stdin is not available")
        self._client.upload(source, name=action.dest.path, progress=tick, policy=self._policy)

    def _download(self, action: Action, tick: Progress) -> None:
        """Through the SDK's path form: it writes a temporary file beside the target and renames it
        into place only once every byte has verified, so an interrupted run never leaves a partial file
        under the real name. Missing parent directories are created first, as `aws s3 cp` does."""
        ref, version = self._source_ref(action)
        if action.dest.is_stdio:
            if self._stdout is None:
                raise InvalidArgument("stdout is not available")
            self._client.download(ref, self._stdout, version=version, progress=tick)
            self._stdout.flush()
            return
        os.makedirs(os.path.dirname(action.dest.path) or ".", exist_ok=True)
        self._client.download(ref, action.dest.path, version=version, progress=tick)

    def _copy(self, action: Action, tick: Progress) -> None:
        """Streams the download into the upload. Each chunk of the download verifies before its bytes
        are passed on, and a failure cancels the upload before its final message, so a corrupt or
        unreadable source never commits a new version."""
        ref, version = self._source_ref(action)
        stream = self._client.download(ref, version=version, progress=tick)
        try:
            v = action.version
            self._client.upload(
                stream,
                name=action.dest.path,
                content_type=v.content_type if v else "",
                metadata=v.metadata if v else None,
                policy=self._policy,
            )
        finally:
            stream.close()

    def _delete(self, action: Action) -> None:
        if action.dest.remote:
            self._client.delete(action.version.file_id if action.version else action.dest.path)
        else:
            os.unlink(action.dest.path)

    @staticmethod
    def _source_ref(action: Action) -> tuple[str, str | None]:
        """The very version that was listed, by file id, so a name replaced meanwhile cannot mislead."""
        if action.version is not None:
            return action.version.file_id, action.version.version_id
        assert action.source is not None
        return action.source.path, None


def _os_message(exc: OSError) -> str:
    if exc.filename is not None and exc.strerror:
        return f"{printable(os.fsdecode(exc.filename))}: {exc.strerror}"
    return str(exc)


@dataclass(frozen=True)
class Report:
    """What a run did (or, dry, would do): the counts of the summary line and the JSON document."""

    outcomes: Sequence[Outcome]
    dry_run: bool = False

    def _count(self, status: Status, delete: bool | None = None) -> list[Outcome]:
        return [
            o for o in self.outcomes if o.status == status and (delete is None or (o.action.kind == "delete") == delete)
        ]

    @property
    def copied(self) -> list[Outcome]:
        return self._count("planned" if self.dry_run else "done", delete=False)

    @property
    def deleted(self) -> list[Outcome]:
        return self._count("planned" if self.dry_run else "done", delete=True)

    @property
    def failed(self) -> list[Outcome]:
        return self._count("failed")

    @property
    def unchanged(self) -> list[Outcome]:
        return self._count("unchanged")

    @property
    def copied_bytes(self) -> int:
        if self.dry_run:
            return sum(o.action.size or 0 for o in self.copied)
        return sum(o.moved for o in self.copied)

    @property
    def exit_code(self) -> int:
        """0 when nothing failed; the failures' code when they share one; else 1."""
        codes = {o.exit_code for o in self.failed}
        if not codes:
            return 0
        return codes.pop() if len(codes) == 1 else EXIT_FAILED

    def summary(self, *, with_deletions: bool = False) -> str:
        text = f"{plural(len(self.copied), 'file')} ({human_size(self.copied_bytes)})"
        text = f"(dry run) would copy {text}" if self.dry_run else f"copied {text}"
        text += f", {len(self.unchanged)} unchanged, {len(self.failed)} failed"
        if with_deletions or self.deleted:
            text += f", {len(self.deleted)} {'to delete' if self.dry_run else 'deleted'}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "copied": len(self.copied),
            "bytes": self.copied_bytes,
            "unchanged": len(self.unchanged),
            "deleted": len(self.deleted),
            "failed": len(self.failed),
            "actions": [o.to_dict() for o in self.outcomes],
        }
