"""Schedules of the guidance losses as small pure functions of the optimisation step.

Timesteps are fractions of the training chain (0.98 = t 980 of 1000) unless a name says
``step`` or ``t``. Every function is deterministic except :func:`sample_nodes`, which draws
from the generator it is given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def linear_anneal(step: int, total: int, start: float, end: float) -> float:
    """``start`` at step 0 to ``end`` at step ``total``, linearly; clamped outside."""
    if total <= 0:
        return float(end)
    f = min(max(step / total, 0.0), 1.0)
    return float(start + (end - start) * f)


def ramp(step: int, spec: float | Sequence[float]) -> float:
    """threestudio's scalar spec (``threestudio/utils/misc.py::C``).

    A plain number is constant. ``[start_step, start_value, end_value, end_step]`` moves
    linearly from ``start_value`` to ``end_value`` between the two steps and is clamped
    outside them.
    """
    if isinstance(spec, int | float):
        return float(spec)
    if len(spec) != 4:
        raise ValueError(f"a ramp is [start_step, start, end, end_step], got {list(spec)}")
    start_step, start, end, end_step = spec
    if step <= start_step:
        return float(start)
    if step >= end_step:
        return float(end)
    return float(start + (end - start) * (step - start_step) / (end_step - start_step))


def sds_t_range(
    step: int,
    total: int,
    t_range: tuple[float, float] = (0.02, 0.98),
    t_max_end: float | None = 0.5,
    anneal_fraction: float = 1.0,
    t_min_end: float | None = None,
) -> tuple[float, float]:
    """SDS's (t_min, t_max) at ``step``: t_max falls linearly to ``t_max_end``.

    The fall ends at ``anneal_fraction * total`` (the toy-prior runs used 0.98 → 0.5 over the
    whole run: early steps need large t for shape, late ones small t for detail).
    ``t_max_end=None`` keeps the range fixed (DreamFusion, FaceDNeRF). ``t_min_end`` moves
    t_min the same way (Perturb-and-Revise starts both at 0.75 and ends at [0.02, 0.40],
    arXiv:2412.05279 §4.1).
    """
    t_min, t_max = t_range
    end = round(anneal_fraction * total)
    if t_min_end is not None:
        t_min = linear_anneal(step, end, t_min, t_min_end)
    if t_max_end is None:
        return float(t_min), max(float(t_min), float(t_max))
    t_max = linear_anneal(step, end, t_max, t_max_end)
    return float(t_min), max(float(t_min), t_max)


def ism_t_max(
    step: int, warmup_steps: int, t_max: float = 0.5, t_max_warmup: float = 0.98
) -> float:
    """ISM's upper t bound (LucidDreamer, arXiv 2311.11284; its ``guidance/sd_utils.py``).

    During warm-up the bound is extended toward ``t_max_warmup``: it starts there at step 0
    and shrinks linearly to ``t_max`` at ``warmup_steps``.
    """
    return linear_anneal(step, warmup_steps, t_max_warmup, t_max)


def ism_interval(step: int, warmup_steps: int, delta_t: int = 80, delta_t_start: int = 100) -> int:
    """ISM's interval s = t - delta_t: ``delta_t_start`` at step 0, ``delta_t`` after warm-up.

    LucidDreamer's ``annealing_intervals`` rounds the excess up (``ceil``), so it only
    reaches ``delta_t`` at the end of warm-up.
    """
    rate = 1.0 - min(max(step / warmup_steps, 0.0), 1.0) if warmup_steps > 0 else 0.0
    return int(delta_t + math.ceil(rate * (delta_t_start - delta_t)))


def shrink(start: int, end: int, f: float) -> int:
    """GE3D's integer shrink ``start - floor((start - end) * f)`` (``Random_Sampling``)."""
    return int(start - math.floor((start - end) * f))


def sample_nodes(
    progress: float,
    generator: torch.Generator | None = None,
    jump_min: tuple[int, int] = (60, 30),
    jump_max: tuple[int, int] = (80, 50),
    max_step: tuple[int, int] = (480, 300),
    n: int = 6,
) -> list[int]:
    """GE3D's trajectory nodes 0 = t_0 < t_1 < … < t_k, k ≤ n (arXiv 2412.05929, Sec. 4,
    implementation details; the released code's ``Random_Sampling``).

    Each bound is a (start, end) pair shrunk with ``progress`` f = τ / T_iter; the giraffe
    config's defaults make jumps of 60-80 with a deepest node under 480 early, 30-50 under
    300 late. Jumps are drawn uniformly in [jump_min, jump_max); sampling stops at the first
    node that would reach ``max_step``, or after ``n`` nodes.
    """
    f = min(max(progress, 0.0), 1.0)
    lo, hi, top = shrink(*jump_min, f), shrink(*jump_max, f), shrink(*max_step, f)
    dev = generator.device if generator is not None else torch.device("cpu")
    nodes = [0]
    for _ in range(n):
        jump = int(torch.randint(lo, max(hi, lo + 1), (1,), generator=generator, device=dev))
        if nodes[-1] + jump >= top:
            break
        nodes.append(nodes[-1] + jump)
    return nodes


def dynamic_balancing_coefficient(
    step: int, total: int, n: int = 6, sigma: float = 1000.0
) -> Tensor:
    """GE3D's dynamic balancing coefficient w_j(τ), j = 0 … n-1 (Eq. 9-10; ``cauculate_w``).

    Gaussian j peaks at δ_j = (n-1-j) T / (n-1) with T = total + 1: the coarsest node
    (j = n-1) peaks at τ = 0, the finest (j = 0) at the end, so optimisation moves from
    coarse to fine information. Normalised over j at each step; returns (n,) float64.
    """
    if n == 1:
        return torch.ones(1, dtype=torch.float64)
    horizon = total + 1
    j = torch.arange(n, dtype=torch.float64)
    peaks = (n - 1 - j) * horizon / (n - 1)
    # Subtracting the largest exponent keeps the normalisation finite for tiny sigma.
    log_g = -((step - peaks) ** 2) / (2.0 * sigma**2)
    g = torch.exp(log_g - log_g.max())
    return g / g.sum()
