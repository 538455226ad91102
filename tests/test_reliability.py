"""The README's promise about bad input, case by case: one line on stderr, exit code 2, no
traceback, and nothing left behind that a later ``--resume`` would trust.

The cases are listed in ``benchmarks/reliability_cases.py`` (and, with what each gets, in
docs/reliability.md); the fuzzed captions are property-based.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from benchmark_modules import load_benchmark
from cli_helpers import run_main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dreamlift.errors import CaptionError
from dreamlift.world.captions import parse, parse_head, vocabulary

CASES_MODULE = load_benchmark("reliability_cases")
CASES = CASES_MODULE.CASES
Case = CASES_MODULE.Case

TRUSTED = ("config.yaml", "checkpoint.safetensors", "summary.json")
"""What ``--resume`` and ``edit`` read from a run folder."""


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)
    return CASES_MODULE.make_files(tmp_path_factory.mktemp("reliability"))


def _fingerprint(folder: Path) -> dict[str, str]:
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing_to_trust(
    case: Case, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    named = {**{k: str(v) for k, v in files.items()}, "out": str(out)}
    argv = [arg.format(**named) for arg in case.argv]
    folders = [files[k] for k in files if k.startswith("run")]
    before = {f: _fingerprint(f) for f in folders}
    code, err = run_main(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2, f"exit {code}: {err}"
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert "Traceback" not in err
    assert case.expect.lower() in err.lower(), f"{case.expect!r} not in {err!r}"
    for name in TRUSTED:
        assert not (out / name).exists(), f"{name} left in a failed run's folder"
    for folder, prints in before.items():
        assert _fingerprint(folder) == prints, f"{folder.name} was changed by a failed command"


def test_the_cases_are_many_and_named_once() -> None:
    names = [c.name for c in CASES]
    assert len(names) >= 40 and len(set(names)) == len(names)


def test_every_case_is_in_the_docs_table() -> None:
    table = (Path(__file__).resolve().parents[1] / "docs" / "reliability.md").read_text()
    missing = [c.name for c in CASES if f"`{c.name}`" not in table]
    assert not missing, f"docs/reliability.md lacks: {missing}"


WORDS = sorted({w for words in vocabulary().values() for w in words})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.text(max_size=60),
        st.lists(st.sampled_from([*WORDS, "", " ", ",", "person", "zzz"]), max_size=12).map(
            " ".join
        ),
    )
)
def test_the_caption_parsers_raise_nothing_but_their_own_error(text: str) -> None:
    for parser in (parse, parse_head):
        try:
            parser(text)
        except CaptionError as exc:
            assert str(exc) and "\n" not in str(exc)


class ReachedWork(Exception):
    """Raised where a command would make its run folder: its inputs were all accepted."""


BASE_ARGV: dict[tuple[str, ...], tuple[str, ...]] = {
    ("generate",): ("a red cube",),
    ("edit",): ("{run}", "a blue cube"),
    ("reconstruct",): ("--asset", "a red cube"),
    ("handles",): ("--scene", "a red cube next to a blue sphere", "--object", "1"),
    ("invert",): ("--head", "0"),
    ("blend",): ("--head", "203", "--reference-head", "217", "--part", "hair"),
    ("sample",): ("a red cube",),
    ("world", "render"): ("a red cube",),
}
"""A command line each command accepts, to which one numeric flag is added."""
NON_FINITE = ("nan", "inf", "-inf")
HUGE = {"float": ("1e308", "-1e308"), "int": ("9" * 30, "-" + "9" * 30)}
TRANSFORMS = {"translate", "rotate", "scale"}


def _number_kinds(annotation: object) -> list[str]:
    """The kinds of the values an option's annotation takes ("int", "float", "text")."""
    import typing

    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    if len(args) == 1 and typing.get_origin(args[0]) is tuple:
        args = list(typing.get_args(args[0]))
    names = {int: "int", float: "float"}
    return [names.get(a, "text") for a in args]  # type: ignore[call-overload]


def _numeric_flags() -> list[tuple[tuple[str, ...], str, list[str]]]:
    """(command path, flag, the kinds of its values) of every numeric option of the commands
    in :data:`BASE_ARGV`, read from the signatures typer builds them from."""
    import inspect

    import typer

    from dreamlift.cli import app

    root = typer.main.get_command(app)
    found = []
    for path in BASE_ARGV:
        command = root
        for name in path:
            command = command.commands[name]  # type: ignore[attr-defined]
        signature = inspect.signature(command.callback)  # type: ignore[arg-type]
        for param in command.params:
            if param.param_type_name != "option" or getattr(param, "is_flag", False):
                continue
            kinds = _number_kinds(signature.parameters[param.name].annotation)
            if {"int", "float"} & set(kinds):
                found.append((path, param.opts[0], kinds))
    return found


