"""The engine behind `dfs cp` and `dfs sync`, in one object: Copier plans (client.copy_plan), then runs.

Callers import the engine's names from here, so that how it is cut into modules (locations and filters
in client.copy_paths, planning in client.copy_plan, transfers and the summary in client.copy_run) stays
its own affair.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import BinaryIO

from client.copy_paths import (
    REMOTE_SCHEME,
    STDIO,
    ActionKind,
    Filter,
    Location,
    base_name,
    is_included,
    local_path_for,
    parse_location,
    remote_name_for,
    transfer_kind,
)
from client.copy_plan import (
    Action,
    Entry,
    Outcome,
    Plan,
    Planner,
    Status,
    plan_sync,
    plan_tree,
    same_content,
    sha256_file,
    walk_local,
)
from client.copy_run import (
    EXIT_FAILED,
    EXIT_LOCAL_FILE,
    PieceStream,
    Progress,
    RemoteStore,
    Report,
    Runner,
)
from client.errors import InvalidArgument

__all__ = [
    "DEFAULT_JOBS",
    "EXIT_FAILED",
    "EXIT_LOCAL_FILE",
    "MAX_JOBS",
    "READ_SIZE",
    "REMOTE_SCHEME",
    "STDIO",
    "Action",
    "ActionKind",
    "Copier",
    "Entry",
    "Filter",
    "Location",
    "Outcome",
    "PieceStream",
    "Plan",
    "Progress",
    "RemoteStore",
    "Report",
    "Status",
    "base_name",
    "is_included",
    "local_path_for",
    "parse_location",
    "plan_sync",
    "plan_tree",
    "remote_name_for",
    "same_content",
    "sha256_file",
    "transfer_kind",
    "walk_local",
]

DEFAULT_JOBS = 4
MAX_JOBS = 64
READ_SIZE = 1024 * 1024


class Copier(Planner):
    """Plans and runs copies through one client; `jobs` transfers (and hashes) run at once.

    A dry run and a real run share the plan, so they decide exactly alike; only `run` moves data.
    """

    def __init__(
        self,
        client: RemoteStore,
        jobs: int = DEFAULT_JOBS,
        *,
        stdin: BinaryIO | None = None,
        stdout: BinaryIO | None = None,
        policy: str | None = None,
    ) -> None:
        """`policy`: the redundancy policy of every file the run writes to the cluster (None: the default)."""
        if not 1 <= jobs <= MAX_JOBS:
            raise InvalidArgument(f"jobs must be between 1 and {MAX_JOBS}")
        super().__init__(client, jobs)
        self._runner = Runner(client, jobs, stdin=stdin, stdout=stdout, policy=policy)

    def run(
        self, actions: Sequence[Action], progress: Progress, on_outcome: Callable[[Outcome], None]
    ) -> list[Outcome]:
        """See Runner.run: every transfer, then every deletion, `jobs` at a time, one Outcome each."""
        return self._runner.run(actions, progress, on_outcome)
