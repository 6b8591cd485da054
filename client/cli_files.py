"""`dfs list`, `ls`, `info`, `versions`, `delete` and `rm`: what the cluster holds, and removing it.

None of these commands moves a file's bytes; a delete under a prefix asks first on a terminal, since
one short prefix can name far more files than the user has in mind.
"""

from __future__ import annotations

import sys

import click

from client.cli_group import EXIT_DECLINED, fail
from client.cli_params import version_option
from client.cli_settings import Settings, pass_settings
from client.errors import NotFoundError
from client.format import files_table, human_size, plural, prefix_lines, version_details, versions_table
from client.models import VersionInfo
from client.sdk import DfsClient


@click.command(name="list")
@click.option("--prefix", default="", help="Only names starting with this.")
@pass_settings
def list_files(settings: Settings, prefix: str) -> None:
    """List the latest version of every file."""
    with settings.client() as client:
        files = list(client.list(prefix=prefix))
    if settings.json:
        settings.emit({"files": [f.to_dict() for f in files]})
    else:
        click.echo(files_table(files))


@click.command()
@click.argument("ref", metavar="NAME|FILE_ID")
@version_option("Version to describe (default: the latest).")
@pass_settings
def info(settings: Settings, ref: str, version: str | None) -> None:
    """Show every field of a version and where its chunks are."""
    with settings.client() as client:
        details = client.info(ref, version)
    settings.show(details, version_details)


@click.command()
@click.argument("ref", metavar="NAME|FILE_ID")
@pass_settings
def versions(settings: Settings, ref: str) -> None:
    """List every version of a file, newest first."""
    with settings.client() as client:
        found = client.versions(ref)
    if settings.json:
        settings.emit({"versions": [v.to_dict() for v in found]})
    else:
        click.echo(versions_table(found))


@click.command()
@click.argument("ref", metavar="NAME|FILE_ID")
@version_option("Delete only this version (default: the whole file).")
@pass_settings
def delete(settings: Settings, ref: str, version: str | None) -> None:
    """Delete a file with all its versions, or one version."""
    with settings.client() as client:
        deleted = client.delete(ref, version)
    if settings.json:
        settings.emit({"deleted": [v.to_dict() for v in deleted]})
        return
    for v in deleted:
        settings.say(f"deleted {v.name} version {v.version} ({v.version_id})")


@click.command(name="ls")
@click.argument("prefix", default="", required=False)
@click.option("-r", "--recursive", is_flag=True, help="Every file under PREFIX, at any depth.")
@pass_settings
def ls(settings: Settings, prefix: str, recursive: bool) -> None:
    """List PREFIX like a folder: the "sub/" prefixes one level down first (PRE lines), then its files.

    A name's "/" separates folders, e.g. `dfs ls photos/`. The peer groups the names, so each page of
    the listing stays bounded however many files a prefix holds.
    """
    folders: dict[str, None] = {}  # in the peer's order, each once however the pages fall
    files: list[VersionInfo] = []
    with settings.client() as client:
        entries = client.list(prefix=prefix) if recursive else client.ls(prefix, delimiter="/")
        for entry in entries:
            if isinstance(entry, str):
                folders[entry] = None
            else:
                files.append(entry)
    prefixes = list(folders)
    if settings.json:
        settings.emit({"prefixes": prefixes, "files": [f.to_dict() for f in files]})
        return
    if prefixes:
        click.echo(prefix_lines(prefixes))
    if files:
        click.echo(files_table(files))


def _prefix_option(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    if "" in values:
        raise click.BadParameter("an empty prefix would match every file; name a prefix", ctx=ctx, param=param)
    return values


@click.command()
@click.argument("refs", nargs=-1, metavar="[NAME|FILE_ID]...")
@click.option(
    "-r",
    "--recursive",
    "prefixes",
    multiple=True,
    metavar="PREFIX",
    callback=_prefix_option,
    help="Also delete every file whose name starts with PREFIX; repeat for several.",
)
@click.option("-y", "--yes", is_flag=True, help="Delete under a prefix without asking, even on a terminal.")
@click.option("-n", "--dry-run", is_flag=True, help="Only list what would be deleted.")
@pass_settings
def rm(settings: Settings, refs: tuple[str, ...], prefixes: tuple[str, ...], yes: bool, dry_run: bool) -> None:
    """Delete files with all their versions: each NAME, and with --recursive everything under PREFIX.

    On a terminal a prefix delete first says how many files it matched and asks; without a terminal
    (a script, a pipe) it goes ahead, as `rm` does. --dry-run lists the files and deletes nothing.
    """
    if not refs and not prefixes:
        raise click.UsageError("nothing to delete: give NAME... or --recursive PREFIX")
    with settings.client() as client:
        under = _files_under(client, prefixes)
        if dry_run:
            named = [client.info(ref) for ref in refs]
            _report_dry_run(settings, [*named, *under])
            return
        if under and not yes and sys.stdin.isatty():
            _confirm_prefix_delete(prefixes, under)
        deleted = [v for ref in refs for v in _delete_file(settings, client, ref, missing_ok=False)]
        deleted += [v for f in under for v in _delete_file(settings, client, f.file_id, missing_ok=True)]
    if settings.json:
        settings.emit({"deleted": [v.to_dict() for v in deleted], "dry_run": False})


def _files_under(client: DfsClient, prefixes: tuple[str, ...]) -> list[VersionInfo]:
    """The latest version of each file under any of `prefixes`, each file once."""
    found: dict[str, VersionInfo] = {}
    for prefix in prefixes:
        for info in client.list(prefix=prefix):
            found.setdefault(info.file_id, info)
    return list(found.values())


def _report_dry_run(settings: Settings, files: list[VersionInfo]) -> None:
    if settings.json:
        settings.emit({"deleted": [], "would_delete": [f.to_dict() for f in files], "dry_run": True})
        return
    for f in files:
        click.echo(f"(dry run) would delete {f.name} (latest version {f.version}, {human_size(f.size)})")
    click.echo(f"(dry run) {plural(len(files), 'file')} would be deleted; nothing was deleted", err=True)


def _confirm_prefix_delete(prefixes: tuple[str, ...], files: list[VersionInfo]) -> None:
    """Asks on the terminal; anything but yes (Enter, n, end of input) leaves every file in place."""
    where = ", ".join(repr(p) for p in prefixes)
    total = human_size(sum(f.size for f in files))
    question = f"delete {plural(len(files), 'file')} under {where} ({total} in their latest versions), every version?"
    try:
        agreed = click.confirm(question, default=False, err=True)
    except click.exceptions.Abort:
        agreed = False
    if not agreed:
        fail(click.get_current_context(), "not confirmed: nothing was deleted", EXIT_DECLINED, "declined")


def _delete_file(settings: Settings, client: DfsClient, ref: str, *, missing_ok: bool) -> list[VersionInfo]:
    """Deletes every version of `ref`; a file listed under a prefix that is already gone is skipped."""
    try:
        deleted = client.delete(ref)
    except NotFoundError:
        if missing_ok:
            return []
        raise
    if deleted and not settings.json:
        settings.say(f"deleted {deleted[0].name} ({plural(len(deleted), 'version')})")
    return deleted
