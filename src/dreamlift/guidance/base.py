"""The guidance interface: what a score-distillation loss takes, returns and how it is found.

A guidance turns renders (or latents) plus prompts into **named losses** whose gradient with
respect to the render is the method's score-distillation gradient. The UNet is never
differentiated: each guidance computes its latent-space gradient ``grad`` under ``no_grad``
and injects it with :func:`inject_gradient` (METHODS 0.3).

Reduction convention (the same for every guidance, so loss weights carry between them): the
surrogate ``L = 0.5 * sum((z - sg(z - grad))^2) / B`` — summed over latent elements, averaged
over the B views, as MVDream's x0-reconstruction loss. Its gradient on ``z`` is ``grad / B``.
LucidDreamer's and GE3D's code inject ``grad`` itself (no batch mean), so their loss weights
correspond to ours times B.

Also here: the *clean-end convention* shared by ISM and GE3D, because the two only reduce to
each other (GE3D Eq. 6-7) when they treat the clean end of the chain identically.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Any, ClassVar, Generic, TypeVar

import torch
from torch import Tensor

from dreamlift.errors import DreamliftError
from dreamlift.guidance.perpneg import PerpNegConfig, PerpNegText, perpneg_text
from dreamlift.priors import DiffusionPrior, TextEmbeddings


class GuidanceError(DreamliftError):
    """A guidance that cannot be built or run as asked (unknown name, missing inputs)."""


@dataclass
class GuidanceInput:
    """One optimisation step's worth of views for a guidance.

    Give ``images`` (renders, differentiable) or ``latents`` (already encoded), and
    ``prompts`` (one view-dependent prompt per view) or ``text`` (ready embeddings, whose
    uncond branch is then used as given). ``prompt`` and ``azimuths`` are what Perp-Neg needs
    to build its front/side/back prompts (METHODS 0.6); ``azimuths`` and ``elevations`` also
    tell a camera-conditioned prior (toy-sd-camera) the cameras. ``step``/``total_steps``
    drive every schedule; ``generator`` makes t, noise and node draws reproducible.
    """

    images: Tensor | None = None
    """(B, 3, H, W) renders in [0, 1]; their gradient is the guidance's output."""
    latents: Tensor | None = None
    """(B, C, h, w) scaled latents, when the field renders latents directly."""
    prompts: Sequence[str] | None = None
    """Per-view prompts, already view-dependent ("a red cube, side view")."""
    text: TextEmbeddings | None = None
    """Alternative to ``prompts``: both CFG branches, batch B or 1."""
    prompt: str | None = None
    """The view-free prompt; only Perp-Neg needs it."""
    azimuths: Tensor | None = None
    """(B,) camera azimuths in degrees, 0 = front (Perp-Neg, camera-conditioned priors)."""
    elevations: Tensor | None = None
    """(B,) camera elevations in degrees (camera-conditioned priors; default 0)."""
    depth: Tensor | None = None
    """(B, 1, H, W) depth for depth-conditioned priors."""
    step: int = 0
    total_steps: int = 1
    generator: torch.Generator | None = None

    @property
    def progress(self) -> float:
        """step / total_steps in [0, 1]: the f of GE3D's node sampling (METHODS 2.3)."""
        return min(max(self.step / max(self.total_steps, 1), 0.0), 1.0)


# ---------------------------------------------------------------------- gradient injection
class _InjectGradient(torch.autograd.Function):
    """Forward: the surrogate's value; backward: ``grad / B``, whatever the surrogate's dtype."""

    @staticmethod
    def forward(ctx, latents: Tensor, grad: Tensor) -> Tensor:  # type: ignore[override]
        batch = max(latents.shape[0], 1)
        ctx.save_for_backward(grad)
        ctx.batch = batch
        return 0.5 * grad.float().square().sum() / batch

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return grad_output * grad / ctx.batch, None


def inject_gradient(latents: Tensor, grad: Tensor) -> Tensor:
    """A scalar loss whose gradient on ``latents`` is ``grad / B`` (no UNet Jacobian).

    Equal in value and gradient to :func:`surrogate_loss`, but exact in any dtype. Non-finite
    entries of ``grad`` become 0, as LucidDreamer does, so one bad step cannot poison a field.
    """
    grad = torch.nan_to_num(grad.detach().to(latents.dtype), nan=0.0, posinf=0.0, neginf=0.0)
    return _InjectGradient.apply(latents, grad)


