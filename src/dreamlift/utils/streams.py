"""Flushing the standard streams where the process is about to fork or leave without the
interpreter's own teardown (:class:`dreamlift.utils.beside.Beside`,
:func:`dreamlift.cli.app.script`)."""

from __future__ import annotations

import contextlib
import sys


def flush_std_streams() -> None:
    """Flush stdout, then stderr; a stream that cannot be flushed (a closed pipe, as under
    ``| head``, or a closed file) is skipped, and the other is still flushed."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
