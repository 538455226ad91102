"""The guidance energy on UNet decoder activations (arXiv:2312.02190 §5.2,
Eq. 8–9).

Activations are the outputs of three UNet up blocks (indices 0, 1, 2: SD2's up_blocks 1–3,
a toy UNet's 0–2), each bilinearly resized to the latent grid. For each layer i::

    L_fg(i) = mean over correspondences and channels |Ψe_i[:, target] − Ψ_i,t[:, source]|
    L_bg(i) = mean over channels |mean_{bg_trans} Ψe_i − mean_{bg_orig} Ψ_i,t|
    G       = Σ_i wfg_i L_fg(i) + wbg_i L_bg(i)

Ψ are the recorded activations of the reconstruction at the same step, Ψe the current
ones; the foreground term pulls each moved object point's features to where it lands (an
L1 per-pixel match, the code's choice over the paper's L2), the background term only
compares averages, so lighting and shadows may change. The terms are returned by name so
they can be logged apart.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dreamlift.errors import ModelError
from dreamlift.methods.handles.config import GuidanceSchedule, LayerWeights
from dreamlift.methods.handles.depth_edit import LatentTargets


def decoder_layers(unet: nn.Module) -> tuple[str, str, str]:
    """The last three up blocks of a diffusers UNet: activation indices 0, 1, 2.

    SD2's four up blocks give ``up_blocks.1..3`` (the paper's layers), a three-level toy
    UNet ``up_blocks.0..2``.
    """
    n = len(getattr(unet, "up_blocks", ()))
    if n < 3:
        raise ModelError(
            f"Diffusion Handles needs a UNet with at least 3 up blocks, this one has {n}"
        )
    return tuple(f"up_blocks.{i}" for i in range(n - 3, n))  # type: ignore[return-value]


def to_latent_grid(feature: Tensor, size: tuple[int, int]) -> Tensor:
    """(1, C, h, w) activation → (C, H·W) at the latent size (bilinear, as the code does)."""
    if tuple(feature.shape[-2:]) != tuple(size):
        feature = F.interpolate(feature.float(), size=size, mode="bilinear", align_corners=False)
    return feature.float()[0].flatten(1)


def feature_losses(
    current: Sequence[Tensor | None],
    recorded: Sequence[Tensor | None],
    targets: LatentTargets,
) -> dict[str, Tensor]:
    """``loss_fg/i`` and ``loss_bg/i`` for each layer index i with both maps present.

    ``current`` and ``recorded`` hold (C, H·W) maps at the latent grid (None for a layer
    that is not guided). A term with nothing to compare (no correspondence, or no
    background) is zero.
    """
    losses: dict[str, Tensor] = {}
    for i, (cur, rec) in enumerate(zip(current, recorded, strict=True)):
        if cur is None or rec is None:
            continue
        rec = rec.to(cur)
        if targets.source.numel():
            diff = cur[:, targets.target] - rec[:, targets.source]
            losses[f"loss_fg/{i}"] = diff.abs().mean()
        else:
            losses[f"loss_fg/{i}"] = cur.sum() * 0
        if bool(targets.bg_trans.any()) and bool(targets.bg_orig.any()):
            mean_cur = cur[:, targets.bg_trans].mean(1)
            mean_rec = rec[:, targets.bg_orig].mean(1)
            losses[f"loss_bg/{i}"] = (mean_cur - mean_rec).abs().mean()
        else:
            losses[f"loss_bg/{i}"] = cur.sum() * 0
    return losses


def weighted_energy(losses: dict[str, Tensor], fg: LayerWeights, bg: LayerWeights) -> Tensor:
    """G = Σ_i fg_i · loss_fg/i + bg_i · loss_bg/i (missing terms count as zero)."""
    terms = [fg[i] * losses[f"loss_fg/{i}"] for i in range(3) if f"loss_fg/{i}" in losses]
    terms += [bg[i] * losses[f"loss_bg/{i}"] for i in range(3) if f"loss_bg/{i}" in losses]
    return torch.stack(terms).sum() if terms else torch.zeros(())


class StepEnergy:
    """The energy of one denoising step, as :func:`dreamlift.priors.guided.guided_step` wants:
    ``energy(features by layer name, inner step k) → scalar``.

    It also keeps the named losses of each inner step (``history``) for logging.
    """

    def __init__(
        self,
        layers: Sequence[str],
        recorded: Sequence[Tensor | None],
        targets: LatentTargets,
        schedule: GuidanceSchedule,
        step: int,
        num_steps: int,
    ) -> None:
        self.layers = list(layers)
        self.recorded = list(recorded)
        self.targets = targets
        self.schedule = schedule
        self.step = step
        self.num_steps = num_steps
        self.history: list[dict[str, float]] = []

    def __call__(self, features: dict[str, Tensor], inner: int) -> Tensor:
        current = [
            to_latent_grid(features[name], self.targets.size) if rec is not None else None
            for name, rec in zip(self.layers, self.recorded, strict=True)
        ]
        losses = feature_losses(current, self.recorded, self.targets)
        fg, bg = self.schedule.weights(self.step, inner, self.num_steps)
        energy = weighted_energy(losses, fg, bg)
        self.history.append(
            {"energy": float(energy.detach()), **{k: float(v.detach()) for k, v in losses.items()}}
        )
        return energy