def surrogate_loss(latents: Tensor, grad: Tensor) -> Tensor:
    """``0.5 * ||z - sg(z - grad)||^2 / B``: the textbook form of :func:`inject_gradient`."""
    target = (latents - grad).detach()
    return 0.5 * (latents - target).square().sum() / max(latents.shape[0], 1)


def decoded_target_gradient(
    prior: DiffusionPrior, images: Tensor, target: Tensor, weight: Tensor | float
) -> Tensor:
    """``weight · (x − D(target))``: the gradient of ``0.5 · weight · ||x − sg(D(target))||²``
    on the renders x, for a target taken in image space (SDS's x0 form, GE3D's image-space
    clean term); inject it into the renders with :func:`inject_gradient`."""
    return weight * (images.detach().float() - prior.decode(target))


# ---------------------------------------------------------------------- clean-end convention
def start_latent(
    prior: DiffusionPrior, z: Tensor, noise: Tensor, t: int, exact_clean_end: bool
) -> Tensor:
    """The render's latent placed at the first trajectory node ``t``.

    GE3D and LucidDreamer start with ``add_noise(z, noise, t)``, even at t = 0 where ᾱ_0 =
    0.99915 leaves a little noise. With ``exact_clean_end`` node 0 is the clean latent
    itself (ᾱ = 1), which is what makes a one-node GE3D equal ISM (GE3D Eq. 6-7).
    """
    if exact_clean_end and t == 0:
        return z.detach().clone()
    return prior.add_noise(z.detach(), noise, t)


def ddim_move(
    prior: DiffusionPrior, x: Tensor, t: int, t_next: int, eps: Tensor, exact_clean_end: bool
) -> Tensor:
    """One deterministic DDIM move t → t_next (either direction; GE3D Eq. 2 / supp. Eq. 14).

    With ``exact_clean_end`` node 0 has ᾱ = 1: leaving it is ``add_noise(x, eps, t_next)``
    (x̂0 = x there) and reaching it is ``predict_x0``. Otherwise the prior's ᾱ_0 is used.
    """
    if exact_clean_end and t == 0:
        return prior.add_noise(x, eps, t_next)
    if exact_clean_end and t_next == 0:
        return prior.predict_x0(x, t, eps)
    return prior.ddim_step(x, t, t_next, eps)


def latent_noise(
    like: Tensor, generator: torch.Generator | None, channel_offset: float = 0.0
) -> Tensor:
    """eps ~ N(0, I), plus ``channel_offset * N(0, 1)`` per channel shared across the batch.

    The offset is GE3D's (0.1): it lets the noise shift each latent channel's mean, which
    plain N(0, I) almost never does at 64x64.
    """
    dev = generator.device if generator is not None else torch.device("cpu")
    noise = torch.randn(like.shape, generator=generator, device=dev)
    if channel_offset:
        shape = (1, like.shape[1], *([1] * (like.ndim - 2)))
        noise = noise + channel_offset * torch.randn(shape, generator=generator, device=dev)
    return noise.to(like.device, torch.float32)


def randint(low: int, high: int, size: int, generator: torch.Generator | None) -> Tensor:
    """Integers uniform in [low, high) drawn from ``generator`` (CPU when None)."""
    dev = generator.device if generator is not None else torch.device("cpu")
    return torch.randint(low, max(high, low + 1), (size,), generator=generator, device=dev)


# ---------------------------------------------------------------------- the interface
ConfigT = TypeVar("ConfigT")


