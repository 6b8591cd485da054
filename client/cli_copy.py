"""`dfs cp` and `dfs sync`: the click face of client.copying, which does the planning and the transfers.

Each file is reported as it completes and a failing one does not stop the others, so a long copy is
never silent and never lost to one bad file (the exact lines: `_carry_out`).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from typing import Any

import click

from client.cli_params import policy_option
from client.cli_settings import Settings, pass_settings
from client.copying import (
    DEFAULT_JOBS,
    MAX_JOBS,
    Copier,
    Filter,
    Outcome,
    Plan,
    Report,
    parse_location,
)
from client.progress import IecBar, progress_bar

FILTERS_KEY = "dfs.copy.filters"


def ordered_filters(args: Sequence[str]) -> list[Filter]:
    """--include and --exclude in the order given on the command line: the last matching one wins, so
    their interleaving matters, and click hands each repeated option over as a separate tuple."""
    filters: list[Filter] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            break
        for flag, include in (("--include", True), ("--exclude", False)):
            if arg == flag and i + 1 < len(args):
                filters.append(Filter(include, args[i + 1]))
                i += 1
            elif arg.startswith(flag + "="):
                filters.append(Filter(include, arg[len(flag) + 1 :]))
        i += 1
    return filters


class _FilteringCommand(click.Command):
    """Records the order of --include/--exclude before click parses them into two tuples."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[FILTERS_KEY] = ordered_filters(args)
        return super().parse_args(ctx, args)


def _filters(include: tuple[str, ...], exclude: tuple[str, ...]) -> list[Filter]:
    recorded: list[Filter] = click.get_current_context().meta.get(FILTERS_KEY, [])
    if sorted(f.pattern for f in recorded if f.include) == sorted(include) and sorted(
        f.pattern for f in recorded if not f.include
    ) == sorted(exclude):
        return recorded
    # Only if the scan ever disagreed with click: excludes last, the choice that copies less.
    return [Filter(True, p) for p in include] + [Filter(False, p) for p in exclude]


