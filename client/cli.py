"""`dfs`: the command line over DfsClient.

Output contract: with --json each command prints exactly one JSON document on stdout (on stderr when
the file's bytes go to stdout), otherwise human text. Failures print one `dfs: error: ...` line on
stderr and exit with the error's code (see client.errors and the help epilog); usage errors keep click's
exit 2, Ctrl-C exits 130. Progress bars only ever go to an interactive stderr. The token (--token or
DFS_TOKEN) is never printed, except by `token create`, whose whole point is to show a new one once.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, NoReturn

import click
from tqdm import tqdm

from client import _grpc_logging  # noqa: F401  (first: it must run before grpc is imported)
from client.errors import (
    AuthenticationError,
    ClusterUnavailable,
    DfsClientError,
    IntegrityError,
    InvalidArgument,
    NotFoundError,
    PeerUnreachable,
    PermissionDeniedError,
)
from client.format import (
    cluster_details,
    files_table,
    human_size,
    token_details,
    tokens_table,
    version_details,
    versions_table,
)
from client.models import TOKEN_ROLES, VersionInfo
from client.sdk import DEFAULT_PEER, ENV_TLS_CA, ENV_TOKEN, DfsClient
from client.streams import DownloadStream

EXIT_LOCAL_FILE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


@dataclass(frozen=True)
class Settings:
    peer: str
    json: bool
    quiet: bool
    timeout: float | None
    tls_ca: str | None = None
    token: str | None = field(default=None, repr=False)

    def client(self) -> DfsClient:
        return DfsClient(self.peer, timeout=self.timeout, tls_ca=self.tls_ca, token=self.token)

    def show_progress(self) -> bool:
        return not self.quiet and not self.json and sys.stderr.isatty()

    def emit(self, document: Any, *, err: bool = False) -> None:
        click.echo(json.dumps(document, indent=2, sort_keys=True), err=err)

    def say(self, text: str, *, err: bool = False) -> None:
        """Confirmation text that --quiet suppresses (listings are printed regardless)."""
        if not self.quiet:
            click.echo(text, err=err)


pass_settings = click.make_pass_decorator(Settings)


class DfsGroup(click.Group):
    """Turns every expected failure of a command into one stderr line and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except DfsClientError as exc:
            _fail(ctx, str(exc), exc.exit_code)
        except BrokenPipeError:
            _silence_stdout()
            ctx.exit(EXIT_BROKEN_PIPE)
        except OSError as exc:
            _fail(ctx, _os_message(exc), EXIT_LOCAL_FILE)
        except KeyboardInterrupt:
            ctx.exit(EXIT_INTERRUPTED)
        except Exception as exc:  # a bug still gets one readable line rather than a traceback
            _fail(ctx, f"unexpected {type(exc).__name__}: {exc}", 1)


def _fail(ctx: click.Context, message: str, code: int) -> NoReturn:
    click.echo(f"dfs: error: {' '.join(message.split())}", err=True)
    ctx.exit(code)


def _os_message(exc: OSError) -> str:
    if exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)


def _silence_stdout() -> None:
    """Points stdout at /dev/null so the interpreter's final flush cannot fail again on the closed pipe."""
    with suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _exit_codes_epilog() -> str:
    """The exit codes, from the error classes themselves so the help cannot drift from them."""
    codes = [
        (0, "success"),
        (1, "any other error"),
        (InvalidArgument.exit_code, "bad arguments, or a local file (the CA certificate too) that cannot be read"),
        (PeerUnreachable.exit_code, "peer unreachable (TLS handshake failures included)"),
        (NotFoundError.exit_code, "not found"),
        (IntegrityError.exit_code, "integrity failure"),
        (ClusterUnavailable.exit_code, "the cluster cannot serve the request right now"),
        (AuthenticationError.exit_code, "authentication failed: no token, or an unknown or revoked one"),
        (PermissionDeniedError.exit_code, "permission denied: the token's role does not allow it"),
        (EXIT_INTERRUPTED, "interrupted"),
    ]
    # \b keeps click from rewrapping the lines into one paragraph.
    return "\b\nExit codes:\n" + "\n".join(f"  {code:<3}  {text}" for code, text in codes)