class Guidance(Generic[ConfigT]):
    """A score-distillation loss: ``guidance(prior, inp) -> {"loss_<name>": scalar, ...}``.

    Subclasses implement :meth:`losses`. After each call ``last_info`` holds detached
    diagnostic scalars (t used, gradient norm, ...) for logging; they are not losses.
    """

    name: ClassVar[str] = ""

    def __init__(self, config: ConfigT) -> None:
        self.config = config
        self.last_info: dict[str, float] = {}

    def __call__(self, prior: DiffusionPrior, inp: GuidanceInput) -> dict[str, Tensor]:
        self.last_info = {}
        return self.losses(prior, inp)

    def losses(self, prior: DiffusionPrior, inp: GuidanceInput) -> dict[str, Tensor]:
        raise NotImplementedError

    # Shared input handling -------------------------------------------------------------
    def latents(self, prior: DiffusionPrior, inp: GuidanceInput, grad: bool = True) -> Tensor:
        """The latents z the gradient is injected into: ``inp.latents`` or ``E(inp.images)``."""
        if inp.latents is not None:
            return inp.latents
        if inp.images is None:
            raise GuidanceError(
                f"{self.name} guidance got neither images nor latents",
                hint="set GuidanceInput.images (renders in [0, 1]) or .latents",
            )
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            return prior.encode(inp.images)

    def require_images(self, inp: GuidanceInput, setting: str, alternative: str) -> Tensor:
        """The renders, for a term compared with decoded images; ``setting`` names the option
        that needs them, ``alternative`` the one that works on latents alone."""
        if inp.images is None:
            raise GuidanceError(
                f"{setting} compares decoded images with renders: it needs images",
                hint=f"set GuidanceInput.images, or use {alternative}",
            )
        return inp.images

    def text(
        self, prior: DiffusionPrior, inp: GuidanceInput, negative_prompt: str
    ) -> TextEmbeddings:
        """Both CFG branches; the uncond branch is ``negative_prompt`` ("" = empty prompt).

        With ``inp.azimuths`` and a camera-conditioned prior, both are told the cameras.
        """
        if inp.text is not None:
            text = inp.text
        elif not inp.prompts:
            raise GuidanceError(
                f"{self.name} guidance got no prompts",
                hint="set GuidanceInput.prompts (one per view) or .text",
            )
        else:
            text = prior.embed_text(list(inp.prompts), negative=negative_prompt)
        if inp.azimuths is None or not prior.camera_conditioned:
            return text
        elevations = inp.elevations
        if elevations is None:
            elevations = torch.zeros_like(inp.azimuths, dtype=torch.float32)
        return prior.with_camera(text, inp.azimuths, elevations)

    def guided_text(
        self,
        prior: DiffusionPrior,
        inp: GuidanceInput,
        negative_prompt: str,
        perpneg: PerpNegConfig | None = None,
    ) -> TextEmbeddings | PerpNegText:
        """What the guided (CFG or Perp-Neg) epsilon is computed from, per view."""
        if perpneg is None or not perpneg.enabled:
            return self.text(prior, inp, negative_prompt)
        if inp.prompt is None or inp.azimuths is None:
            raise GuidanceError(
                f"{self.name} guidance with Perp-Neg needs the view-free prompt and azimuths",
                hint="set GuidanceInput.prompt and .azimuths, or perpneg.enabled=False",
            )
        return perpneg_text(prior, inp.prompt, inp.azimuths, perpneg, negative_prompt)


# ---------------------------------------------------------------------- registry
@dataclass(frozen=True)
class GuidanceSpec:
    """A registered guidance: its class and the dataclass that configures it."""

    cls: type[Guidance]
    config_cls: type


GUIDANCES: dict[str, GuidanceSpec] = {}
"""name → (Guidance class, config class). Filled by :func:`register_guidance`."""

G = TypeVar("G", bound=type[Guidance])


def register_guidance(name: str, config_cls: type) -> Callable[[G], G]:
    """Class decorator: adds a guidance under ``name``; its module is imported by the package."""

    def add(cls: G) -> G:
        if name in GUIDANCES and GUIDANCES[name].cls is not cls:
            raise ValueError(f"guidance {name!r} is registered twice")
        cls.name = name
        GUIDANCES[name] = GuidanceSpec(cls, config_cls)
        return cls

    return add


def guidance_names() -> list[str]:
    return sorted(GUIDANCES)


def guidance_spec(name: str) -> GuidanceSpec:
    """The registry entry of ``name``; unknown names raise a GuidanceError listing the known."""
    if name not in GUIDANCES:
        raise GuidanceError(
            f"unknown guidance {name!r}", hint=f"choose one of: {', '.join(guidance_names())}"
        )
    return GUIDANCES[name]


def make_guidance(name: str, config: Any = None) -> Guidance:
    """Build a guidance by name from its config object, a dict of overrides, or defaults."""
    spec = guidance_spec(name)
    if config is None:
        config = spec.config_cls()
    elif isinstance(config, dict):
        known = {f.name for f in fields(spec.config_cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise GuidanceError(
                f"unknown {name} guidance option(s): {', '.join(unknown)}",
                hint=f"options are: {', '.join(sorted(known))}",
            )
        config = replace(spec.config_cls(), **config)
    elif not (is_dataclass(config) and isinstance(config, spec.config_cls)):
        raise GuidanceError(
            f"{name} guidance needs a {spec.config_cls.__name__}, got {type(config).__name__}"
        )
    return spec.cls(config)
