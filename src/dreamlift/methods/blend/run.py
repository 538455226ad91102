"""``blend``: BlendNeRF end to end, in three phases that each leave their result in the run
folder, so ``--resume`` skips a finished phase and redoes only the one that was cut:

1. ``inversion/``: both images inverted (W, W+, then one generator copy tuned for both);
2. ``alignment.json``: the ICP warp and how it was found;
3. the blend: ``blended.png`` at the original's pose, ``latent.safetensors`` (with the tuned
   generator in ``inversion/generator``), a turntable and mesh of the blended head, the
   aligned reference, the masks, ``strip.png`` (original | reference | globally aligned |
   ICP-aligned | blend, and the truth for world heads) and ``summary.json``.

Every phase is seeded on its own, so a resumed run reproduces the uninterrupted one.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from dreamlift.devices import resolve_device
from dreamlift.errors import CheckpointError
from dreamlift.generators.triplane import TriplaneGenerator
from dreamlift.io.media import image_grid, save_image, save_turntable
from dreamlift.io.mesh import extract_mesh, write_mesh
from dreamlift.methods.blend.align import Warp, icp_scale_translation, surface_points
from dreamlift.methods.blend.config import BlendConfig
from dreamlift.methods.blend.inputs import BlendImage, BlendRequest, load_inputs
from dreamlift.methods.blend.masks import (
    check_region,
    icp_region,
    labels_to_mask,
    parse_labels,
    read_mask,
)
from dreamlift.methods.blend.optimize import BlendLoss, BlendTargets, Progress, blend_latent
from dreamlift.methods.blend.poisson import contour_band, seamless_clone
from dreamlift.methods.common.folders import open_run
from dreamlift.methods.invert.optimize import Target, fit_latent, joint_pivotal_tuning
from dreamlift.methods.invert.run import load_generator
from dreamlift.metrics.image import masked_psnr
from dreamlift.metrics.perceptual import load_feature_distance
from dreamlift.utils.numerics import flush_denormals
from dreamlift.world.heads import head_cameras

INVERSION_DIR = "inversion"
MIN_INVERSION_PSNR = 18.0
"""Below this a latent does not render its own image: the input is likely not a head the
generator can render (world heads invert to 24-28 dB at the fast preset)."""
ALIGNMENT_NAME = "alignment.json"
TURNTABLE_PITCH = 10.0


@dataclass
class InvertedPair:
    """Both latents and the generator tuned for both."""

    generator: TriplaneGenerator
    ws_original: Tensor
    ws_reference: Tensor
    seconds: dict[str, float]


@dataclass
class Alignment:
    warp: Warp
    globally_aligned: Tensor  # (1, 3, H, W) the reference's latent at the original's camera
    aligned: Tensor  # (1, 3, H, W) the same with the ICP warp
    mask: Tensor  # (H, W) bool, the blend region


@dataclass
class Blend:
    ws: Tensor
    image: Tensor  # (1, 3, H, W) the blend at the original's camera (composited for Poisson)
    render: Tensor  # (1, 3, H, W) the blended latent's own render
    history: list[dict[str, float]]


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
    targets = []
    for item in (original, reference):
        target = Target(item.image.to(device), item.camera(cfg.resolution).to(device))
        if distance is not None:
            with torch.no_grad():
                target.features = distance.features(target.image)
        targets.append(target)
    seconds: dict[str, float] = {}
    pivots = []
    for name, target in zip(("original", "reference"), targets, strict=True):
        t0 = time.perf_counter()
        torch.manual_seed(cfg.seed)
        ws = gen.broadcast(gen.w_avg()[None]).clone()
        ws = fit_latent(gen, target, ws, inv.w_steps, inv, distance, False, _tagged(progress, name))
        if inv.wplus_steps:
            ws = fit_latent(
                gen, target, ws, inv.wplus_steps, inv, distance, True, _tagged(progress, name)
            )
        pivots.append((ws, target))
        seconds[f"latent_{name}_s"] = time.perf_counter() - t0
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


# ---------------------------------------------------------------------------- phase 2
def part_mask(
    parser: torch.nn.Module | None, image: Tensor, part: str | None, given: Tensor | None
):
    """The region in one image: the given mask, or the part parsed from the image."""
    if given is not None:
        return given
    return labels_to_mask(parse_labels(parser, image), part)  # type: ignore[arg-type]


def icp_masks(original: Tensor, reference: Tensor, min_points: int) -> tuple[Tensor, Tensor]:
    """The pixels whose surface points ICP matches: each image's own part, or, where one
    image lacks the part (a bald original given a reference's hair), the union for both, so
    that ICP matches the surfaces under the same pixels."""
    if min(int(original.sum()), int(reference.sum())) >= min_points:
        return original, reference
    union = original | reference
    return union, union


@torch.no_grad()
def align_reference(
    pair: InvertedPair,
    original: BlendImage,
    cfg: BlendConfig,
    parser: torch.nn.Module | None,
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
    if warp is None:
        if cfg.align.enabled:
            box = gen.cfg.box
            mask_ori, mask_ref = icp_masks(
                icp_region(
                    parse_labels(parser, original.image), part, cfg.align.region, given_mask
                ),
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
        mask = part_mask(parser, original.image, part, None) | part_mask(
            parser, aligned, part, None
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
    with torch.no_grad():
        warp = alignment.warp.rays if cfg.variant == "poisson" else None
        render = gen.render(gen.synthesis(ws), camera, warp=warp).rgb.cpu()
    image = render
    if cfg.variant == "poisson":
        destination = original.image[0].clone()
        if part == "hair":  # the code pastes the edit over the original's hair first
            destination = torch.where(mask.cpu(), render[0], destination)
        region = mask.cpu() | (band[0, 0] > 0.5).cpu()  # type: ignore[index]
        image = seamless_clone(render[0].double(), destination.double(), region)[None].float()
    return Blend(ws, image, render, history)


# ---------------------------------------------------------------------------- outputs
def _turntable(gen: TriplaneGenerator, ws: Tensor, cfg: BlendConfig, warp: Warp | None) -> Tensor:
    yaw = torch.linspace(-180, 180, cfg.turntable_frames + 1)[:-1]
    frames = []
    with torch.no_grad():
        planes = gen.synthesis(ws)
        for y in yaw.tolist():
            cam = head_cameras(y, TURNTABLE_PITCH, cfg.resolution).to(planes.device)
            rays = warp.rays if warp is not None else None
            frames.append(gen.render(planes, cam, warp=rays).rgb[0].permute(1, 2, 0).cpu())
    return torch.stack(frames)


def _mesh_box(box: float, warp: Warp | None) -> float:
    """Half-size of the cube that holds the (warped) head."""
    if warp is None:
        return box
    return box * warp.scale + max(abs(v) for v in warp.translation)


def _hwc(image: Tensor) -> Tensor:
    return image[0].permute(1, 2, 0).cpu()


@flush_denormals()
def run_blend(
    request: BlendRequest,
    out: Path,
    progress: Progress | None = None,
    resume: bool = False,
) -> dict:
    """Run a blend into ``out``; returns the summary (also written to summary.json)."""
    from dreamlift.methods.blend.scores import score_world_blend
    from dreamlift.zoo.recipes.head_nets import HeadNet
    from dreamlift.zoo.registry import model_folder

    cfg = request.config
    out = Path(out)
    run = open_run(out, request, resume)
    t_start = time.perf_counter()
    original, reference = load_inputs(request)  # bad input fails before any model loads
    given_mask = read_mask(Path(request.mask), cfg.resolution) if request.mask else None
    device = str(resolve_device(cfg.device))
    gen = load_generator(cfg.generator, device)
    parser = HeadNet.from_pretrained(model_folder(cfg.parts_net))  # parts, and the ICP's head
    if parser.cfg.task != "parts":
        raise CheckpointError(f"{cfg.parts_net} is a {parser.cfg.task} network, not a parser")
    distance = load_feature_distance(lpips=cfg.lpips)
    run.prepare()
    run.write_config(request)
    timings: dict[str, float] = {"load_s": time.perf_counter() - t_start}

    t0 = time.perf_counter()
    pair = load_pair(out / INVERSION_DIR, device) if resume else None
    resumed = ["inversion"] if pair is not None else []
    if pair is None:
        pair = invert_pair(gen, original, reference, cfg, distance, progress)
        save_pair(pair, out / INVERSION_DIR)
    timings.update(pair.seconds)
    timings["inversion_s"] = sum(pair.seconds.values())
    fit = inversion_fit(pair, original, reference, cfg)
    warnings = [item.note for item in (original, reference) if item.note]
    for name, psnr in fit.items():
        if psnr < MIN_INVERSION_PSNR:
            warnings.append(
                f"the {name}'s inversion matches its image at only {psnr:.1f} dB (a head the "
                f"generator can render reaches ≥ {MIN_INVERSION_PSNR:.0f} dB): the blend is "
                "likely wrong; is it a head crop like the generator's training views?"
            )

    t0 = time.perf_counter()
    saved_warp = None
    if resume and (out / ALIGNMENT_NAME).is_file():
        saved_warp = Warp.from_json(json.loads((out / ALIGNMENT_NAME).read_text()))
        resumed.append("alignment")
    alignment = align_reference(
        pair, original, cfg, parser, request.part, given_mask, warp=saved_warp
    )
    (out / ALIGNMENT_NAME).write_text(json.dumps(alignment.warp.to_json(), indent=2) + "\n")
    if alignment.warp.fell_back and cfg.align.enabled:
        warnings.append(f"ICP fell back to the identity: {alignment.warp.reason}")
    timings["alignment_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    result = blend_pair(pair, original, alignment, cfg, distance, request.part, progress)
    timings["blend_s"] = time.perf_counter() - t0
    for step, record in enumerate(result.history):
        run.log({"stage": "blend", "step": step + 1, **record})

    t0 = time.perf_counter()
    outputs = _write_outputs(out, request, pair, original, reference, alignment, result)
    timings["outputs_s"] = time.perf_counter() - t0

    metrics: dict[str, object] = {
        "inversion_psnr": fit,
        "icp": alignment.warp.to_json(),
        "mask_pixels": int(alignment.mask.sum()),
        "perceptual": getattr(distance, "name", None),
        "final_loss": result.history[-1] if result.history else None,
    }
    if request.is_world:
        t0 = time.perf_counter()
        metrics.update(score_world_blend(request, pair, original, alignment, result))
        timings["scoring_s"] = time.perf_counter() - t0
    run.write_summary(
        "blend",
        request,
        metrics,
        timings,
        outputs,
        input={
            "original": {
                "yaw": original.pose.yaw,
                "pitch": original.pose.pitch,
                "pose_from": original.pose_from,
            },
            "reference": {
                "yaw": reference.pose.yaw,
                "pitch": reference.pose.pitch,
                "pose_from": reference.pose_from,
            },
        },
        resumed_phases=resumed,
        warnings=warnings,
    )
    return json.loads((out / "summary.json").read_text())


def _write_outputs(
    out: Path,
    request: BlendRequest,
    pair: InvertedPair,
    original: BlendImage,
    reference: BlendImage,
    alignment: Alignment,
    result: Blend,
) -> dict[str, Path]:
    cfg = request.config
    gen = pair.generator
    poisson = cfg.variant == "poisson"
    warp = alignment.warp if poisson else None
    outputs: dict[str, Path] = {}
    outputs["blended"] = save_image(out / "blended.png", _hwc(result.image))
    latent = out / "latent.safetensors"
    save_file(
        {"ws": result.ws.contiguous().cpu()},
        str(latent),
        metadata={
            "generator": f"{INVERSION_DIR}/generator",
            "warp": json.dumps(warp.to_json()) if warp else "",
        },
    )
    outputs["latent"] = latent
    outputs["generator"] = out / INVERSION_DIR / "generator" / "config.json"
    outputs["aligned_reference"] = save_image(
        out / "aligned_reference.png", _hwc(alignment.aligned)
    )
    outputs["mask"] = save_image(out / "mask.png", alignment.mask[..., None].float())
    tiles = [
        original.image,
        reference.image,
        alignment.globally_aligned,
        alignment.aligned,
        result.image,
    ]
    if request.is_world:
        from dreamlift.methods.blend.scores import truth_views

        tiles.append(truth_views(request, original, [original.pose], cfg.resolution)[:1])
    strip = image_grid(torch.cat([t.cpu() for t in tiles]).permute(0, 2, 3, 1))
    outputs["strip"] = save_image(out / "strip.png", strip)
    outputs.update(save_turntable(out, _turntable(gen, result.ws, cfg, warp)))
    with torch.no_grad():
        planes = gen.synthesis(result.ws)
        to_ref = (lambda p: (p - p.new_tensor(warp.translation)) / warp.scale) if warp else None

        def query(p: Tensor) -> Tensor:
            return (to_ref(p) if to_ref else p)[None].to(planes.device)

        verts, faces, colours = extract_mesh(
            lambda p: gen.sigma(planes, query(p))[0],
            lambda p: gen.raw(planes, query(p))[1][0],
            _mesh_box(gen.cfg.box, warp),
            cfg.mesh_resolution,
            cfg.inversion.mesh_threshold,
        )
    write_mesh(out / "mesh.glb", verts, faces, colours, y_up=True)
    outputs["mesh"] = out / "mesh.glb"
    return outputs