@click.group(
    cls=DfsGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=_exit_codes_epilog()
)
@click.option(
    "--peer",
    envvar="DFS_PEER",
    default=DEFAULT_PEER,
    show_default=True,
    metavar="HOST:PORT",
    help="Any peer of the cluster (env DFS_PEER).",
)
@click.option(
    "--tls-ca",
    envvar=ENV_TLS_CA,
    default=None,
    metavar="PATH",
    help=f"CA certificate (PEM) that signed the peers' certificates; connect over TLS (env {ENV_TLS_CA}).",
)
@click.option(
    "--token",
    envvar=ENV_TOKEN,
    default=None,
    metavar="TEXT",
    help=f"Access token sent with every request (prefer env {ENV_TOKEN}: command lines are visible to others).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or confirmations.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Deadline of each request (default: none).",
)
@click.pass_context
def cli(
    ctx: click.Context,
    peer: str,
    tls_ca: str | None,
    token: str | None,
    as_json: bool,
    quiet: bool,
    timeout: float | None,
) -> None:
    """Store and fetch files in a dfs peer-to-peer cluster."""
    ctx.obj = Settings(peer=peer, json=as_json, quiet=quiet, timeout=timeout, tls_ca=tls_ca, token=token)


def _parse_meta(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    metadata: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", ctx=ctx, param=param)
        metadata[key] = value
    return metadata


def _progress(settings: Settings, total: int | None, label: str) -> tqdm[Any]:
    return tqdm(
        total=total,
        desc=label,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        disable=not settings.show_progress(),
        leave=False,
        dynamic_ncols=True,
    )


@cli.command()
@click.argument("path", metavar="PATH|-")
@click.option("--name", help="Name to store under (default: the file's basename; required with -).")
@click.option("--content-type", default="", help="MIME type recorded with the version.")
@click.option(
    "--meta",
    multiple=True,
    callback=_parse_meta,
    metavar="KEY=VALUE",
    help="Metadata entry; repeat for several.",
)
@pass_settings
def upload(settings: Settings, path: str, name: str | None, content_type: str, meta: dict[str, str]) -> None:
    """Upload a file (or stdin with -) as a new version."""
    source: Path | BinaryIO
    if path == "-":
        if not name:
            raise click.UsageError("--name is required when uploading from stdin")
        source, total = sys.stdin.buffer, None
    else:
        source = Path(path)
        total = source.stat().st_size
    label = name or os.path.basename(path)
    with settings.client() as client, _progress(settings, total, label) as bar:
        result = client.upload(
            source, name=name, content_type=content_type, metadata=meta, progress=bar.update
        )
    if settings.json:
        settings.emit(result.to_dict())
        return
    v = result.version
    settings.say(
        f"uploaded {v.name} version {v.version} ({human_size(v.size)}, {_plural(v.chunk_count, 'chunk')}"
        f" on {_plural(len(result.peers), 'peer')}) file id {v.file_id} version id {v.version_id}"
    )


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


@cli.command()
@click.argument("ref", metavar="NAME|FILE_ID")
@click.argument("out", required=False, metavar="[OUT|-]")
@click.option("--version", "version", metavar="N|VERSION_ID", help="Version to fetch (default: the latest).")
@click.option("--offset", type=click.IntRange(min=0), default=0, help="First byte to fetch.")
@click.option("--length", type=click.IntRange(min=0), default=0, help="Bytes to fetch (0: to the end).")
@pass_settings
def download(
    settings: Settings, ref: str, out: str | None, version: str | None, offset: int, length: int
) -> None:
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
        settings.say(
            f"downloaded {stream.info.name} version {stream.info.version} ({human_size(written)}) to {target}"
        )


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
    with _progress(settings, stream.length, stream.info.name) as bar:
        for piece in stream:
            dest.write(piece)
            bar.update(len(piece))
    dest.flush()
    return stream.received


def _save_atomically(settings: Settings, stream: DownloadStream, path: Path) -> int:
    """Writes to a temporary file beside `path` and renames it only once the data is verified.

    Any failure (integrity, network, Ctrl-C) removes the temporary file, so `path` is either untouched
    or the complete, verified file.
    """
    parent = path.parent
    if not parent.is_dir():
        raise FileNotFoundError(2, "directory does not exist", str(parent))
    tmp = parent / f".{path.name}.{uuid.uuid4().hex[:8]}.part"
    try:
        with tmp.open("xb") as fh:  # a fresh name under the umask, like any file the user creates
            written = _copy(settings, stream, fh)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return written


@cli.command(name="list")
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


def _version_option(help_text: str) -> Any:
    return click.option("--version", "version", metavar="N|VERSION_ID", help=help_text)


@cli.command()
@click.argument("ref", metavar="NAME|FILE_ID")
@_version_option("Version to describe (default: the latest).")
@pass_settings
def info(settings: Settings, ref: str, version: str | None) -> None:
    """Show every field of a version and where its chunks are."""
    with settings.client() as client:
        details = client.stat(ref, version)
    if settings.json:
        settings.emit(details.to_dict())
    else:
        click.echo(version_details(details))


@cli.command()
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


@cli.command()
@click.argument("ref", metavar="NAME|FILE_ID")
@_version_option("Delete only this version (default: the whole file).")
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


@cli.command()
@pass_settings
def status(settings: Settings) -> None:
    """Show the cluster as the peer sees it: members, ring, metadata store and each member's repair
    counters (chunks held, under-replicated, misplaced, repaired, scrub progress, corrupt, GC)."""
    with settings.client() as client:
        current = client.status()
    if settings.json:
        settings.emit(current.to_dict())
    else:
        click.echo(cluster_details(current))


@cli.group()
def token() -> None:
    """Create, list and revoke access tokens (needs an admin token)."""


@token.command(name="create")
@click.option("--role", type=click.Choice(TOKEN_ROLES), required=True, help="What the token may do.")
@click.option("--name", default="", help="A label to recognise the token by, e.g. who holds it.")
@pass_settings
def token_create(settings: Settings, role: str, name: str) -> None:
    """Create a token and print it on stdout; it is shown only this once."""
    with settings.client() as client:
        secret, created = client.create_token(role, name)
    if settings.json:
        settings.emit({"token": secret, "info": created.to_dict()})
    else:
        click.echo(secret)
    settings.say(
        f"created {created.role} token {created.token_id}: the token is shown only once, store it now", err=True
    )


@token.command(name="list")
@pass_settings
def token_list(settings: Settings) -> None:
    """List every token, revoked ones included (never their secrets)."""
    with settings.client() as client:
        tokens = client.list_tokens()
    if settings.json:
        settings.emit({"tokens": [t.to_dict() for t in tokens]})
    else:
        click.echo(tokens_table(tokens))


@token.command(name="revoke")
@click.argument("token_id")
@pass_settings
def token_revoke(settings: Settings, token_id: str) -> None:
    """Revoke the token with this id (the ID column of `dfs token list`)."""
    with settings.client() as client:
        revoked = client.revoke_token(token_id)
    if settings.json:
        settings.emit(revoked.to_dict())
    else:
        label = f" ({revoked.name})" if revoked.name else ""
        settings.say(f"revoked {revoked.role} token {revoked.token_id}{label}")


@cli.command()
@pass_settings
def whoami(settings: Settings) -> None:
    """Show the token this client sends, as the peer sees it (id, role, name)."""
    with settings.client() as client:
        me = client.whoami()
    if settings.json:
        settings.emit(me.to_dict())
    else:
        click.echo(token_details(me))


def main() -> None:
    """Console-script entry point (`dfs`)."""
    cli.main(prog_name="dfs")


if __name__ == "__main__":
    main()
