"""GE3D: text-to-3D by multi-step 2D editing (arXiv 2412.05929, Sec. 3.3).

SDS is a one-step edit of the render; GE3D runs a multi-step edit at every optimisation step
and aligns the two trajectories at every shared node (Eq. 8/11):

1. nodes 0 = t_0 < … < t_k (:func:`~dreamlift.guidance.schedules.sample_nodes`);
2. :func:`noising_trajectory`: DDIM inversion of the render's latent up to t_k with the
   unconditional branch and no CFG (Eq. 2);
3. :func:`denoising_trajectory`: CFG (or Perp-Neg) DDIM from the shared x_{t_k} back to 0;
4. :func:`ge3d_gradient`: λ_g [Σ_{j=1..k-1} w_j (x^inv_j - x^den_j) + w_0 (z - x^den_0)],
   injected into z with no UNet Jacobian, w_j the dynamic balancing coefficient (Eq. 9-10).

Paper vs code (Jahnsonblack/GE3D, ``guidance/GE3D.py``), and the choice here: the paper's
noising path uses the empty text (Sec. 3.3); the released code (whose results the paper
reports) uses the negative-prompt embedding. ``GE3DConfig.inversion_prompt`` picks; the
default is the code's "negative".
The code's DBC is not renormalised over the nodes actually used; neither is ours.

Random draws, in order: the nodes, then the noise (none when no node fits). The trajectory
is deterministic given z, so the noise (which only enters at t_0) barely matters; diversity
comes from cameras and nodes. Either can be given in the input instead
(``GuidanceInput.nodes`` / ``.noise``, channel offset included; not drawn then);
``last_draws`` records both (GE3D takes no ``t``: its timesteps are the nodes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Literal

import torch
from torch import Tensor

from dreamlift.guidance.base import (
    Guidance,
    GuidanceDraws,
    GuidanceError,
    GuidanceInput,
    ddim_move,
    decoded_target_gradient,
    given_nodes,
    noise_or_draw,
    register_guidance,
    start_latent,
)
from dreamlift.guidance.perpneg import PerpNegConfig, PerpNegText, guided_eps
from dreamlift.guidance.schedules import dynamic_balancing_coefficient, sample_nodes
from dreamlift.priors import DiffusionPrior, TextEmbeddings

GE3D_NEGATIVE_PROMPT = (
    "unrealistic, blurry, low quality, out of focus, ugly, low contrast, dull, low-resolution."
)


@dataclass
class GE3DConfig:
    """GE3D settings; defaults are the released code's giraffe config (``configs/``,
    ``arguments/__init__.py``; the paper's Sec. 4 values were not recoverable)."""

    n: int = 6
    """Most nodes above t_0 per step (also the number of DBC rows); ~6 was best (Fig. 9)."""
    jump_min: tuple[int, int] = (60, 30)
    """(start, end) of the smallest jump between nodes; shrinks over the run."""
    jump_max: tuple[int, int] = (80, 50)
    """(start, end) of the (exclusive) largest jump."""
    max_step: tuple[int, int] = (480, 300)
    """(start, end) of the bound every node stays under: coarse edits early, fine late."""
    lambda_g: float = 0.1
    """λ_guidance, the code's scale of the injected gradient."""
    use_dbc: bool = True
    """Weight nodes by the dynamic balancing coefficient; off = every node weight 1."""
    dbc_sigma: float = 1000.0
    """DBC Gaussian width in iterations (the code's 1000 is for 3000-iteration runs)."""
    dbc_sigma_fraction: float | None = None
    """If set, sigma = fraction × total_steps, so short runs keep the code's shape (1/3)."""
    guidance_scale: float = 7.5
    """CFG on the denoising trajectory (hard-coded 7.5 in the code)."""
    negative_prompt: str = GE3D_NEGATIVE_PROMPT
    """The uncond branch of the denoising CFG (and of the noising path, see below)."""
    inversion_prompt: Literal["negative", "empty"] = "negative"
    """Noising path's text: "negative" (code, matches released results) or "empty" (paper)."""
    noise_offset: float = 0.1
    """Per-channel noise offset shared across views (code); the noise only enters at t_0."""
    exact_clean_end: bool = False
    """Node 0 as the clean latent (ᾱ = 1) instead of add_noise(z, eps, 0) (code)."""
    perpneg: PerpNegConfig = field(default_factory=PerpNegConfig)
    """Perp-Neg on the denoising trajectory (on in the code; see :meth:`paper`)."""
    clean_target: Literal["latent", "image"] = "latent"
    """Where the finest node's term w_0 (z - x^den_0) is taken. "latent" (paper, code): in
    the VAE's latent space, reaching the render through the encoder's Jacobian. "image":
    decode x^den_0 and pull the render itself towards it, w_0 image_weight (x - D(x^den_0)),
    as SDS's "x0" form does; the other nodes stay latent. With toy-sd-camera's small VAE the
    latent form distilled the yellow torus orange to toy-clip at every CFG tried (3-7.5);
    the image form at weight 4 made it yellow (docs/benchmarks.md)."""
    image_weight: float = 1.0
    """Scale of the image-space w_0 term relative to λ_g (``clean_target="image"``)."""

    @classmethod
    def paper(cls) -> GE3DConfig:
        """The released code's full setting: Perp-Neg on, "head"-style view prompts aside."""
        return cls(perpneg=PerpNegConfig(enabled=True))


