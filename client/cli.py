"""`dfs`, the command line over DfsClient: the root group, its global options, and the commands it holds.

With --json each command prints exactly one JSON document on stdout (on stderr when the file's bytes go
to stdout), otherwise human text with IEC sizes; every failure is one line (client.cli_group). The token
is never printed, except by `token create`, whose whole point is to show a new one once (as `s3-key create`
shows a new S3 secret).
"""

from __future__ import annotations

import click

from client import (
    _grpc_logging,  # noqa: F401  (first: it must run before grpc is imported)
    profiles,
)
from client.allocator import tune_allocator
from client.cli_admin import (
    bucket,
    bucket_list,
    bucket_set_policy,
    s3_key,
    s3_key_create,
    s3_key_list,
    s3_key_revoke,
    status,
    token,
    token_create,
    token_list,
    token_revoke,
    whoami,
)
from client.cli_copy import cp, sync
from client.cli_files import delete, info, list_files, ls, rm, versions
from client.cli_group import (
    EXIT_BROKEN_PIPE,
    EXIT_DECLINED,
    EXIT_INTERRUPTED,
    EXIT_LOCAL_FILE,
    DfsGroup,
    exit_codes_epilog,
    hoist_global_options,
)
from client.cli_profile import (
    PROFILE_ERROR,
    profile,
    profile_current,
    profile_delete,
    profile_list,
    profile_set,
    profile_show,
)
from client.cli_settings import FROM_ENV, FROM_FLAG, Given, Settings, resolve
from client.cli_transfer import cat, download, upload
from client.sdk import DEFAULT_PEER, ENV_TLS_CA, ENV_TOKEN

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_DECLINED",
    "EXIT_INTERRUPTED",
    "EXIT_LOCAL_FILE",
    "DfsGroup",
    "Settings",
    "bucket",
    "bucket_list",
    "bucket_set_policy",
    "cat",
    "cli",
    "cp",
    "delete",
    "download",
    "hoist_global_options",
    "info",
    "list_files",
    "ls",
    "main",
    "profile",
    "profile_current",
    "profile_delete",
    "profile_list",
    "profile_set",
    "profile_show",
    "rm",
    "s3_key",
    "s3_key_create",
    "s3_key_list",
    "s3_key_revoke",
    "status",
    "sync",
    "token",
    "token_create",
    "token_list",
    "token_revoke",
    "upload",
    "versions",
    "whoami",
]


@click.group(
    name="dfs",
    cls=DfsGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=exit_codes_epilog(),
)
@click.option(
    "--peer",
    envvar="DFS_PEER",
    default=None,
    metavar="HOST:PORT",
    help=f"Any peer of the cluster (env DFS_PEER; default: the profile's, else {DEFAULT_PEER}).",
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
@click.option(
    "--profile",
    "profile_name",
    envvar=profiles.ENV_PROFILE,
    default=None,
    metavar="NAME",
    help=f"Connection settings saved by `dfs profile set` (env {profiles.ENV_PROFILE}); flags and their"
    " environment variables override them.",
)
@click.pass_context
def cli(
    ctx: click.Context,
    peer: str | None,
    tls_ca: str | None,
    token: str | None,
    as_json: bool,
    quiet: bool,
    timeout: float | None,
    profile_name: str | None,
) -> None:
    """Store and fetch files in a dfs peer-to-peer cluster.

    Global options may come before or after the command, e.g. `dfs ls photos/ --json`.
    """
    ctx.obj = resolve(
        peer=_given(ctx, "peer", peer),
        tls_ca=_given(ctx, "tls_ca", tls_ca),
        token=_given(ctx, "token", token),
        profile=_chosen_profile(ctx, profile_name),
        profile_source=_given(ctx, "profile_name", profile_name).source,
        json=as_json,
        quiet=quiet,
        timeout=timeout,
    )


def _given(ctx: click.Context, name: str, value: str | None) -> Given:
    source = ctx.get_parameter_source(name)
    return Given(value, FROM_ENV if source == click.core.ParameterSource.ENVIRONMENT else FROM_FLAG)


def _chosen_profile(ctx: click.Context, name: str | None) -> profiles.Profile | None:
    """The profile named by --profile or DFS_PROFILE; a name that is not saved is a usage error.

    The `profile` commands still run without it (they are how one creates or repairs it); they find
    why in the context's meta.
    """
    if name is None:
        return None
    try:
        return profiles.get_profile(name)
    except profiles.ProfileError as exc:
        if ctx.invoked_subcommand == "profile":
            ctx.meta[PROFILE_ERROR] = exc
            return None
        if isinstance(exc, profiles.UnknownProfile):
            raise click.UsageError(str(exc), ctx) from None
        raise


for _command in (
    upload,
    download,
    list_files,
    info,
    versions,
    delete,
    ls,
    cat,
    rm,
    profile,
    status,
    token,
    s3_key,
    bucket,
    whoami,
    cp,
    sync,
):
    cli.add_command(_command)


def main() -> None:
    """Console-script entry point (`dfs`)."""
    tune_allocator()
    cli.main(prog_name="dfs")


if __name__ == "__main__":
    main()
