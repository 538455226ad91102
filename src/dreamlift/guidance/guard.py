"""Stop a run whose guidance gradient keeps coming back non-finite.

Each guidance zeroes the non-finite entries of its gradient for the step (one bad entry must
not poison the field) and counts them in ``last_info["nonfinite_grad"]``, beside the number
of entries injected, ``last_info["grad_numel"]``. A zeroed gradient is no gradient: a prior
that diverges for good would otherwise leave the loop optimising nothing while every loss
looks finite. :class:`NonFiniteGuard` is the stopping rule a loop applies to those counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from dreamlift.errors import TrainingError

HINT = "the last good checkpoint is kept; try a lower learning rate or guidance scale"


@dataclass
class NonFiniteGuard:
    """Raises :class:`~dreamlift.errors.TrainingError` once the guidance gradient had
    non-finite entries for ``patience`` consecutive steps, or at once when all of it was.

    Call :meth:`check` (or :meth:`check_info` with ``guidance.last_info``) after every
    guidance call; a step with no non-finite entry resets the count. Stateful: one guard per
    run (the count starts again at 0 on a resumed run).
    """

    patience: int = 3
    """Consecutive steps with non-finite entries that stop the run (1 = the first such)."""
    streak: int = field(default=0, init=False)
    """Consecutive steps so far whose gradient had non-finite entries."""

    def __post_init__(self) -> None:
        if self.patience < 1:
            raise ValueError(f"patience must be at least 1, got {self.patience}")

    def check(self, count: float, step: int, numel: float | None = None) -> None:
        """Record one step's ``count`` of non-finite gradient entries (of ``numel`` injected,
        when known) and raise if the run must stop."""
        if count <= 0:
            self.streak = 0
            return
        self.streak += 1
        whole = numel is not None and 0 < numel <= count
        if whole or self.streak >= self.patience:
            what = f"{int(count)} non-finite entries" + (" (all of it)" if whole else "")
            raise TrainingError(
                f"guidance gradient had {what} for {self.streak} consecutive step(s) "
                f"at step {step}; stopped",
                hint=HINT,
            )

    def check_info(self, info: Mapping[str, float], step: int) -> None:
        """:meth:`check` with a guidance's ``last_info`` (``nonfinite_grad``, ``grad_numel``)."""
        self.check(info.get("nonfinite_grad", 0.0), step, info.get("grad_numel"))
