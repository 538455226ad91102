"""The command line's shape: one module per command, the common options declared once and
taken by every command that writes a run, and exit codes chosen by the exception's type."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer
from cli_helpers import run_main

from dreamlift.cli import app
from dreamlift.errors import DataError
from dreamlift.loop import Interrupted

RUN = {"out", "seed", "device", "threads", "quiet"}
TRAINING = RUN | {"config", "settings", "resume"}


def _options(*path: str) -> set[str]:
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return {p.name for p in command.params}


@pytest.mark.parametrize(
    ("path", "common"),
    [
        (("generate",), TRAINING),
        (("reconstruct",), TRAINING),
        (("handles",), TRAINING),
        (("sample",), RUN),
        (("world", "render"), {"out", "seed"}),
        (("zoo", "train"), {"threads", "quiet"}),
    ],
)
def test_commands_take_the_common_options(path, common):
    options = _options(*path)
    assert common <= options
    assert not (TRAINING - common) & options  # and no common option they do not use


def test_the_training_commands_take_config_set_and_resume():
    command = typer.main.get_command(app).commands["generate"]  # type: ignore[attr-defined]
    flags = {flag for p in command.params for flag in p.opts}
    assert {"--config", "--set", "--resume", "--out", "--seed", "--device", "--threads"} <= flags


def _raising(monkeypatch, exc: BaseException) -> None:
    import dreamlift.methods.reconstruct as method

    def fail(*args, **kwargs):
        raise exc

    monkeypatch.setattr(method, "reconstruct", fail)


def test_exit_codes_follow_the_exception_type(monkeypatch, capsys, tmp_path):
    args = ("reconstruct", "--asset", "a red cube", "--out", str(tmp_path / "r"))
    _raising(monkeypatch, DataError("a user's mistake", "the hint"))
    code, err = run_main(capsys, *args)
    assert code == 2 and err.strip() == "error: a user's mistake (the hint)"
    _raising(monkeypatch, Interrupted("stopped at step 3", "rerun with --resume"))
    assert run_main(capsys, *args)[0] == 130
    _raising(monkeypatch, RuntimeError("a bug"))
    with pytest.raises(RuntimeError, match="a bug"):  # a bug stays a traceback
        run_main(capsys, *args)


@pytest.mark.parametrize(
    "args",
    [["generate", "--bogus"], ["reconstruct", "--steps", "many"], ["handles", "--rotate", "y"]],
)
def test_usage_errors_are_one_line_and_exit_code_2(capsys, args):
    code, err = run_main(capsys, *args)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error:") and "--help" in err


def test_no_arguments_show_the_help():
    proc = subprocess.run(
        [sys.executable, "-m", "dreamlift", "world"], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "render" in proc.stdout + proc.stderr


def test_python_m_dreamlift_and_the_entry_point(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "dreamlift", "world", "vocab"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "shapes:" in proc.stdout
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert 'dreamlift = "dreamlift.cli.app:script"' in pyproject


class _Exited(Exception):
    pass


def _fake_exit(monkeypatch) -> list[str]:
    """Patch what :func:`script` exits through; returns the calls, in order."""
    import atexit
    import importlib
    import os

    app_module = importlib.import_module("dreamlift.cli.app")  # the package's `app` is Typer's
    calls: list[str] = []

    def quick_exit(code):
        calls.append(f"os._exit({code})")
        raise _Exited

    monkeypatch.setattr(app_module, "main", lambda: sys.exit(3))
    monkeypatch.setattr(atexit, "_run_exitfuncs", lambda: calls.append("atexit"))
    monkeypatch.setattr(os, "_exit", quick_exit)
    monkeypatch.setattr(sys, "gettrace", lambda: None)
    monkeypatch.setattr(sys, "getprofile", lambda: None)
    return calls


def test_the_script_runs_exit_handlers_then_skips_the_teardown(monkeypatch):
    from dreamlift.cli.app import script

    calls = _fake_exit(monkeypatch)
    with pytest.raises(_Exited):
        script()
    assert calls == ["atexit", "os._exit(3)"]


def test_the_script_exits_the_usual_way_while_a_thread_works_or_a_profiler_watches(
    monkeypatch,
):
    import threading

    from dreamlift.cli.app import script

    calls = _fake_exit(monkeypatch)
    release = threading.Event()
    worker = threading.Thread(target=release.wait)
    worker.start()
    try:
        with pytest.raises(SystemExit) as exc:
            script()
        assert exc.value.code == 3
    finally:
        release.set()
        worker.join()
    monkeypatch.setattr(sys, "getprofile", lambda: object())
    with pytest.raises(SystemExit):
        script()
    assert calls == []
