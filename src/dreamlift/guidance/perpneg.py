"""Perp-Neg: view prompts with perpendicular negative guidance (arXiv 2304.04968).

GE3D uses it on its denoising trajectory (arXiv 2412.05929, supp. Eq. 17).

Against the Janus problem, each view's positive embedding is interpolated between the front,
side and back prompts by azimuth, and the *other* views' prompts act as negatives — only
through their component perpendicular to the positive direction, so they cannot cancel it:

    Δ_k = eps_k - eps_neg,   eps = eps_neg + s (Δ_0 + Σ_k w_k perp(Δ_k, Δ_0)),

with perp(a, b) = a - (<a, b> / ||b||^2) b per sample. Weights follow GE3D's
``guidance/perpneg_utils.py`` (from stable-dreamfusion). With all w_k = 0 this is plain CFG.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from dreamlift.priors import DiffusionPrior, TextEmbeddings
from dreamlift.priors.text import SUFFIX_TEMPLATE


@dataclass
class PerpNegConfig:
    """Perp-Neg switches and weights (GE3D ``arguments/__init__.py``)."""

    enabled: bool = False
    """Off by default because it needs ``GuidanceInput.prompt`` and ``.azimuths``."""
    negative_w: float = -2.0
    """Scale of the negative views' weights; 0 turns Perp-Neg into plain CFG."""
    front_decay: float = 2.0
    """How fast the front negative fades as the view turns from the front."""
    side_decay: float = 10.0
    """How fast the side negative fades away from the side."""
    template: str = SUFFIX_TEMPLATE
    """View prompt template with ``{prompt}`` and ``{view}``; the world's captions by default."""


@dataclass
class PerpNegText:
    """Per-view Perp-Neg embeddings.

    positive (B, L, D), K negatives (B, K, L, D), their weights (B, K), uncond (B, L, D).
    """

    positive: Tensor
    negatives: Tensor
    weights: Tensor
    uncond: Tensor

    def __len__(self) -> int:
        return self.positive.shape[0]


def perpneg_weights(
    azimuth_deg: float, config: PerpNegConfig
) -> tuple[float, str, str, list[float]]:
    """(r, start view, end view, negative weights) for one azimuth (GE3D's
    ``guidance/perpneg_utils.py``, from stable-dreamfusion).

    Front half (|a| < 90): r = 1 - |a|/90 interpolates front → side; negatives [front, side].
    Back half: r = 1 - (|a| - 90)/90 interpolates side → back; negatives [side, front].
    The positive embedding is r * start + (1 - r) * end.
    """
    a = abs((azimuth_deg + 180.0) % 360.0 - 180.0)
    w = config.negative_w
    if a < 90.0:
        r = 1.0 - a / 90.0
        w_front = 0.0 if r > 0.8 else math.exp(-r * config.front_decay) * w
        w_side = 0.0 if r < 0.2 else math.exp(-(1.0 - r) * config.side_decay) * w
        return r, "front", "side", [w_front, w_side]
    r = 1.0 - (a - 90.0) / 90.0
    w_side = 0.0 if r > 0.8 else math.exp(-r * config.side_decay) * w / 2.0
    return r, "side", "back", [w_side, w]


def perpneg_text(
    prior: DiffusionPrior,
    prompt: str,
    azimuths: Tensor,
    config: PerpNegConfig,
    negative_prompt: str = "",
) -> PerpNegText:
    """Interpolated positives, view negatives and weights for each azimuth."""
    views = ("front", "side", "back")
    emb = prior.embed_prompts(
        [config.template.format(prompt=prompt.strip(), view=v) for v in views]
    )
    by_view = dict(zip(views, emb, strict=True))
    positives, negatives, weights = [], [], []
    for az in azimuths.reshape(-1).tolist():
        r, start, end, w = perpneg_weights(float(az), config)
        positives.append(r * by_view[start] + (1.0 - r) * by_view[end])
        negs = ("front", "side") if start == "front" else ("side", "front")
        negatives.append(torch.stack([by_view[v] for v in negs]))
        weights.append(w)
    uncond = prior.embed_prompts([negative_prompt]).expand(len(positives), -1, -1)
    return PerpNegText(
        positive=torch.stack(positives),
        negatives=torch.stack(negatives),
        weights=torch.tensor(weights, dtype=torch.float32, device=emb.device),
        uncond=uncond,
    )


def perpendicular(a: Tensor, b: Tensor) -> Tensor:
    """a - (<a, b> / ||b||^2) b, per sample over all other dimensions."""
    dims = tuple(range(1, a.ndim))
    coef = (a * b).sum(dims, keepdim=True) / b.square().sum(dims, keepdim=True).clamp_min(1e-12)
    return a - coef * b


def perpneg_eps(
    prior: DiffusionPrior,
    latents: Tensor,
    t: int | Tensor,
    text: PerpNegText,
    guidance_scale: float,
    depth: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """(Perp-Neg epsilon, positive-branch epsilon); uncond, positive and the K negatives run
    in ONE UNet call."""
    b, k = latents.shape[0], text.negatives.shape[1]
    states = torch.cat([text.uncond, text.positive, *text.negatives.unbind(1)])
    tt = torch.as_tensor(t, device=latents.device).long().reshape(-1).expand(b)
    rep = k + 2
    if depth is not None and depth.shape[0] > 1:
        depth = depth.repeat(rep, *([1] * (depth.ndim - 1)))
    eps = prior.unet_eps(latents.repeat(rep, 1, 1, 1), tt.repeat(rep), states, depth).chunk(rep)
    uncond, main = eps[0], eps[1] - eps[0]
    combined = main
    for i in range(k):
        w = text.weights[:, i].reshape(-1, *([1] * (latents.ndim - 1)))
        combined = combined + w * perpendicular(eps[2 + i] - uncond, main)
    return uncond + guidance_scale * combined, eps[1]


def guided_eps(
    prior: DiffusionPrior,
    latents: Tensor,
    t: int | Tensor,
    text: TextEmbeddings | PerpNegText,
    guidance_scale: float,
    depth: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """(guided epsilon, conditional epsilon): CFG (GE3D Eq. 15) or its Perp-Neg form,
    whichever ``text`` asks for. The conditional one feeds MVDream's std rescale."""
    if isinstance(text, PerpNegText):
        return perpneg_eps(prior, latents, t, text, guidance_scale, depth)
    parts = prior.predict_eps(latents, t, text, guidance_scale, depth, return_parts=True)
    return parts.guided, parts.cond
