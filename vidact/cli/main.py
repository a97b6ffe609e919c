"""Entry point: the typer app, global options and the one-line error policy.

Exit codes: 0 success, 1 partial failure (some inputs failed, the rest are done),
2 bad usage (unknown option or name, missing input). Errors are one line on stderr;
``--debug`` (or VIDACT_DEBUG=1 in the environment) shows the traceback.
"""

from __future__ import annotations

import logging
import os
import sys

import typer

from vidact import __version__
from vidact.cli.common import err_console
from vidact.errors import EXIT_USAGE, DiskFullError, VidactError, disk_full_cause, first_line

app = typer.Typer(
    name="vidact",
    help="Video action recognition: frames, TV-L1 flow, models, training, evaluation, profiling.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vidact {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    """vidact: train and evaluate video action recognition models from one CLI."""
    if debug:
        _session.debug = True


class _Session:
    """Per-``main()`` state: set by the root options, reset by every call (nothing leaks into os.environ)."""

    debug = False


_session = _Session()


def _register() -> None:
    """Attach every command group (one module each)."""
    from vidact.cli import data

    app.add_typer(data.app, name="data")

    from vidact.cli import frames

    app.add_typer(frames.app, name="frames")

    from vidact.cli import flow as flow_cli

    app.add_typer(flow_cli.app, name="flow")

    from vidact.cli import models as models_cli
    from vidact.cli import profile as profile_cli

    app.add_typer(models_cli.app, name="models")
    app.command("profile")(profile_cli.profile)

    from vidact.cli import eval as eval_cli
    from vidact.cli import predict as predict_cli
    from vidact.cli import train as train_cli

    app.command("train")(train_cli.train)
    app.add_typer(eval_cli.app, name="eval")
    app.command("predict")(predict_cli.predict)

    from vidact.cli import x3d as x3d_cli

    app.add_typer(x3d_cli.app, name="x3d")

    from vidact.cli import demo as demo_cli
    from vidact.cli import export as export_cli

    app.command("demo")(demo_cli.demo)
    app.command("export")(export_cli.export)


_register()


class _StderrLineHandler(logging.Handler):
    """Library log records (``vidact.*``, warnings and up) as one ``warning: ...`` line on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        err_console.print(
            f"{record.levelname.lower()}: {record.getMessage()}", highlight=False, markup=False, soft_wrap=True
        )


def _route_library_logs() -> None:
    log = logging.getLogger("vidact")
    if not any(isinstance(h, _StderrLineHandler) for h in log.handlers):
        log.addHandler(_StderrLineHandler(logging.WARNING))


def _debug() -> bool:
    return _session.debug or os.environ.get("VIDACT_DEBUG") == "1"


def _is_usage_error(exc: BaseException) -> bool:
    """Typer/click usage errors (vendored or not) carry ``format_message`` and ``exit_code``."""
    return hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry: run the app, map errors to one line and an exit code."""
    _route_library_logs()
    args = sys.argv[1:] if argv is None else list(argv)
    _session.debug = "--debug" in args  # also for errors raised while the options are parsed
    try:
        rv = app(args=args, standalone_mode=False, prog_name="vidact")
        code = rv if isinstance(rv, int) else 0
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        err_console.print("aborted")
        code = 130
    except VidactError as exc:
        if _debug():
            raise
        err_console.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        code = exc.exit_code
    except Exception as exc:
        if _debug():
            raise
        if _is_usage_error(exc):  # bad option, missing argument (typer's click exceptions)
            ctx = getattr(exc, "ctx", None)
            if ctx is not None:
                err_console.print(ctx.get_usage(), highlight=False, markup=False)
            err_console.print(f"error: {exc.format_message()}", highlight=False, markup=False, soft_wrap=True)
            code = exc.exit_code if exc.exit_code else EXIT_USAGE
        elif disk_full_cause(exc) is not None:  # a write outside the atomic writers (an appended log)
            full = disk_full_cause(exc)
            err_console.print(
                f"error: {DiskFullError(full.filename or 'a file being written', full)}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
            code = DiskFullError.exit_code
        else:
            err_console.print(
                f"error: {first_line(exc, with_type=True)} (rerun with --debug for the traceback)",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )
            code = 1
    except KeyboardInterrupt:
        err_console.print("interrupted")
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
