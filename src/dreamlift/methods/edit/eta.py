"""Perturb-and-Revise's adaptive perturbation size η (arXiv:2412.05279 §3.2, Eq. 6).

A short probe optimises the *unperturbed* source toward the edit prompt at a fixed, large t and
records the guidance loss at each step. A loss that falls fast means the source sits in a
shallow basin of the edit's objective — the edit is easy and needs no perturbation; a flat or
rising loss means a deep basin that only a perturbation escapes::

    D = mean(last n losses) − mean(first n losses)
    η = max(0, U · (1 − 2^(−(D + H) / H)))

so D = 0 gives U/2 and D = −H gives 0. The official code's H = 1000 is in the units of its
loss: the x0-reconstruction SDS surrogate summed over MVDream's 4×32×32 latents of four
256² views at CFG 50. That unit does not carry over (the surrogate grows with the latent size,
the CFG scale squared and the batch), so by default H is scale-free: a fraction of the probe's
own starting loss, ``H = half_fraction · mean(first n losses)``. With the default 0.5, η is 0
when the probe loss halves over the probe and U/2 when it stays flat — the paper's behaviour in
any units. ``half`` sets an absolute H (1000 for the official MVDream setting).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from dreamlift.errors import TrainingError


def probe_drift(losses: Sequence[float], window: int) -> float:
    """D: the mean of the last ``window`` losses minus the mean of the first ``window``."""
    if len(losses) < 2 * window or window < 1:
        raise TrainingError(
            f"the probe recorded {len(losses)} losses; η needs at least {2 * window}",
            "raise probe_steps or lower probe_window",
        )
    return sum(losses[-window:]) / window - sum(losses[:window]) / window


def adaptive_eta(
    losses: Sequence[float],
    upper: float = 0.6,
    half: float | None = None,
    half_fraction: float = 0.5,
    window: int = 10,
) -> dict[str, float]:
    """η and how it was reached: ``eta``, ``drift`` (D), ``half`` (H), ``start`` (the mean of
    the first window)."""
    if not all(math.isfinite(v) for v in losses):
        raise TrainingError(
            "the probe's loss is not finite; the source is left as it was",
            "check the source field and the prompt, or give a fixed --eta",
        )
    drift = probe_drift(losses, window)
    start = sum(losses[:window]) / window
    h = half if half is not None else half_fraction * start
    if not h > 0:
        raise TrainingError(f"η's half-life H must be positive, got {h:g}")
    eta = max(0.0, upper * (1.0 - 2.0 ** (-(drift + h) / h)))
    return {"eta": eta, "drift": drift, "half": h, "start": start}