@dataclass
class Trajectory:
    """Latents at each node (``latents[i]`` at ``nodes[i]``) and the eps that moved them."""

    nodes: list[int]
    latents: list[Tensor]
    eps: list[Tensor]
    """``eps[i]`` was predicted at the start of the move between nodes i and i+1."""


@torch.no_grad()
def noising_trajectory(
    prior: DiffusionPrior,
    x_start: Tensor,
    nodes: Sequence[int],
    uncond: Tensor,
    *,
    exact_clean_end: bool = False,
    depth: Tensor | None = None,
) -> Trajectory:
    """DDIM inversion x_{t_0} → … → x_{t_k} with eps_θ(x_{t_i}, t_i, uncond), no CFG (Eq. 2).

    ``x_start`` is the latent already at ``nodes[0]`` (:func:`start_latent`); ``uncond`` is
    the (B or 1, L, D) embedding of the unconditional branch.
    """
    latents, eps = [x_start], []
    for t, t_next in pairwise(nodes):
        e = prior.unet_eps(latents[-1], t, uncond, depth)
        latents.append(ddim_move(prior, latents[-1], t, t_next, e, exact_clean_end))
        eps.append(e)
    return Trajectory(list(nodes), latents, eps)


@torch.no_grad()
def denoising_trajectory(
    prior: DiffusionPrior,
    x_tk: Tensor,
    nodes: Sequence[int],
    text: TextEmbeddings | PerpNegText,
    guidance_scale: float,
    *,
    exact_clean_end: bool = False,
    depth: Tensor | None = None,
) -> Trajectory:
    """CFG (or Perp-Neg) DDIM x_{t_k} → … → x_{t_0} from the shared deepest latent (Eq. 2).

    Returned in node order like :func:`noising_trajectory`: ``latents[k]`` is ``x_tk``,
    ``latents[0]`` the edited clean latent x^den_{t_0}.
    """
    latents, eps = [x_tk], []
    for t, t_prev in pairwise(list(nodes)[::-1]):
        e, _ = guided_eps(prior, latents[-1], t, text, guidance_scale, depth)
        latents.append(ddim_move(prior, latents[-1], t, t_prev, e, exact_clean_end))
        eps.append(e)
    return Trajectory(list(nodes), latents[::-1], eps[::-1])


def ge3d_gradient(
    z: Tensor,
    inv: Trajectory,
    den: Trajectory,
    weights: Tensor,
    lambda_g: float,
    clean_term: bool = True,
) -> Tensor:
    """λ_g [Σ_{j=1..k-1} w_j (x^inv_j - x^den_j) + w_0 (z - x^den_0)] (Eq. 8/11, as injected
    by the released code's ``train_step``).

    The gradient of Eq. 8's Σ_j w_j ||x^inv_j - x^den_j||^2 with the trajectories taken as
    identity maps of z. The finest term uses the clean z, the shared deepest node adds 0.
    ``weights`` are the k rows w_0 … w_{k-1}. ``clean_term=False`` leaves the w_0 term out
    (it is then taken in image space, ``GE3DConfig.clean_target``).
    """
    k = len(inv.nodes) - 1
    w = weights.to(z.device, torch.float32)
    grad = (
        w[0] * (z.detach().float() - den.latents[0])
        if clean_term
        else z.new_zeros(z.shape, dtype=torch.float32)
    )
    for j in range(1, k):
        grad = grad + w[j] * (inv.latents[j] - den.latents[j])
    return lambda_g * grad


