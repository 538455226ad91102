"""The settings every dreamlift process starts with, before torch does any work.

Both are process-wide and must come first: the allocator's thresholds decide the fate of
blocks allocated after them, and the flush of subnormals reaches only the threads started
after it. The command line (:func:`dreamlift.cli.app.main`), Ray workers, the benchmarks and
the test suite call :func:`configure_process`; a Python API user should call it too before
the first torch operation.
"""

from __future__ import annotations

from dreamlift.utils.allocator import keep_freed_memory
from dreamlift.utils.numerics import flush_denormals_in_every_thread


def configure_process() -> None:
    """Keep freed memory for reuse (:mod:`dreamlift.utils.allocator`) and flush subnormals on
    every thread (:func:`dreamlift.utils.numerics.flush_denormals_in_every_thread`)."""
    keep_freed_memory()
    flush_denormals_in_every_thread()
