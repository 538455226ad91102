"""The three optimisations of an inversion: W, then W+, then pivotal tuning.

Every step renders the whole input view (the perceptual distance needs whole images), with
the config's sample counts when it sets them and the generator's own otherwise.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamlift.cameras import Cameras
from dreamlift.errors import TrainingError
from dreamlift.generators.base import Generator3D
from dreamlift.methods.invert.config import InvertConfig
from dreamlift.metrics.perceptual import FeatureDistance
from dreamlift.world.heads import head_cameras

Progress = Callable[[str, int, int, float], None]
"""progress(stage, steps done, stage steps, loss)."""


@dataclass
class Target:
    """The image to invert (1, 3, H, W) in [0, 1], its camera, and its features."""

    image: Tensor
    camera: Cameras
    features: list[Tensor] | None = None


@dataclass
class InversionState:
    ws: Tensor  # (1, num_ws, w_dim) the pivot
    generator: Generator3D  # tuned copy after PTI, else the input generator
    tuned: bool = False
    seconds: dict[str, float] = field(default_factory=dict)


def ramp(step: int, total: int, rampup: float = 0.05, rampdown: float = 0.25) -> float:
    """FaceDNeRF's projector schedule (StyleGAN2's, arXiv:1912.04958 App. D): the learning
    rate rises linearly over the first 5 % of the steps and falls as a half cosine over the
    last 25 %. Evaluated at the middle of each step, so no step has a zero rate."""
    t = (step + 0.5) / max(1, total)
    down = 0.5 - 0.5 * math.cos(min(1.0, (1 - t) / rampdown) * math.pi)
    return down * min(1.0, t / rampup)


def reconstruction_loss(
    image: Tensor, target: Target, distance: FeatureDistance | None, weight: float
) -> Tensor:
    loss = F.mse_loss(image, target.image)
    if distance is not None and weight > 0 and target.features is not None:
        loss = loss + weight * distance.distance(image, target.features)
    return loss


def view_loss(
    gen: Generator3D,
    ws: Tensor,
    target: Target,
    cfg: InvertConfig,
    distance: FeatureDistance | None,
    samples: tuple[int, int] | None,
) -> Tensor:
    """The reconstruction loss of ``ws`` rendered by ``gen`` at the input camera."""
    image = gen.render(gen.synthesis(ws), target.camera, samples=samples).rgb
    return reconstruction_loss(image, target, distance, cfg.perceptual_weight)


def _check(loss: Tensor, stage: str, step: int) -> None:
    if not torch.isfinite(loss):
        raise TrainingError(
            f"non-finite inversion loss in stage {stage} at step {step}",
            "lower the learning rate (--set latent_lr=… or pti_lr=…)",
        )


def fit_latent(
    gen: Generator3D,
    target: Target,
    ws_init: Tensor,
    steps: int,
    cfg: InvertConfig,
    distance: FeatureDistance | None,
    per_layer: bool,
    progress: Progress | None = None,
) -> Tensor:
    """Optimise one w (broadcast to every layer) or, with ``per_layer``, the full W+ latent."""
    stage = "wplus" if per_layer else "w"
    w_avg = gen.w_avg().detach()
    param = (ws_init.clone() if per_layer else ws_init[:, 0].clone()).requires_grad_(True)
    opt = torch.optim.Adam([param], lr=cfg.latent_lr, betas=(0.9, 0.999))
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = cfg.latent_lr * ramp(step, steps)
        ws = param if per_layer else gen.broadcast(param)
        loss = view_loss(gen, ws, target, cfg, distance, cfg.render_samples)
        loss = loss + cfg.latent_prior * (ws - w_avg).square().sum(-1).mean()
        if per_layer and cfg.wplus_delta > 0:
            loss = loss + cfg.wplus_delta * (ws - ws_init).square().sum(-1).mean()
        _check(loss, stage, step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if progress:
            progress(stage, step + 1, steps, float(loss.detach()))
    final = param.detach()
    return final if per_layer else gen.broadcast(final).clone()


def random_orbit_camera(gen_rng: torch.Generator, size: int) -> Cameras:
    """A camera of the generator's training orbit (yaw ±90° of the front, pitch −10…40°)."""
    yaw = float(torch.empty(()).uniform_(-90, 90, generator=gen_rng))
    pitch = float(torch.empty(()).uniform_(-10, 40, generator=gen_rng))
    return head_cameras(yaw, pitch, size)


