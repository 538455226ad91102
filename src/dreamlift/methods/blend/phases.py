"""The three phases of a blend (BlendNeRF, arXiv:2302.06608 §3): inversion of both images
into one generator, 3D-aware alignment of the reference, and blending by latent
optimisation. :mod:`dreamlift.methods.blend.run` strings them together with the run folder;
the benchmark calls them directly to blend one inversion several ways."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from dreamlift.generators.triplane import TriplaneGenerator
from dreamlift.methods.blend.align import Warp, icp_scale_translation, surface_points
from dreamlift.methods.blend.config import BlendConfig
from dreamlift.methods.blend.inputs import BlendImage
from dreamlift.methods.blend.masks import (
    check_region,
    icp_masks,
    icp_region,
    labels_to_mask,
    parse_labels,
)
from dreamlift.methods.blend.optimize import (
    BlendLoss,
    BlendTargets,
    Progress,
    blend_latent,
    render_warp,
)
from dreamlift.methods.blend.poisson import contour_band, seamless_clone
from dreamlift.methods.invert.optimize import Target, fit_pivot, joint_pivotal_tuning
from dreamlift.metrics.image import masked_psnr


@dataclass
class InvertedPair:
    """Both latents and the generator tuned for both."""

    generator: TriplaneGenerator
    ws_original: Tensor
    ws_reference: Tensor
    seconds: dict[str, float]


@dataclass
class Alignment:
    """The reference brought to the original, and the region to blend."""

    warp: Warp
    globally_aligned: Tensor  # (1, 3, H, W) the reference's latent at the original's camera
    aligned: Tensor  # (1, 3, H, W) the same with the ICP warp
    mask: Tensor  # (H, W) bool, the blend region


@dataclass
class Blend:
    """The blended latent, its image and each step's loss terms."""

    ws: Tensor
    image: Tensor  # (1, 3, H, W) the blend at the original's camera (composited for Poisson)
    render: Tensor  # (1, 3, H, W) the blended latent's own render
    history: list[dict[str, float]]
    warp: Warp | None = None  # what the latent is rendered with (the Poisson variant's)

    @property
    def rays(self):  # noqa: ANN201 - a RayWarp or None, for Generator3D.render
        return self.warp.rays if self.warp is not None else None


# ---------------------------------------------------------------------------- phase 1
def invert_pair(
    gen: TriplaneGenerator,
    original: BlendImage,
    reference: BlendImage,
    cfg: BlendConfig,
    distance: object,
    progress: Progress | None = None,
) -> InvertedPair:
    """W (then W+) for each image from w_avg, then joint PTI of one generator copy
    (arXiv:2302.06608 §3.1)."""
    inv = replace(cfg.inversion, seed=cfg.seed)
    device = next(gen.parameters()).device
    seconds: dict[str, float] = {}
    pivots = []
    for name, item in (("original", original), ("reference", reference)):
        target = Target(item.image.to(device), item.camera(cfg.resolution).to(device))
        ws, stages = fit_pivot(gen, target, inv, distance, _tagged(progress, name))
        pivots.append((ws, target))
        seconds[f"latent_{name}_s"] = sum(stages.values())
    t0 = time.perf_counter()
    tuned = gen
    if inv.pti_steps:
        tuned = joint_pivotal_tuning(gen, pivots, inv, distance, progress)  # type: ignore[assignment]
    seconds["pti_s"] = time.perf_counter() - t0
    return InvertedPair(tuned, pivots[0][0], pivots[1][0], seconds)  # type: ignore[arg-type]


@torch.no_grad()
def inversion_fit(
    pair: InvertedPair, original: BlendImage, reference: BlendImage, cfg: BlendConfig
) -> dict[str, float]:
    """PSNR of each inverted latent's render against its own image, at its own camera."""
    gen = pair.generator
    out = {}
    for name, ws, item in (
        ("original", pair.ws_original, original),
        ("reference", pair.ws_reference, reference),
    ):
        render = gen.render(gen.synthesis(ws), item.camera(cfg.resolution).to(ws.device)).rgb
        out[name] = masked_psnr(render[0].cpu(), item.image[0])
    return out


def _tagged(progress: Progress | None, name: str) -> Progress | None:
    if progress is None:
        return None
    return lambda stage, done, total, loss: progress(f"{stage} ({name})", done, total, loss)


def save_pair(pair: InvertedPair, folder: Path) -> None:
    """The tuned generator, then the latents: the latents file marks a finished phase."""
    folder.mkdir(parents=True, exist_ok=True)
    pair.generator.save_pretrained(folder / "generator")
    save_file(
        {"original": pair.ws_original.contiguous(), "reference": pair.ws_reference.contiguous()},
        str(folder / "latents.safetensors"),
        metadata={"seconds": json.dumps(pair.seconds)},
    )


