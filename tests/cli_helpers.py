"""``dreamlift`` run in-process through :func:`dreamlift.cli.main` (the real error handling)."""

from __future__ import annotations

import pytest

from dreamlift.cli import main


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Exit code and stderr of ``dreamlift ARGV``."""
    try:
        main(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0), capsys.readouterr().err
    raise AssertionError("main() returned instead of exiting")
