"""The baselines FaceDNeRF is compared with (arXiv:2306.00783 §4, App. C):

* a 2D edit of the single image by the diffusion prior (SDEdit, arXiv:2108.01073: noise the
  image's latent to a middle timestep, denoise it under the prompt), then inverted;
* a latent-direction edit, InterfaceGAN-like (arXiv:2005.09635): the direction between the
  generator's training latents with and without the attribute, applied to the image's W;
* relighting in 2D, then inversion (here the world's own relit render of the input view: a
  perfect single-view relighter, so what remains is whether one relit view makes a
  relit head);
* relighting along a latent direction: the linear map from an SH change to a W change,
  fitted on training latents of the same head under different lights, applied to the
  image's W with toy-light's estimate of the input's light (InterfaceGAN's idea for a
  continuous attribute).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dreamlift.errors import ConfigError
from dreamlift.priors import DiffusionPrior
from dreamlift.world.heads import HeadParams, head_params


@torch.no_grad()
def sdedit(
    prior: DiffusionPrior,
    image: Tensor,
    prompt: str,
    strength: float = 0.6,
    steps: int = 50,
    guidance_scale: float = 7.5,
    seed: int = 0,
) -> Tensor:
    """``image`` (1, 3, H, W) in [0, 1] edited toward ``prompt``: its latent noised to
    ``strength`` of the chain and denoised by DDIM under CFG."""
    if not 0 < strength <= 1:
        raise ConfigError(f"SDEdit strength must be in (0, 1], got {strength}")
    size = prior.image_size
    x = image.float()
    if x.shape[-1] != size:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear")
    z = prior.encode(x.to(prior.device))
    text = prior.embed_text([prompt])
    timesteps = prior.timesteps(steps)
    start = steps - max(1, round(steps * strength))  # at least one denoising step
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(z.shape, generator=gen).to(z)
    z = prior.add_noise(z, noise, timesteps[start])
    z = prior.sample(text, steps, guidance_scale, latents=z, start=start)
    edited = prior.decode(z)
    if edited.shape[-1] != image.shape[-1]:
        edited = torch.nn.functional.interpolate(edited, size=image.shape[-2:], mode="bilinear")
    return edited.clamp(0, 1)


def attribute_labels(params: HeadParams, wanted: dict[str, object]) -> bool:
    """Whether a training head already has every attribute of an edit."""
    for name, value in wanted.items():
        if name == "hair":
            if (params.hair != "none") != (value != "none"):
                return False
        elif getattr(params, name) != value:
            return False
    return True


def attribute_direction(
    latents: Tensor, seeds: list[int], wanted: dict[str, object]
) -> tuple[Tensor, Tensor] | None:
    """(unit direction, mean latent of the heads that have the attribute) in W, from the
    generator's training latents (N, w_dim) and their heads' seeds; None when no training
    head (or every one) has it: the edit is outside what labelled latents can teach."""
    has = torch.tensor([attribute_labels(head_params(s), wanted) for s in seeds])
    if has.all() or not has.any():
        return None
    positive = latents[has].mean(0)
    direction = positive - latents[~has].mean(0)
    return direction / direction.norm().clamp(min=1e-8), positive


def light_directions(
    latents: Tensor, seeds: list[int], sh: Tensor, scale: Tensor, ridge: float = 1e-3
) -> Tensor | None:
    """(9, w_dim) map ``B`` with ΔW ≈ ΔSH · B, fitted by ridge regression on the differences
    between latents of the same head (so identity cancels), with the head's scale as a
    second regressor (the training variants change both). None when no head was trained
    under more than one light: then light is not a direction of the latent space."""
    heads = torch.tensor(seeds)
    groups = [g for g in (heads == h for h in heads.unique()) if int(g.sum()) > 1]
    if not groups:
        return None
    regressors = torch.cat([sh, scale[:, None]], dim=1).double()  # (N, 10)
    dx = torch.cat([regressors[g] - regressors[g].mean(0) for g in groups])
    dw = torch.cat([latents[g] - latents[g].mean(0) for g in groups]).double()
    gram = dx.T @ dx + ridge * len(dx) * torch.eye(dx.shape[1], dtype=dx.dtype)
    return torch.linalg.solve(gram, dx.T @ dw)[:9].to(latents.dtype)


def latent_relight(ws: Tensor, directions: Tensor, sh_from: Tensor, sh_to: Tensor) -> Tensor:
    """W+ latent moved by the SH change ``sh_to − sh_from`` (9,) through ``directions``."""
    return ws + ((sh_to - sh_from).to(ws) @ directions.to(ws))[None, None, :]


def latent_edit(ws: Tensor, direction: Tensor, positive: Tensor) -> Tensor:
    """W+ latent moved along ``direction`` until its projection reaches the attribute
    group's mean (InterfaceGAN's step along the boundary normal, its size set by the data)."""
    w = ws[:, 0]
    step = ((positive - w) * direction).sum(-1, keepdim=True)
    return (w + step * direction)[:, None, :].expand_as(ws).clone()


__all__ = [
    "attribute_direction",
    "attribute_labels",
    "latent_edit",
    "latent_relight",
    "light_directions",
    "sdedit",
]
