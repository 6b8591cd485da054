"""`dfs upload`, `dfs download` and `dfs cat`: one file's bytes between the cluster and a local file or a pipe.

A download must never leave a half-written or unverified file under the real name, so files are written
beside their target and renamed into place only once every byte has verified.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import click

from client.atomic import write_atomically
from client.cli_params import policy_option, version_option
from client.cli_settings import Settings, pass_settings
from client.format import human_size, plural
from client.models import VersionInfo
from client.progress import progress_bar
from client.streams import DownloadStream


def _parse_meta(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    metadata: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", ctx=ctx, param=param)
        metadata[key] = value
    return metadata


def _non_empty(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not value:
        raise click.BadParameter("must not be empty", ctx=ctx, param=param)
    return value


@click.command()
@click.argument("path", metavar="PATH|-")
@click.option(
    "--name", callback=_non_empty, help="Name to store under (default: the file's basename; required with -)."
)
@click.option("--content-type", default="", help="MIME type recorded with the version.")
@click.option(
    "--meta",
    multiple=True,
    callback=_parse_meta,
    metavar="KEY=VALUE",
    help="Metadata entry; repeat for several.",
)
@policy_option(
    "Redundancy policy of this version, e.g. rep:3 or ec:4+2 (default: the bucket's, else the cluster's)."
)
@pass_settings
def upload(
    settings: Settings, path: str, name: str | None, content_type: str, meta: dict[str, str], policy: str | None
) -> None:
    """Upload a file (or stdin with -) as a new version.

    A --policy the cluster cannot meet (fewer usable peers than it needs) is refused before any data
    is stored, with exit code 6.
    """
    source: Path | BinaryIO
    if path == "-":
        if name is None:
            raise click.UsageError("--name is required when uploading from stdin")
        source, total = sys.stdin.buffer, None
    else:
        source = Path(path)
        total = source.stat().st_size
    label = name or os.path.basename(path)
    with settings.client() as client, progress_bar(settings, total, label) as bar:
        result = client.upload(
            source, name=name, content_type=content_type, metadata=meta, progress=bar.update, policy=policy
        )
    if settings.json:
        settings.emit(result.to_dict())
        return
    v = result.version
    settings.say(
        f"uploaded {v.name} version {v.version} ({human_size(v.size)}, {plural(v.chunk_count, 'chunk')}"
        f" on {plural(len(result.peers), 'peer')}, {v.policy or 'cluster default'}) file id {v.file_id}"
        f" version id {v.version_id}"
    )


@click.command()
@click.argument("ref", metavar="NAME|FILE_ID")
@click.argument("out", required=False, metavar="[OUT|-]")
@version_option("Version to fetch (default: the latest).")
@click.option("--offset", type=click.IntRange(min=0), default=0, help="First byte to fetch.")
@click.option("--length", type=click.IntRange(min=0), default=0, help="Bytes to fetch (0: to the end).")
@pass_settings
def download(settings: Settings, ref: str, out: str | None, version: str | None, offset: int, length: int) -> None:
    """Download a file to OUT (default: its basename here) or to stdout with -."""
    with settings.client() as client, client.iter_download(ref, version, offset, length) as stream:
        if out == "-":
            written = _copy(settings, stream, sys.stdout.buffer)
            target = "-"
        else:
            path = _target_path(out, stream.info)
            written = _save_atomically(settings, stream, path)
            target = str(path)
    document = {
        "version": stream.info.to_dict(),
        "bytes_written": written,
        "offset": stream.offset,
        "path": target,
    }
    if settings.json:
        settings.emit(document, err=target == "-")
    elif target != "-":
        settings.say(f"downloaded {stream.info.name} version {stream.info.version} ({human_size(written)}) to {target}")


@click.command()
@click.argument("ref", metavar="NAME|FILE_ID")
@version_option("Version to print (default: the latest).")
@pass_settings
def cat(settings: Settings, ref: str, version: str | None) -> None:
    """Write a file's bytes to stdout as they arrive; the exit code says whether they verified."""
    with settings.client() as client, client.iter_download(ref, version) as stream:
        written = _copy(settings, stream, sys.stdout.buffer)
    if settings.json:
        settings.emit({"version": stream.info.to_dict(), "bytes_written": written, "path": "-"}, err=True)


def _target_path(out: str | None, info: VersionInfo) -> Path:
    """OUT as given, or inside OUT when it is a directory, or the stored name's basename here."""
    base = PurePosixPath(info.name).name
    if base in ("", ".", ".."):
        base = info.file_id
    if out is None:
        return Path(base)
    path = Path(out)
    return path / base if path.is_dir() else path


def _copy(settings: Settings, stream: DownloadStream, dest: BinaryIO) -> int:
    with progress_bar(settings, stream.length, stream.info.name) as bar:
        for piece in stream:
            dest.write(piece)
            bar.update(len(piece))
    dest.flush()
    return stream.received


def _save_atomically(settings: Settings, stream: DownloadStream, path: Path) -> int:
    """`path` is either untouched or the complete, verified file (see client.atomic)."""
    with progress_bar(settings, stream.length, stream.info.name) as bar:
        return write_atomically(_counted(stream, bar.update), path)


def _counted(pieces: Iterable[bytes], update: Callable[[int], object]) -> Iterator[bytes]:
    for piece in pieces:
        update(len(piece))
        yield piece
