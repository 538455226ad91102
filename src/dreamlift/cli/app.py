"""The ``dreamlift`` app: one module per command, :func:`main`, which runs it and turns
exceptions into exit codes by their type, and :func:`script`, the installed command."""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import sys
import threading
from types import ModuleType

import typer
from rich.text import Text

from dreamlift.cli.blend import blend_command
from dreamlift.cli.common import console
from dreamlift.cli.edit import edit_command
from dreamlift.cli.face import face_command
from dreamlift.cli.generate import generate_command
from dreamlift.cli.handles import handles_command
from dreamlift.cli.invert import invert_command
from dreamlift.cli.list import list_command
from dreamlift.cli.reconstruct import reconstruct_command
from dreamlift.cli.sample import sample_command
from dreamlift.cli.view import view_command
from dreamlift.cli.world import world_app
from dreamlift.cli.zoo import zoo_app
from dreamlift.errors import DreamliftError
from dreamlift.utils.process import configure_process
from dreamlift.utils.streams import flush_std_streams

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Lift 2D diffusion models into 3D. Runs on a CPU out of the box.",
)
app.add_typer(world_app, name="world")
app.add_typer(zoo_app, name="zoo")
app.command("generate")(generate_command)
app.command("edit")(edit_command)
app.command("reconstruct")(reconstruct_command)
app.command("handles")(handles_command)
app.command("invert")(invert_command)
app.command("blend")(blend_command)
app.command("face")(face_command)
app.command("sample")(sample_command)
app.command("list")(list_command)
app.command("view")(view_command)

STOPPED = 130
"""Exit code of a run the user stopped (Ctrl-C / SIGTERM), as a shell reports SIGINT."""
USER_ERROR = 2
"""Exit code of a user error: a :class:`DreamliftError` or a command line click cannot parse."""


def _parser_exceptions() -> list[ModuleType]:
    """The exception modules of the command-line parser: click's, and the copy of click that
    typer ships inside itself from 0.2x on (its usage errors are not click's classes)."""
    modules = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        with contextlib.suppress(ImportError):
            modules.append(importlib.import_module(name))
    return modules


_PARSER = _parser_exceptions()
USAGE_ERRORS: tuple[type[Exception], ...] = tuple(m.ClickException for m in _PARSER)
"""A command line the parser rejects (unknown option, bad value, missing argument)."""
NO_ARGUMENTS: tuple[type[Exception], ...] = tuple(
    m.NoArgsIsHelpError for m in _PARSER if hasattr(m, "NoArgsIsHelpError")
)
"""A group or command given no arguments: its help is the answer."""
EXITS: tuple[type[BaseException], ...] = (
    typer.Exit,
    *(m.Exit for m in _PARSER if hasattr(m, "Exit")),
)
"""A request to exit with a code (``--help``, ``typer.Exit``)."""
ABORTS: tuple[type[BaseException], ...] = (
    typer.Abort,
    *(m.Abort for m in _PARSER if hasattr(m, "Abort")),
)


def main(argv: list[str] | None = None) -> None:
    """Run the app on ``argv`` (the command line when None) and exit: user errors print one
    line and exit 2 (130 for a stopped run); any other exception is a bug and stays a
    traceback."""
    configure_process()
    try:
        code = app(args=argv, standalone_mode=False)
    except DreamliftError as exc:
        from dreamlift.loop import Interrupted

        console.print(Text.assemble(("error:", "bold red"), f" {exc}"), soft_wrap=True)
        sys.exit(STOPPED if isinstance(exc, Interrupted) else USER_ERROR)
    except EXITS as exc:
        sys.exit(exc.exit_code)  # type: ignore[attr-defined]
    except ABORTS:
        console.print("aborted")
        sys.exit(STOPPED)
    except NO_ARGUMENTS as exc:
        exc.show()  # type: ignore[attr-defined]
        sys.exit(USER_ERROR)
    except USAGE_ERRORS as exc:
        ctx = getattr(exc, "ctx", None)
        where = f" (see {ctx.command_path if ctx is not None else 'dreamlift'} --help)"
        message = " ".join(exc.format_message().split())  # type: ignore[attr-defined]
        console.print(Text.assemble(("error:", "bold red"), f" {message}{where}"), soft_wrap=True)
        sys.exit(USER_ERROR)
    sys.exit(code if isinstance(code, int) else 0)


def script() -> None:
    """The ``dreamlift`` command (and ``python -m dreamlift``): :func:`main`, then an exit
    that skips the interpreter's teardown once the work is safely out.

    Tearing down a process that imported torch, diffusers and transformers takes about a
    second on a 2-core CPU (thousands of modules garbage-collected one by one) after every
    file is written: 1.1 s of a 21 s ``generate`` run. So once :func:`main` has finished and
    no other thread still works, the exit handlers run (Ray's shutdown, logging's flush),
    stdout and stderr are flushed, and the process leaves with ``os._exit``. With a thread
    still running, under a profiler or coverage (they write their reports at exit), or
    when :func:`main` raised (a bug: its traceback must print), the exit is Python's usual
    one.
    """
    try:
        main()
    except SystemExit as exc:
        main_thread = threading.main_thread()
        working = any(t is not main_thread and not t.daemon for t in threading.enumerate())
        watched = sys.gettrace() is not None or sys.getprofile() is not None
        if working or watched or not isinstance(exc.code, int | None):
            raise
        atexit._run_exitfuncs()
        flush_std_streams()
        os._exit(exc.code or 0)
