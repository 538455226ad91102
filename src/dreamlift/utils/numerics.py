"""Floating-point settings: for the duration of one piece of work, or for the whole process."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_depth = threading.local()
_every_thread = False


def flush_denormals_in_every_thread() -> bool:
    """Flush subnormal floats to zero on this thread and on every thread started after it,
    for the rest of the process; :func:`flush_denormals` blocks then leave it on.

    The setting is per thread (the SSE control register), and :func:`flush_denormals` sets it
    only on the thread that enters the block. torch's worker threads, started at the first
    parallel operation, never saw it: at ``--threads 2`` half of every operation ran on
    subnormals, and a toy-eg3d training step from the trained weights took 1.21 s against
    0.48 s at one thread (2026-12-06). A new thread inherits its creator's floating-point
    environment (POSIX ``pthread_create``), so setting it here, before torch starts its
    threads, reaches them all: the same step then takes 0.26 s at two threads. The command
    line calls it first thing (:func:`dreamlift.cli.app.main`); Python API users who run on
    several threads should call it before their first torch operation. Returns whether the
    CPU can flush at all."""
    global _every_thread
    _every_thread = True
    return torch.set_flush_denormal(True)


@contextmanager
def flush_denormals() -> Iterator[None]:
    """Flush subnormal floats to zero on this thread while the block runs, then restore
    torch's default (off).

    A trained tri-plane field's transmittances and softplus tails underflow into subnormals,
    which CPUs process ~20x slower: flushing them made toy-eg3d's training steps 2.4x faster
    (interleaved A/B at one thread, 1.5 s → 0.64 s). Scoped, because the setting is global to
    the thread and would otherwise change the numerics of whatever runs next in the process
    (a later run would no longer equal the same run in a fresh process). Nested blocks (a
    benchmark's loop around runs that flush themselves) keep flushing until the outermost
    one ends: an inner block that switched it off made everything after it ~3x slower."""
    depth = getattr(_depth, "value", 0)
    _depth.value = depth + 1
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        _depth.value = depth
        if depth == 0 and not _every_thread:
            torch.set_flush_denormal(False)
