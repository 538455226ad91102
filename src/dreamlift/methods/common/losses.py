"""Named, weighted loss terms of one optimisation step (threestudio's named losses).

A method adds each term with its weight; the step's loss is the weighted sum, in the order
the terms were added, and the logs hold every term unweighted, under its name::

    terms = LossTerms()
    terms.add("loss_rgb", 1.0, F.mse_loss(render, target))
    terms.add("loss_mask", cfg.mask_weight, F.mse_loss(opacity, alpha))
    loss, logs = terms.total(), terms.logs()
"""

from __future__ import annotations

from torch import Tensor


class LossTerms:
    """(name, weight, value) terms of one step."""

    def __init__(self) -> None:
        self.terms: list[tuple[str, float, Tensor]] = []

    def add(self, name: str, weight: float, value: Tensor) -> None:
        self.terms.append((name, weight, value))

    def total(self) -> Tensor | None:
        """Σ weight · value over the terms, in the order added; None without terms."""
        total = None
        for _, weight, value in self.terms:
            total = weight * value if total is None else total + weight * value
        return total

    def logs(self) -> dict[str, float]:
        """Each term's unweighted value, by name."""
        return {name: float(value.detach()) for name, _, value in self.terms}