def pivotal_tuning(
    gen: Generator3D,
    ws: Tensor,
    target: Target,
    cfg: InvertConfig,
    distance: FeatureDistance | None,
    progress: Progress | None = None,
) -> Generator3D:
    """Fine-tune a copy of the generator with the pivot ``ws`` frozen (PTI, arXiv:2106.05744
    §3.2), anchored as ``cfg.anchor`` says. The input generator is left untouched."""
    return joint_pivotal_tuning(gen, [(ws, target)], cfg, distance, progress)


def joint_pivotal_tuning(
    gen: Generator3D,
    pivots: Sequence[tuple[Tensor, Target]],
    cfg: InvertConfig,
    distance: FeatureDistance | None,
    progress: Progress | None = None,
) -> Generator3D:
    """PTI of one generator copy for several (pivot, image) pairs, one optimiser step per pair
    in turn within every iteration (BlendNeRF's joint inversion of the original and the
    reference, arXiv:2302.06608 §3.1: one generator then renders both). With one pair it is
    plain PTI."""
    rng = torch.Generator().manual_seed(cfg.seed + 17)
    samples = cfg.render_samples

    def losses(tuned: Generator3D, frozen: Generator3D, step: int) -> Iterator[Tensor]:
        for ws, target in pivots:
            ws = ws.detach()
            loss = view_loss(tuned, ws, target, cfg, distance, samples)
            yield loss + anchor_loss(tuned, frozen, ws, target, cfg, rng, samples)

    return tune_copy(gen, cfg, cfg.pti_steps, losses, progress)


StepLosses = Callable[[Generator3D, Generator3D, int], Iterator[Tensor]]
"""step_losses(tuned, frozen, step): the losses of one iteration, one optimiser step each."""


