"""Timing helpers: the median of repeated calls (benchmarks) and per-section totals (the
iteration-time split of a training loop)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` calls after one warm-up call (allocator, lazy imports)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


class SectionTimer:
    """Seconds spent in named sections, summed over every entry.

    Only ``time.perf_counter``: cheap enough to stay on in every run. ``sync`` (e.g.
    ``torch.cuda.synchronize`` when profiling on a GPU) runs at each boundary, so that
    asynchronous kernels are counted in the section that launched them.
    """

    def __init__(self, sync: Callable[[], None] | None = None) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.sync = sync

    def _now(self) -> float:
        if self.sync is not None:
            self.sync()
        return time.perf_counter()

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        start = self._now()
        try:
            yield
        finally:
            self.seconds[name] += self._now() - start

    @contextmanager
    def modules(self, named: Mapping[str, Any]) -> Iterator[None]:
        """Time every forward call of each ``torch.nn.Module`` under its name (forward hooks,
        removed on exit). A module called inside another timed section is counted in both."""
        with ExitStack() as stack:
            for name, module in named.items():
                starts: list[float] = []

                def before(mod: Any, args: Any, starts: list[float] = starts) -> None:
                    starts.append(self._now())

                def after(
                    mod: Any, args: Any, out: Any, name: str = name, starts: list[float] = starts
                ) -> None:
                    self.seconds[name] += self._now() - starts.pop()

                stack.callback(module.register_forward_pre_hook(before).remove)
                stack.callback(module.register_forward_hook(after).remove)
            yield
