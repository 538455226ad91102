"""The guidance interface: what a score-distillation loss takes, returns and how it is found.

A guidance turns renders (or latents) plus prompts into **named losses** whose gradient with
respect to the render is the method's score-distillation gradient. The UNet is never
differentiated: each guidance computes its latent-space gradient ``grad`` under ``no_grad``
and injects it with :meth:`Guidance.inject` (DreamFusion, arXiv 2209.14988, Sec. 3: the
SDS gradient skips the UNet Jacobian).

Reduction convention (the same for every guidance, so loss weights carry between them): the
surrogate ``L = 0.5 * sum((z - sg(z - grad))^2) / B`` — summed over latent elements, averaged
over the B views, as MVDream's x0-reconstruction loss. Its gradient on ``z`` is ``grad / B``.
LucidDreamer's and GE3D's code inject ``grad`` itself (no batch mean), so their loss weights
correspond to ours times B.

Paired calls: a guidance's random draws (t, the noise, GE3D's nodes) can be given in the
:class:`GuidanceInput` instead of drawn, and every call records what it used in
``guidance.last_draws`` (:class:`GuidanceDraws`), so a second call can replay the first's
draws (``inp2 = inp2.with_draws(guidance.last_draws)``): the identity-preserving gradient
of Perturb-and-Revise (arXiv 2412.05279), directional metrics and A/B runs compare two
calls that saw the same t and eps. A given draw is not drawn: the generator advances only
for the draws that are not given, in the order each guidance documents.

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
    to build its front/side/back prompts (Perp-Neg, arXiv 2304.04968); ``azimuths`` and
    ``elevations`` also tell a camera-conditioned prior (toy-sd-camera) the cameras.
    ``step``/``total_steps`` drive every schedule; ``generator`` makes t, noise and node
    draws reproducible.

    ``t``, ``noise`` and ``nodes`` are *given draws*: each one that is set is used instead of
    being drawn from ``generator`` (which then does not advance for it), so two calls can
    share them; ``guidance.last_draws`` holds what the last call used, and
    :meth:`with_draws` puts it into another input. A guidance given a draw it does not make
    (``nodes`` for SDS or ISM, ``t`` for GE3D) raises a :class:`GuidanceError`.
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
    t: Tensor | None = None
    """Given (B,) integer timesteps (SDS: one per view; ISM: one value for all views). A
    single value is used for every view. Used as given, outside the t schedule's range."""
    noise: Tensor | None = None
    """Given eps, shaped like the latents (ISM and GE3D: channel offset included)."""
    nodes: Sequence[int] | None = None
    """Given GE3D trajectory nodes t_0 < … < t_k (see :func:`~.schedules.sample_nodes`)."""

    @property
    def progress(self) -> float:
        """step / total_steps in [0, 1]: the f of GE3D's node sampling (arXiv 2412.05929,
        Sec. 4, implementation details: the node ranges shrink over the run)."""
        return min(max(self.step / max(self.total_steps, 1), 0.0), 1.0)

    def with_draws(self, draws: GuidanceDraws) -> GuidanceInput:
        """This input with the draws of another call given (replayed), all three fields."""
        return replace(self, t=draws.t, noise=draws.noise, nodes=draws.nodes)


@dataclass
class GuidanceDraws:
    """The random draws one guidance call used, drawn or given (``Guidance.last_draws``).

    A field the guidance does not draw is None: ``nodes`` for SDS and ISM, ``t`` for GE3D,
    and ``noise`` for a GE3D step with no room for nodes (it draws none).
    """

    t: Tensor | None = None
    """(B,) int64 timesteps on the latents' device; ISM's single t repeated per view."""
    noise: Tensor | None = None
    """The eps added to the latents (float32, their shape and device)."""
    nodes: list[int] | None = None
    """GE3D's trajectory nodes t_0 < … < t_k."""


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
    entries of ``grad`` become 0, as LucidDreamer does, so one bad entry cannot poison a
    field. Guidances inject through :meth:`Guidance.inject`, which also counts those entries
    (``last_info["nonfinite_grad"]``) so that persistent divergence is not silently zero
    gradient (:class:`~dreamlift.guidance.guard.NonFiniteGuard` stops on it).
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


# ---------------------------------------------------------------------- given draws
def given_timesteps(t: Tensor, batch: int, total: int, name: str) -> Tensor:
    """A given ``GuidanceInput.t`` checked and shaped (batch,) int64: integers in
    [0, total), one per view or a single one for all."""
    t = torch.as_tensor(t)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise GuidanceError(
            f"{name} guidance got timesteps of dtype {t.dtype}",
            hint="give GuidanceInput.t as integer timesteps, e.g. last_draws.t",
        )
    t = t.reshape(-1).long()
    if t.numel() == 1:
        t = t.expand(batch)
    if t.numel() != batch:
        raise GuidanceError(f"{name} guidance got {t.numel()} timesteps for {batch} views")
    if bool(((t < 0) | (t >= total)).any()):
        raise GuidanceError(f"{name} guidance got timesteps outside [0, {total}): {t.tolist()}")
    return t