def tune_copy(
    gen: Generator3D,
    cfg: InvertConfig,
    steps: int,
    step_losses: StepLosses,
    progress: Progress | None = None,
) -> Generator3D:
    """A copy of ``gen`` fine-tuned with PTI's optimiser (Adam at ``cfg.pti_lr`` and
    ``cfg.pti_betas``, the projector's ramp), every weight, one optimiser step per loss that
    ``step_losses`` yields. The input generator is left untouched and handed to
    ``step_losses`` frozen, for anchors; every pivotal tuning (plain, joint, FaceDNeRF's
    stage B) is this loop with its own losses."""
    if not isinstance(gen, torch.nn.Module):
        raise TrainingError("pivotal tuning needs a torch generator")
    tuned = copy.deepcopy(gen).train().requires_grad_(True)
    frozen = gen.eval().requires_grad_(False)
    params = [p for p in tuned.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.pti_lr, betas=cfg.pti_betas)
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = cfg.pti_lr * ramp(step, steps)
        for loss in step_losses(tuned, frozen, step):
            _check(loss, "pti", step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if progress:
            progress("pti", step + 1, steps, float(loss.detach()))
    return tuned.eval().requires_grad_(False)


def anchor_loss(
    tuned: Generator3D,
    frozen: Generator3D,
    ws: Tensor,
    target: Target,
    cfg: InvertConfig,
    rng: torch.Generator,
    samples: tuple[int, int] | None,
) -> Tensor | float:
    """What keeps PTI from overfitting the input view (see :class:`InvertConfig`)."""
    if cfg.anchor == "views":
        cam = random_orbit_camera(rng, target.image.shape[-1]).to(ws.device)
        with torch.no_grad():
            anchor = frozen.render(frozen.synthesis(ws), cam, samples=samples).rgb
        mine = tuned.render(tuned.synthesis(ws), cam, samples=samples).rgb
        return cfg.anchor_weight * F.mse_loss(mine, anchor)
    if cfg.anchor == "locality":
        z = torch.randn(1, frozen.z_dim, generator=rng).to(ws.device)
        w_s = frozen.mapping(z, truncation=0.7)
        direction = w_s - ws
        w_r = ws + cfg.locality_alpha * direction / direction.norm().clamp(min=1e-8)
        with torch.no_grad():
            anchor = frozen.render(frozen.synthesis(w_r), target.camera, samples=samples).rgb
        mine = tuned.render(tuned.synthesis(w_r), target.camera, samples=samples).rgb
        return cfg.locality_weight * F.mse_loss(mine, anchor)
    return 0.0


START_TRUNCATION = 0.7
START_SAMPLES = (8, 8)


@torch.no_grad()
def input_loss(
    gen: Generator3D,
    ws: Tensor,
    target: Target,
    cfg: InvertConfig,
    distance: FeatureDistance | None,
    samples: tuple[int, int] | None = None,
) -> float:
    """:func:`view_loss` as a number, without gradients: for ranking and comparing fits."""
    return float(view_loss(gen, ws, target, cfg, distance, samples))


def restart_points(
    gen: Generator3D, target: Target, cfg: InvertConfig, distance: FeatureDistance | None
) -> list[Tensor]:
    """W's starting points: w_avg, then the ``cfg.w_restarts`` of ``cfg.w_candidates`` mapped
    samples that render closest to the input (few samples a ray: a ranking, not a fit)."""
    w_avg = gen.broadcast(gen.w_avg()[None]).clone()
    if cfg.w_restarts == 0 or cfg.w_candidates == 0:
        return [w_avg]
    seed = torch.Generator().manual_seed(cfg.seed)
    z = torch.randn(cfg.w_candidates, gen.z_dim, generator=seed).to(w_avg.device)
    with torch.no_grad():
        candidates = gen.mapping(z, START_TRUNCATION)
    losses = [input_loss(gen, ws[None], target, cfg, distance, START_SAMPLES) for ws in candidates]
    order = sorted(range(len(losses)), key=losses.__getitem__)
    return [w_avg, *(candidates[i : i + 1].clone() for i in order[: cfg.w_restarts])]


def fit_w(
    gen: Generator3D,
    target: Target,
    cfg: InvertConfig,
    distance: FeatureDistance | None,
    progress: Progress | None = None,
) -> Tensor:
    """W from each of :func:`restart_points`, keeping the run with the lowest input-view loss.
    From w_avg alone, W can settle in a wrong basin (hair, face width) that its 100 steps do
    not leave; a start near the input in appearance avoids it, and the final fit to the input
    tells which run did (measured in docs/benchmarks.md, "W restarts")."""
    if cfg.w_steps == 0:
        return gen.broadcast(gen.w_avg()[None]).clone()
    starts = restart_points(gen, target, cfg, distance)
    best, best_loss = None, math.inf
    for k, start in enumerate(starts):
        torch.manual_seed(cfg.seed)
        run_progress = _restart_progress(progress, k)
        ws = fit_latent(gen, target, start, cfg.w_steps, cfg, distance, False, run_progress)
        if len(starts) == 1:  # nothing to compare: no render to judge it by
            return ws
        loss = input_loss(gen, ws, target, cfg, distance, cfg.render_samples)
        if loss < best_loss:
            best, best_loss = ws, loss
    return best


def _restart_progress(progress: Progress | None, k: int) -> Progress | None:
    if progress is None or k == 0:
        return progress
    return lambda stage, done, total, loss: progress(f"{stage} (restart {k})", done, total, loss)


def fit_pivot(
    gen: Generator3D,
    target: Target,
    cfg: InvertConfig,
    distance: FeatureDistance | None,
    progress: Progress | None = None,
    keep: Callable[[str, Tensor], None] | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """W (:func:`fit_w`), then W+: the pivot PTI tunes around, and the seconds of each stage;
    ``keep(stage, ws)`` sees each stage's latent. The target's features are computed here
    when it has none."""
    if distance is not None and target.features is None:
        with torch.no_grad():
            target.features = distance.features(target.image)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    ws = fit_w(gen, target, cfg, distance, progress)
    seconds["w_s"] = time.perf_counter() - t0
    if keep:
        keep("w", ws)
    t0 = time.perf_counter()
    if cfg.wplus_steps:
        ws = fit_latent(gen, target, ws, cfg.wplus_steps, cfg, distance, True, progress)
        if keep:
            keep("wplus", ws)
    seconds["wplus_s"] = time.perf_counter() - t0
    return ws, seconds


def invert_target(
    gen: Generator3D,
    target: Target,
    cfg: InvertConfig,
    distance: FeatureDistance | None,
    progress: Progress | None = None,
    keep: Callable[[str, Tensor], None] | None = None,
) -> InversionState:
    """W → W+ → PTI; ``keep(stage, ws)`` sees each stage's latent (for scoring each stage)."""
    ws, seconds = fit_pivot(gen, target, cfg, distance, progress, keep)
    t0 = time.perf_counter()
    tuned, was_tuned = gen, False
    if cfg.pti_steps:
        tuned, was_tuned = pivotal_tuning(gen, ws, target, cfg, distance, progress), True
    seconds["pti_s"] = time.perf_counter() - t0
    return InversionState(ws, tuned, was_tuned, seconds)