def _transfer_options(fn: Any) -> Any:
    options = [
        click.option(
            "-j",
            "--jobs",
            type=click.IntRange(1, MAX_JOBS),
            default=DEFAULT_JOBS,
            show_default=True,
            help="Files transferred in parallel.",
        ),
        click.option(
            "--include",
            multiple=True,
            metavar="GLOB",
            help="Copy the files whose relative path matches (repeatable; the last matching filter wins).",
        ),
        click.option(
            "--exclude",
            multiple=True,
            metavar="GLOB",
            help="Skip the files whose relative path matches (repeatable; the last matching filter wins).",
        ),
        click.option("-n", "--dry-run", is_flag=True, help="Print what would be done; transfer nothing."),
        policy_option(
            "Redundancy policy of every file written to the cluster, e.g. rep:3 (default: each name's"
            " bucket's, else the cluster's)."
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@click.command(cls=_FilteringCommand)
@click.argument("src", metavar="SRC")
@click.argument("dst", metavar="DST")
@click.option("-r", "--recursive", is_flag=True, help="Copy a local directory tree, or every file under a prefix.")
@_transfer_options
@pass_settings
def cp(
    settings: Settings,
    src: str,
    dst: str,
    recursive: bool,
    jobs: int,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    dry_run: bool,
    policy: str | None,
) -> None:
    """Copy files between local paths and the cluster.

    \b
    A remote location is dfs:NAME (one file) or dfs:PREFIX/ (a folder); anything else is a local
    path, - being stdin or stdout. Examples:
      dfs cp report.pdf dfs:docs/          upload as docs/report.pdf
      dfs cp -r photos dfs:backup/photos/  upload a directory tree
      dfs cp -r dfs:backup/photos/ here    download every file under a prefix
      dfs cp dfs:a.txt dfs:b.txt           copy within the cluster
    """
    source, dest = parse_location(src), parse_location(dst)
    with settings.client() as client:
        copier = Copier(client, jobs, stdin=sys.stdin.buffer, stdout=sys.stdout.buffer, policy=policy)
        plan = copier.plan_cp(source, dest, recursive=recursive, filters=_filters(include, exclude))
        _carry_out(settings, copier, plan, dry_run=dry_run, label="cp", data_on_stdout=dest.is_stdio)


@click.command(cls=_FilteringCommand)
@click.argument("src", metavar="SRC")
@click.argument("dst", metavar="DST")
@click.option("--delete", is_flag=True, help="Also delete destination files that the source does not have.")
@_transfer_options
@pass_settings
def sync(
    settings: Settings,
    src: str,
    dst: str,
    delete: bool,
    jobs: int,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    dry_run: bool,
    policy: str | None,
) -> None:
    """Make DST hold what SRC holds, copying only the files that differ.

    \b
    SRC and DST are a local directory and a remote folder (dfs:PREFIX/), either way round, or two
    remote folders. A file is copied when it is missing from DST or differs in size or SHA-256;
    remote sizes and hashes come from the listing, and a local file is hashed only when the sizes
    are equal. With --delete, files in DST that SRC lacks are deleted (excluded files never are).
    """
    source, dest = parse_location(src), parse_location(dst)
    with settings.client() as client:
        copier = Copier(client, jobs, policy=policy)
        plan = copier.plan_sync(source, dest, filters=_filters(include, exclude), delete=delete)
        _carry_out(settings, copier, plan, dry_run=dry_run, label="sync", with_deletions=delete)


def _carry_out(
    settings: Settings,
    copier: Copier,
    plan: Plan,
    *,
    dry_run: bool,
    label: str,
    data_on_stdout: bool = False,
    with_deletions: bool = False,
) -> None:
    """Runs (or, dry, prints) the plan, reports each file, then the summary; exits non-zero on failures.

    Output: one line per file as it completes (`upload: SRC to DST`, as `aws s3 cp` prints them), then a
    summary (`copied 12 files (34.5 MiB), 3 unchanged, 0 failed`); --quiet drops both, --json replaces them
    with one document. A file that fails prints one `dfs: error: ...` line on stderr and the others carry
    on; the command then exits with the failures' code. With --dry-run each planned action is printed as
    `(dry run) upload: SRC to DST` and nothing moves.
    """
    for refused in plan.refused:
        _error_line(refused)
    if dry_run:
        outcomes = [Outcome(a, "planned") for a in plan.actions]
        if not settings.json:
            for outcome in outcomes:
                click.echo(f"(dry run) {outcome.action.describe()}", err=data_on_stdout)
    else:
        with progress_bar(settings, plan.transfer_bytes, label) as bar:
            reporter = _Reporter(bar, quiet=settings.quiet or settings.json or data_on_stdout)
            outcomes = copier.run(plan.actions, reporter.progress, reporter.outcome)
    listed = sorted(
        [*plan.refused, *outcomes, *plan.unchanged], key=lambda o: (o.action.kind == "delete", str(o.action.dest))
    )
    report = Report(listed, dry_run=dry_run)
    if settings.json:
        settings.emit(report.to_dict(), err=data_on_stdout)
    elif not data_on_stdout:
        settings.say(report.summary(with_deletions=with_deletions))
    if report.exit_code:
        click.get_current_context().exit(report.exit_code)


class _Reporter:
    """Receives the copier's callbacks: bytes from worker threads, finished files on the main thread."""

    def __init__(self, bar: IecBar, *, quiet: bool) -> None:
        self._bar = bar
        self._quiet = quiet
        self._lock = threading.Lock()

    def progress(self, n: int) -> None:
        with self._lock:
            self._bar.update(n)

    def outcome(self, outcome: Outcome) -> None:
        if outcome.status == "failed":
            _error_line(outcome, self._bar)
        elif not self._quiet:
            _echo(outcome.action.describe(), self._bar, err=False)


def _error_line(outcome: Outcome, bar: IecBar | None = None) -> None:
    action = outcome.action
    what = action.describe().replace(":", " failed:", 1)
    _echo(f"dfs: error: {what}: {' '.join(outcome.error.split())}", bar, err=True)


def _echo(text: str, bar: IecBar | None, *, err: bool) -> None:
    """A line of text that leaves a progress bar on the terminal intact (tqdm redraws it below)."""
    if bar is None or bar.disable:
        click.echo(text, err=err)
    else:
        bar.write(text, file=sys.stderr if err else sys.stdout)
