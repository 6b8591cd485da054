"""How `dfs` fails: every failure, a command-line mistake included, ends as one stderr line and an exit code.

Scripts read the exit code and people read one line, so no traceback and no help page ever stands in for
an error. The group also lets global options follow the sub-command, where people tend to type them.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import suppress
from typing import Any, NoReturn

import click

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

EXIT_LOCAL_FILE = 2
EXIT_DECLINED = 1
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
_JSON_ERRORS = "dfs.json_errors"  # root context meta: whether failures are reported as JSON


class DfsGroup(click.Group):
    """Turns every failure, command-line mistakes included, into one stderr line and its exit code.

    The line is `dfs: error: MESSAGE`, and for a command-line mistake (unknown option or command,
    missing or bad argument) `dfs: error: MESSAGE (see 'dfs CMD --help')` with exit 2. With --json it
    is instead one JSON object, the same for every failure:

        {"error": {"type": "usage", "message": "No such option '--bogus'", "exit_code": 2}}

    where `type` is "usage", one of the SDK's `error_type`s ("not_found", "peer_unreachable", ...),
    "local_file", "declined" (a confirmation answered no), "aborted" or "unexpected". Ctrl-C exits 130
    silently. It also moves global options given after the sub-command to before it (see
    `hoist_global_options`). Nested groups are DfsGroups too, and a group run without a sub-command is
    a mistake like any other (one line), not a help page.
    """

    group_class = type

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("no_args_is_help", False)
        super().__init__(*args, **kwargs)

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.ClickException as exc:  # the root's own options: raised before any invoke()
            json_errors = _json_requested(args) if parent is None else None
            _report_click_error(exc, parent or getattr(exc, "ctx", None), json_errors=json_errors)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if ctx.parent is None:
            args, ctx.meta[_JSON_ERRORS] = hoist_global_options(self, ctx, args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.Exit:
            raise
        except click.ClickException as exc:
            _report_click_error(exc, ctx)
        except click.exceptions.Abort:
            fail(ctx, "aborted", 1, "aborted")
        except DfsClientError as exc:
            fail(ctx, str(exc), exc.exit_code, exc.error_type)
        except BrokenPipeError:
            _silence_stdout()
            ctx.exit(EXIT_BROKEN_PIPE)
        except OSError as exc:
            fail(ctx, _os_message(exc), EXIT_LOCAL_FILE, "local_file")
        except KeyboardInterrupt:
            ctx.exit(EXIT_INTERRUPTED)
        except Exception as exc:  # a bug still gets one readable line rather than a traceback
            fail(ctx, f"unexpected {type(exc).__name__}: {exc}", 1, "unexpected")


def hoist_global_options(root: click.Group, ctx: click.Context, args: list[str]) -> tuple[list[str], bool]:
    """`args` with the root's options that follow a sub-command moved before it, and whether --json is set.

    An option is moved only where the command at hand (a sub-group or the final command) does not define
    one of the same name: `dfs profile set NAME --peer X` keeps its own --peer. The values of the
    commands' own options are skipped, so `--name --json` stays a name, and nothing after `--` moves.
    """
    globals_ = _option_arity(root)
    command: click.Command = root
    own = globals_
    kept: list[str] = []
    hoisted: list[str] = []
    command_at: int | None = None
    i = 0
    while i < len(args):
        token = args[i]
        if token == "--":
            kept += args[i:]
            break
        if token.startswith("-") and token != "-":
            name = token.split("=", 1)[0]
            moves = command is not root and name in globals_ and name not in own
            width = 1 if "=" in token else 1 + (globals_[name] if moves else own.get(name, 0))
            if moves and i + width > len(args):
                raise click.UsageError(f"Option '{name}' requires an argument.", ctx)
            (hoisted if moves else kept).extend(args[i : i + width])
            i += width
            continue
        kept.append(token)
        i += 1
        if isinstance(command, click.Group):
            command_at = len(kept) - 1 if command_at is None else command_at
            sub = command.get_command(ctx, token)
            if sub is None:  # an unknown command: click reports it, with the rest left as it was
                hoisted += ["--json"] if _json_requested(args[i:]) else []
                kept += args[i:]
                break
            command, own = sub, _option_arity(sub)
    if command_at is None:
        return kept, "--json" in kept
    front = [*kept[:command_at], *hoisted]
    return [*front, *kept[command_at:]], "--json" in front


def _option_arity(command: click.Command) -> dict[str, int]:
    """How many values each option name of `command` takes (0 for a flag)."""
    arity: dict[str, int] = {}
    for param in command.params:
        if isinstance(param, click.Option):
            takes = 0 if param.is_flag or param.count else param.nargs
            arity.update(dict.fromkeys([*param.opts, *param.secondary_opts], takes))
    return arity


def _json_requested(args: list[str]) -> bool:
    """Whether --json appears as an option, for failures that happen before the options are parsed."""
    return "--json" in (args[: args.index("--")] if "--" in args else args)


def _report_click_error(
    exc: click.ClickException, ctx: click.Context | None, *, json_errors: bool | None = None
) -> NoReturn:
    if isinstance(exc, click.UsageError):
        command = _command_path(exc.ctx, ctx)
        hint = f"see '{command} --help'"
        fail(ctx, exc.format_message(), exc.exit_code, "usage", hint=hint, json_errors=json_errors)
    fail(ctx, exc.format_message(), exc.exit_code, "error", json_errors=json_errors)


def _command_path(failed: click.Context | None, ctx: click.Context | None) -> str:
    """The command whose help fits the mistake: the failing one, which some parser errors do not name;
    then it is the sub-command `ctx` was about to run."""
    if failed is not None:
        return failed.command_path
    if ctx is None:
        return "dfs"
    return f"{ctx.command_path} {ctx.invoked_subcommand}" if ctx.invoked_subcommand else ctx.command_path


def fail(
    ctx: click.Context | None,
    message: str,
    code: int,
    error_type: str,
    *,
    hint: str | None = None,
    json_errors: bool | None = None,
) -> NoReturn:
    """Prints the failure as one line, text or (with --json) a JSON object, and exits with `code`."""
    text = " ".join(message.split())
    if hint is not None and text.endswith("."):  # click's sentences: the hint closes the line instead
        text = text[:-1]
    if json_errors is None:
        json_errors = bool(ctx is not None and ctx.find_root().meta.get(_JSON_ERRORS))
    if json_errors:
        document = {"error": {"type": error_type, "message": text, "exit_code": code}}
        click.echo(json.dumps(document, sort_keys=True), err=True)
    else:
        click.echo(f"dfs: error: {text}{f' ({hint})' if hint else ''}", err=True)
    raise click.exceptions.Exit(code)


def _os_message(exc: OSError) -> str:
    if exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)


def _silence_stdout() -> None:
    """Points stdout at /dev/null so the interpreter's final flush cannot fail again on the closed pipe."""
    with suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def exit_codes_epilog() -> str:
    """The exit codes, from the error classes themselves so the help cannot drift from them."""
    codes = [
        (0, "success"),
        (1, "any other error, or a confirmation declined"),
        (InvalidArgument.exit_code, "a command-line mistake, bad arguments, or a local file that cannot be read"),
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
