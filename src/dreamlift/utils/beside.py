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
is not usable after a fork), dies with the parent (a killed run must not leave a child
holding its run folder's lock, or a resume would find the folder busy), and leaves by
``os._exit``, never returning into the parent's code. If the child fails, or has not
finished :data:`CHILD_TIMEOUT_S` after the parent started waiting, the parent runs the work
itself, so an error surfaces as it always did (after the parent's own block, not before).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import torch

from dreamlift.utils.streams import flush_std_streams

T = TypeVar("T")

CHILD_TIMEOUT_S = 600.0
"""How long the parent waits for the child once its own block is done; a child still
working then is killed and the work done in-process (far beyond a run's outputs: 2.3 s)."""
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent(parent: int) -> None:
    """Ask the kernel to SIGKILL this (child) process when its parent dies; if the parent
    is already gone, leave now."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


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
        flush_std_streams()
        parent = os.getpid()
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: do the work, send the result, leave without cleanup
            status = 1
            try:
                _die_with_parent(parent)
                os.close(read_fd)
                torch.set_num_threads(1)
                payload = pickle.dumps(self._fn(*self._args))
                with os.fdopen(write_fd, "wb") as pipe:
                    pipe.write(payload)
                status = 0
            finally:
                with contextlib.suppress(Exception):  # nothing may keep the child from leaving
                    flush_std_streams()
                os._exit(status)
        os.close(write_fd)
        self._pid, self._read_fd = pid, read_fd
        self._threads = torch.get_num_threads()
        torch.set_num_threads(max(1, self._threads - 1))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pid is None:
            return
        pid, reaped = self._pid, False
        try:
            payload = _read_until_closed(self._read_fd, time.monotonic() + CHILD_TIMEOUT_S)
            if payload is not None:
                _, status = os.waitpid(pid, 0)
                reaped = True
                if os.waitstatus_to_exitcode(status) == 0:
                    self._payload = payload
        finally:
            if not reaped:  # timed out, or interrupted while waiting: do not leave it behind
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
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


def _read_until_closed(fd: int, deadline: float) -> bytes | None:
    """Everything written to the pipe ``fd`` until its writer closes it; None (and ``fd``
    closed) if the deadline passes first."""
    chunks = []
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)
