"""Run one piece of a run's tail in a forked child, beside the parent's own work.

Why: after training, ``generate`` writes its turntables and 3D file (1.6 s on this 2-core
CPU) and then scores the result (2.3 s). Both are mostly Python driving small tensor
operations, so they hold the GIL, and in two threads they take as long as one after the
other (measured: 3.4 s either way). In a forked child the outputs get the second core:
fork copies the finished field for free (copy on write), the child renders and writes with
one torch thread, and the parent scores meanwhile.

Forking is safe only in a narrow case, and anything else runs the work in-process, in order,
exactly as before: Linux (fork without exec is unsafe on macOS's system libraries), no other
Python thread alive (one holding a lock at the fork would leave it held in the child
forever), no CUDA initialised (a CUDA context does not survive a fork), and
``DREAMLIFT_NO_FORK`` unset. The child sets one torch thread before any work (OpenMP's pool
is not usable after a fork) and leaves by ``os._exit``, never returning into the parent's
code. If it fails for any reason, the parent runs the work itself, so an error surfaces
where it always did.
"""

from __future__ import annotations

import os
import pickle
import sys
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import torch

T = TypeVar("T")


def fork_is_safe() -> bool:
    """Whether :class:`Beside` may fork here (see the module doc)."""
    if sys.platform != "linux" or not hasattr(os, "fork"):
        return False
    if os.environ.get("DREAMLIFT_NO_FORK", "") not in ("", "0"):
        return False
    if torch.cuda.is_initialized():
        return False
    return threading.active_count() == 1


class Beside(Generic[T]):
    """``with Beside(fn, *args) as work: ...`` runs ``fn(*args)`` in a forked child while the
    block runs here; ``work.result()`` after the block gives what ``fn`` returned.

    While the child works, this process uses one torch thread fewer (at least one): the two
    of them share the cores, and an OpenMP region waiting for a thread that the child's work
    keeps off a core costs more than it saves (two threads here beside the child: 4.0 s of
    scoring instead of 2.9 s). Leaving the block waits for the child, also when the block
    raised. ``fn``'s result must pickle; its side effects on this process's objects (a list
    it appends to) are lost in the child, so return what is needed. Where forking is not
    safe (:func:`fork_is_safe`), ``fn`` runs in-process on entering the block.
    """

    def __init__(self, fn: Callable[..., T], *args: Any) -> None:
        self._fn, self._args = fn, args
        self._pid: int | None = None
        self._read_fd = -1
        self._payload: bytes | None = None
        self._threads = 0
        self._result: tuple[T] | None = None

    def __enter__(self) -> Beside[T]:
        if not fork_is_safe():
            self._result = (self._fn(*self._args),)
            return self
        sys.stdout.flush()
        sys.stderr.flush()
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: do the work, send the result, leave without cleanup
            status = 1
            try:
                os.close(read_fd)
                torch.set_num_threads(1)
                payload = pickle.dumps(self._fn(*self._args))
                with os.fdopen(write_fd, "wb") as pipe:
                    pipe.write(payload)
                status = 0
            finally:
                os._exit(status)
        os.close(write_fd)
        self._pid, self._read_fd = pid, read_fd
        self._threads = torch.get_num_threads()
        torch.set_num_threads(max(1, self._threads - 1))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pid is None:
            return
        try:
            with os.fdopen(self._read_fd, "rb") as pipe:
                payload = pipe.read()  # until the child closes its end (or dies)
            _, status = os.waitpid(self._pid, 0)
            if os.waitstatus_to_exitcode(status) == 0:
                self._payload = payload
        finally:
            self._pid = None
            torch.set_num_threads(self._threads)

    def result(self) -> T:
        """``fn``'s result; if the child failed in any way, ``fn`` runs here now, so that its
        error surfaces as it would have without the fork."""
        if self._result is None:
            try:
                self._result = (pickle.loads(self._payload),) if self._payload else None
            except Exception:  # noqa: BLE001 - a torn payload: do the work here instead
                self._result = None
            if self._result is None:
                self._result = (self._fn(*self._args),)
        return self._result[0]
