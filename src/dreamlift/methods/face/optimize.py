"""FaceDNeRF's two stages (arXiv:2306.00783 §3.3, the code's ``project`` and ``project_pti``):
stage A optimises a W+ latent under the whole objective, stage B every generator weight with
that latent frozen. Text-only generation (Eq. 9) is stage A from w_avg without an image.

Not carried over: the code optimises StyleGAN's per-layer noise buffers with an
autocorrelation penalty (weight 1e3); the tri-plane generator here has no noise inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

from dreamlift.errors import TrainingError
from dreamlift.generators.base import Generator3D
from dreamlift.methods.face.objective import FaceObjective
from dreamlift.methods.invert.optimize import anchor_loss, ramp, tune_copy

Progress = Callable[[str, int, int, float], None]
"""progress(stage, steps done, stage steps, loss)."""
HISTORY_EVERY = 5
"""Steps between two records of the loss terms (summary.json's ``history``)."""


@dataclass
class History:
    """The loss terms over the run: one record every :data:`HISTORY_EVERY` steps per stage."""

    records: list[dict[str, float | int | str]] = field(default_factory=list)

    def add(self, stage: str, step: int, total: int, terms: dict[str, float]) -> None:
        if step % HISTORY_EVERY == 0 or step == total - 1:
            self.records.append({"stage": stage, "step": step, **terms})


def w_spread(gen: Generator3D, samples: int = 600, seed: int = 123) -> float:
    """w_std of the code (StyleGAN2's projector): the root mean squared distance of mapped
    samples from w_avg, from 600 samples of seed 123."""
    z = torch.randn(samples, gen.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        w = gen.mapping(z.to(gen.w_avg().device))
        if w.ndim == 3:
            w = w[:, 0]
        return float((w - gen.w_avg()).square().sum(-1).mean().sqrt())


def _check(loss: Tensor, stage: str, step: int, terms: dict[str, float]) -> None:
    if not torch.isfinite(loss):
        bad = ", ".join(k for k, v in terms.items() if not torch.isfinite(torch.tensor(v)))
        raise TrainingError(
            f"non-finite face loss in stage {stage} at step {step} ({bad or 'total'})",
            "lower the learning rate or that term's weight (--set weights.<term>=…)",
        )


def fit_wplus(
    gen: Generator3D,
    ws_init: Tensor,
    objective: FaceObjective,
    steps: int,
    history: History,
    progress: Progress | None = None,
    stage: str = "wplus",
) -> Tensor:
    """Stage A: Adam on the W+ latent with the projector's ramp and decaying w noise."""
    cfg = objective.cfg
    inv = cfg.inversion
    w_avg = gen.w_avg().detach()
    w_std = w_spread(gen) if cfg.w_noise > 0 else 0.0
    param = ws_init.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([param], lr=inv.latent_lr, betas=(0.9, 0.999))
    noise_rng = torch.Generator().manual_seed(cfg.seed + 7)
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = inv.latent_lr * ramp(step, steps)
        tau = step / max(1, steps)
        scale = w_std * cfg.w_noise * max(0.0, 1 - tau / 0.75) ** 2
        noise = torch.randn(param.shape, generator=noise_rng).to(param) * scale
        loss, terms = objective(gen, param + noise, step, steps, w_avg)
        _check(loss, stage, step, terms)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.add(stage, step, steps, terms)
        if progress:
            progress(stage, step + 1, steps, float(loss.detach()))
    return param.detach()


def tune_generator(
    gen: Generator3D,
    ws: Tensor,
    objective: FaceObjective,
    steps: int,
    history: History,
    progress: Progress | None = None,
) -> Generator3D:
    """Stage B: a copy of the generator fine-tuned with the pivot frozen, every weight, under
    the same objective (paper Eq. 8), plus the inversion's anchor when it sets one (the
    paper preset's is none: plain PTI)."""
    inv = objective.cfg.inversion
    rng = torch.Generator().manual_seed(inv.seed + 17)
    target = objective.goal.target
    ws = ws.detach()

    def losses(tuned: Generator3D, frozen: Generator3D, step: int) -> Iterator[Tensor]:
        loss, terms = objective(tuned, ws, step, steps)
        if target is not None:
            loss = loss + anchor_loss(tuned, frozen, ws, target, inv, rng, None)
        _check(loss, "pti", step, terms)
        yield loss
        history.add("pti", step, steps, terms)

    return tune_copy(gen, inv, steps, losses, progress)


__all__ = ["History", "fit_wplus", "tune_generator", "w_spread"]