NUMERIC = _numeric_flags()


@pytest.mark.parametrize(
    ("path", "flag", "kinds"), NUMERIC, ids=[f"{' '.join(p)} {f}" for p, f, _ in NUMERIC]
)
def test_every_numeric_flag_refuses_nan_and_survives_huge_numbers(
    path, flag, kinds, files, tmp_path, capsys, monkeypatch
) -> None:
    from dreamlift.io.run import RunDir

    def reached(self: RunDir) -> RunDir:
        raise ReachedWork

    monkeypatch.setattr(RunDir, "prepare", reached)
    base = [a.format(run=files["run"]) for a in BASE_ARGV[path]]
    if path == ("handles",) and flag.lstrip("-") not in TRANSFORMS:
        base += ["--translate", "0.1", "0", "0"]
    first = next(i for i, k in enumerate(kinds) if k != "text")
    kind = kinds[first]
    for value in (NON_FINITE if kind == "float" else ()) + HUGE[kind]:
        given = ["y" if k == "text" else "0" for k in kinds]
        given[first] = value
        argv = [*path, *base, flag, *given, "--out", str(tmp_path / "out"), "--quiet"]
        if path == ("world", "render"):
            argv.remove("--quiet")
        try:
            code, err = run_main(capsys, *argv)
        except ReachedWork:
            assert value not in NON_FINITE, f"{' '.join(argv)} was accepted"
            continue
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), (argv, err)


TINY_FIT = (
    "reconstruct",
    "--asset",
    "a red cube",
    "--resolution",
    "16",
    "--train-views",
    "2",
    "--set",
    "turntable_frames=2",
    "--set",
    "checkpoint_every=2",
    "--quiet",
    "--threads",
    "1",
)


def test_a_full_disk_stops_in_one_line_and_keeps_the_last_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from kill_helpers import assert_same_tensors

    from dreamlift.io import checkpoint
    from dreamlift.io.checkpoint import load_checkpoint

    assert run_main(capsys, *TINY_FIT, "--steps", "8", "--out", str(tmp_path / "full"))[0] == 0
    write = checkpoint.save_file
    calls = []

    def disk_fills_at_the_second_checkpoint(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 2:
            Path(filename).write_bytes(b"\0" * 100)  # what fitted before the disk was full
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(tensors, filename, metadata=metadata)

    monkeypatch.setattr(checkpoint, "save_file", disk_fills_at_the_second_checkpoint)
    out = tmp_path / "full-disk"
    code, err = run_main(capsys, *TINY_FIT, "--steps", "8", "--out", str(out))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "No space left on device" in err and "step 2" in err
    assert load_checkpoint(out / "checkpoint.safetensors").step == 2
    assert not list(out.glob("*.tmp")), "a torn checkpoint was left beside the good one"
    monkeypatch.setattr(checkpoint, "save_file", write)  # space was freed
    assert run_main(capsys, *TINY_FIT, "--steps", "8", "--out", str(out), "--resume")[0] == 0
    assert_same_tensors(
        tmp_path / "full" / "checkpoint.safetensors", out / "checkpoint.safetensors"
    )


def test_a_second_process_writing_into_the_same_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    from dreamlift.io.checkpoint import load_checkpoint

    out = tmp_path / "shared"
    argv = [*TINY_FIT, "--steps", "100000", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([sys.executable, "-m", "dreamlift", *argv], env=env)
    try:
        deadline = time.time() + 120
        ckpt = out / "checkpoint.safetensors"
        while time.time() < deadline and first.poll() is None and not ckpt.exists():
            time.sleep(0.02)
        assert ckpt.exists(), "the first run wrote no checkpoint"
        code, err = run_main(capsys, *argv, "--resume")
        assert code == 2 and "another process is writing" in err, err
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # the killed process's lock died with it: the run can be resumed at once
    steps = load_checkpoint(out / "checkpoint.safetensors").step + 2
    resumed = [*TINY_FIT, "--steps", str(steps), "--out", str(out), "--resume"]
    assert run_main(capsys, *resumed)[0] == 0
    assert load_checkpoint(out / "checkpoint.safetensors").step == steps