def load_pair(folder: Path, device: str) -> InvertedPair | None:
    """The saved inversion, or None when it is missing or incomplete (it is then redone)."""
    latents = folder / "latents.safetensors"
    if not latents.is_file() or not (folder / "generator" / "model.safetensors").is_file():
        return None
    try:
        from safetensors import safe_open

        stored = load_file(str(latents))
        with safe_open(str(latents), "pt") as f:
            seconds = json.loads((f.metadata() or {}).get("seconds", "{}"))
        gen = TriplaneGenerator.from_pretrained(folder / "generator", device)
    except Exception:  # noqa: BLE001 - any unreadable file means: redo the phase
        return None
    return InvertedPair(gen, stored["original"].to(device), stored["reference"].to(device), seconds)


@torch.no_grad()
def align_reference(
    pair: InvertedPair,
    original: BlendImage,
    cfg: BlendConfig,
    parser: torch.nn.Module,
    part: str | None,
    given_mask: Tensor | None,
    warp: Warp | None = None,
) -> Alignment:
    """Global alignment (the reference's latent at the original's camera), local alignment
    (ICP on the surface points under the part's pixels, unless ``cfg.align.enabled`` is off
    or a ``warp`` is given: a resumed run's), and the blend region: the union of the part in
    the original and in the aligned reference (a given mask as it is)."""
    gen = pair.generator
    device = pair.ws_original.device
    camera = original.camera(cfg.resolution).to(device)
    planes_ref = gen.synthesis(pair.ws_reference)
    globally = gen.render(planes_ref, camera).rgb.cpu()
    labels_ori = parse_labels(parser, original.image)  # for ICP and for the blend region
    if warp is None:
        if cfg.align.enabled:
            box = gen.cfg.box
            mask_ori, mask_ref = icp_masks(
                icp_region(labels_ori, part, cfg.align.region, given_mask),
                icp_region(parse_labels(parser, globally), part, cfg.align.region, given_mask),
                cfg.align.min_points,
            )
            planes_ori = gen.synthesis(pair.ws_original)
            p_ori = surface_points(gen, planes_ori, camera, mask_ori.to(device), cfg.align, box)
            p_ref = surface_points(gen, planes_ref, camera, mask_ref.to(device), cfg.align, box)
            warp = icp_scale_translation(p_ref.cpu(), p_ori.cpu(), cfg.align)
        else:
            warp = Warp(reason="local alignment off")
    aligned = gen.render(planes_ref, camera, warp=warp.rays).rgb.cpu()
    if given_mask is not None:
        mask = given_mask
    else:
        mask = labels_to_mask(labels_ori, part) | labels_to_mask(  # type: ignore[arg-type]
            parse_labels(parser, aligned),
            part,  # type: ignore[arg-type]
        )
    check_region(mask, f"{part} region of the original and the aligned reference")
    return Alignment(warp, globally, aligned, mask)


# ---------------------------------------------------------------------------- phase 3
def blend_pair(
    pair: InvertedPair,
    original: BlendImage,
    alignment: Alignment,
    cfg: BlendConfig,
    distance: object,
    part: str | None,
    progress: Progress | None = None,
) -> Blend:
    """Optimise the blended latent; for the Poisson variant, composite it into the original."""
    gen = pair.generator.requires_grad_(False)
    device = pair.ws_original.device
    camera = original.camera(cfg.resolution).to(device)
    mask = alignment.mask.to(device)
    m = mask[None, None].float()
    band = None
    if cfg.variant == "poisson":
        width = max(2, round(cfg.band * (0.6 if part in ("eyes", "lips") else 1.0)))
        band = contour_band(mask, width)[None, None].float()
    targets = BlendTargets(camera, original.image.to(device), alignment.aligned.to(device), m, band)
    start = pair.ws_reference if cfg.variant == "poisson" else pair.ws_original
    loss = BlendLoss(
        gen, targets, pair.ws_original, pair.ws_reference, alignment.warp, cfg, distance
    )
    torch.manual_seed(cfg.seed)
    ws, history = blend_latent(loss, start, cfg.steps, cfg.lr, progress)
    warp = render_warp(alignment.warp, cfg)
    with torch.no_grad():
        render = gen.render(
            gen.synthesis(ws), camera, warp=warp.rays if warp is not None else None
        ).rgb.cpu()
    image = render
    if cfg.variant == "poisson":
        destination = original.image[0].clone()
        if part == "hair":  # the code pastes the edit over the original's hair first
            destination = torch.where(mask.cpu(), render[0], destination)
        region = mask.cpu() | (band[0, 0] > 0.5).cpu()  # type: ignore[index]
        image = seamless_clone(render[0].double(), destination.double(), region)[None].float()
    return Blend(ws, image, render, history, warp)