def timesteps_or_draw(
    inp: GuidanceInput, low: int, high: int, batch: int, total: int, name: str
) -> Tensor:
    """``inp.t`` when given, else (batch,) integers uniform in [low, high) from the
    generator; int64 on the generator's device (the caller moves them)."""
    if inp.t is None:
        return randint(low, high, batch, inp.generator)
    return given_timesteps(inp.t, batch, total, name)


def noise_or_draw(
    inp: GuidanceInput, like: Tensor, name: str, channel_offset: float = 0.0
) -> Tensor:
    """``inp.noise`` when given (shape checked; float32 on the latents' device), else
    :func:`latent_noise` from the generator."""
    if inp.noise is None:
        return latent_noise(like, inp.generator, channel_offset)
    if tuple(inp.noise.shape) != tuple(like.shape):
        raise GuidanceError(
            f"{name} guidance got noise of shape {tuple(inp.noise.shape)} "
            f"for latents of shape {tuple(like.shape)}",
            hint="give GuidanceInput.noise shaped like the latents, e.g. last_draws.noise",
        )
    return inp.noise.detach().to(like.device, torch.float32)


def given_nodes(nodes: Sequence[int], total: int, name: str) -> list[int]:
    """A given ``GuidanceInput.nodes`` checked: integers rising strictly within [0, total)."""
    out = [int(n) for n in nodes]
    if (
        not out
        or any(n != m for n, m in zip(out, nodes, strict=True))
        or out[0] < 0
        or out[-1] >= total
        or any(b <= a for a, b in zip(out, out[1:], strict=False))
    ):
        raise GuidanceError(
            f"{name} guidance got nodes {list(nodes)}",
            hint=f"give integers rising strictly within [0, {total}), e.g. last_draws.nodes",
        )
    return out


# ---------------------------------------------------------------------- the interface
ConfigT = TypeVar("ConfigT")


class Guidance(Generic[ConfigT]):
    """A score-distillation loss: ``guidance(prior, inp) -> {"loss_<name>": scalar, ...}``.

    Subclasses implement :meth:`losses` and inject their gradients with :meth:`inject`.
    After each call ``last_info`` holds detached diagnostic scalars (t used, gradient norm,
    ...) for logging, they are not losses; among them ``nonfinite_grad``, the number of
    non-finite gradient entries that were zeroed, and ``grad_numel``, the number injected
    (both summed over the call's injections; feed them to
    :class:`~dreamlift.guidance.guard.NonFiniteGuard`). ``last_draws`` holds the random
    draws the call used (:class:`GuidanceDraws`), to replay into another call.
    """

    name: ClassVar[str] = ""

    def __init__(self, config: ConfigT) -> None:
        self.config = config
        self.last_info: dict[str, float] = {}
        self.last_draws = GuidanceDraws()

    def __call__(self, prior: DiffusionPrior, inp: GuidanceInput) -> dict[str, Tensor]:
        self.last_info = {"nonfinite_grad": 0.0, "grad_numel": 0.0}
        self.last_draws = GuidanceDraws()
        return self.losses(prior, inp)

    def losses(self, prior: DiffusionPrior, inp: GuidanceInput) -> dict[str, Tensor]:
        raise NotImplementedError

    def inject(self, target: Tensor, grad: Tensor) -> Tensor:
        """:func:`inject_gradient`, counting the entries of ``grad`` it zeroes (non-finite in
        ``target``'s dtype) into ``last_info["nonfinite_grad"]``."""
        grad = grad.detach().to(target.dtype)
        bad = float((~torch.isfinite(grad)).sum())
        self.last_info["nonfinite_grad"] = self.last_info.get("nonfinite_grad", 0.0) + bad
        self.last_info["grad_numel"] = self.last_info.get("grad_numel", 0.0) + grad.numel()
        return inject_gradient(target, grad)

    def refuse_draws(self, inp: GuidanceInput, *names: str) -> None:
        """A GuidanceError when ``inp`` gives a draw this guidance does not make."""
        given = [n for n in names if getattr(inp, n) is not None]
        if given:
            raise GuidanceError(
                f"{self.name} guidance does not draw {', '.join(given)}",
                hint=f"leave GuidanceInput.{given[0]} unset for {self.name}",
            )

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