def node_weights(config: GE3DConfig, step: int, total: int, k: int) -> Tensor:
    """Rows 0 … k-1 of the DBC (Eq. 10), dropped and not renormalised for k < n (code)."""
    if not config.use_dbc:
        return torch.ones(k, dtype=torch.float64)
    sigma = config.dbc_sigma
    if config.dbc_sigma_fraction is not None:
        sigma = max(config.dbc_sigma_fraction * total, 1e-6)
    return dynamic_balancing_coefficient(step, total, max(config.n, k), sigma)[:k]


@register_guidance("ge3d", GE3DConfig)
class GE3DGuidance(Guidance[GE3DConfig]):
    """GE3D's trajectory-alignment guidance; returns ``{"loss_ge3d": ...}``.

    ``last_nodes`` keeps the nodes of the last call beside the scalar ``last_info`` (the
    same list as ``last_draws.nodes``).
    """

    last_nodes: list[int]

    def losses(self, prior: DiffusionPrior, inp: GuidanceInput) -> dict[str, Tensor]:
        cfg = self.config
        image_target = cfg.clean_target == "image"
        if cfg.clean_target not in ("latent", "image"):
            raise GuidanceError(
                f"unknown GE3D clean_target {cfg.clean_target!r}", hint="latent or image"
            )
        if image_target:
            self.require_images(inp, "GE3D clean_target 'image'", "clean_target 'latent'")
        self.refuse_draws(inp, "t")
        text = self.guided_text(prior, inp, cfg.negative_prompt, cfg.perpneg)
        z = self.latents(prior, inp)
        if inp.nodes is None:
            nodes = sample_nodes(
                inp.progress, inp.generator, cfg.jump_min, cfg.jump_max, cfg.max_step, cfg.n
            )
        else:
            nodes = given_nodes(inp.nodes, prior.num_train_timesteps, self.name)
        k = len(nodes) - 1
        self.last_nodes = nodes
        self.last_draws = GuidanceDraws(nodes=nodes)
        self.last_info.update({"k": float(k), "t_k": float(nodes[-1])})
        if k == 0:  # max_step below the smallest jump: nothing to edit this step
            return {"loss_ge3d": z.sum() * 0.0}
        noise = noise_or_draw(inp, z, self.name, cfg.noise_offset)
        self.last_draws = GuidanceDraws(noise=noise, nodes=nodes)

        with torch.no_grad():
            empty = cfg.inversion_prompt == "empty"
            uncond = prior.embed_prompts([""]) if empty else text.uncond
            x_t0 = start_latent(prior, z, noise, nodes[0], cfg.exact_clean_end)
            inv = noising_trajectory(
                prior, x_t0, nodes, uncond, exact_clean_end=cfg.exact_clean_end, depth=inp.depth
            )
            den = denoising_trajectory(
                prior,
                inv.latents[-1],
                nodes,
                text,
                cfg.guidance_scale,
                exact_clean_end=cfg.exact_clean_end,
                depth=inp.depth,
            )
            weights = node_weights(cfg, inp.step, inp.total_steps, k)
            grad = ge3d_gradient(z, inv, den, weights, cfg.lambda_g, clean_term=not image_target)
            if image_target:
                scale = cfg.lambda_g * cfg.image_weight * float(weights[0])
                image_grad = decoded_target_gradient(prior, inp.images, den.latents[0], scale)

        self.last_info.update(
            {
                "w_0": float(weights[0]),
                "w_sum": float(weights.sum()),
                "grad_norm": float(grad.flatten(1).norm(dim=1).mean()),
            }
        )
        loss = self.inject(z, grad)
        if image_target:
            self.last_info["image_grad_norm"] = float(image_grad.flatten(1).norm(dim=1).mean())
            loss = loss + self.inject(inp.images, image_grad)
        return {"loss_ge3d": loss}
