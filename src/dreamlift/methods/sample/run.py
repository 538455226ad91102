"""Text-to-image samples from a prior: the first look at what a 2D model knows.

``dreamlift sample "a red cube, side view"`` draws ``n`` DDIM samples with classifier-free
guidance and writes them, a grid and the run contract. A toy prior only knows the world's
caption grammar, so its prompts are parsed first (an unknown word is a one-line
``CaptionError`` listing the vocabulary) instead of silently becoming ``unk`` tokens. For a
depth-conditioned prior, ``depth_from_caption`` renders the caption's world asset and
conditions on its disparity, as toy-sd-depth was trained. A multi-view prior (toy-mvdream,
MVDream) draws each sample as one group of its views, denoised together at azimuths spaced
evenly from ``--azimuth`` (0 when not given) at ``--elevation``, one row of the grid per
group. World captions are judged by toy-clip when it exists (shape and colour agreement of
the samples).
"""

from __future__ import annotations

import math
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
from rich.progress import Progress
from torch import Tensor

from dreamlift.cameras import DEFAULT_ORBIT
from dreamlift.errors import DreamliftError, ModelError
from dreamlift.io.media import image_grid, save_image
from dreamlift.io.run import RunDir
from dreamlift.methods.common.priors import check_prompt, load_prior
from dreamlift.methods.sample.config import VIEW_AZIMUTH, VIEW_ELEVATION, SampleConfig
from dreamlift.priors import DiffusionPrior, MultiViewPrior
from dreamlift.priors.multiview import group_azimuths
from dreamlift.world.assets import Description
from dreamlift.world.captions import parse


def caption_depth(desc: Description, size: int) -> Tensor:
    """(1, size, size) disparity of the caption's asset seen from its view (front if none).

    Disparity (1/z, 0 on the background) is what toy-sd-depth was trained on and what
    monocular depth models give SD2-depth.
    """
    from dreamlift.cameras import orbit_cameras
    from dreamlift.world.assets import layout
    from dreamlift.world.render import RenderSettings, render
    from dreamlift.zoo.recipes.sd import disparity

    view = desc.view or "front"
    cams = orbit_cameras(
        torch.tensor([VIEW_AZIMUTH[view]]),
        torch.tensor([VIEW_ELEVATION[view]]),
        DEFAULT_ORBIT.radius,
        DEFAULT_ORBIT.fov_deg,
        size,
    )
    out = render(layout(desc), cams, RenderSettings(supersample=2))
    return disparity(out["depth"][..., 0])


def draw(
    prior: DiffusionPrior,
    cfg: SampleConfig,
    depth: Tensor | None = None,
    quiet: bool = True,
) -> Tensor:
    """``cfg.n`` samples (n, 3, H, W) in [0, 1]: DDIM with CFG from seeded noise; for a
    multi-view prior, ``cfg.n`` groups of its views (n · views, 3, H, W), group by group, each
    group denoised together (MVDream's sampling). ``cfg.batch`` images a UNet call, whole
    groups."""
    views = view_count(prior)
    gen = torch.Generator().manual_seed(cfg.seed)
    noise = prior.initial_latents(cfg.n * views, gen)
    text = prior.embed_text(cfg.prompt, cfg.negative)
    cameras: AbstractContextManager[None] = nullcontext()
    if views > 1:
        cameras = prior.views(*group_cameras(prior, cfg))  # type: ignore[attr-defined]
    elif cfg.azimuth is not None:
        text = prior.with_camera(text, torch.tensor([cfg.azimuth]), torch.tensor([cfg.elevation]))
    per_call = max(1, cfg.batch // views) * views
    images = []
    with Progress(disable=quiet, transient=True) as progress, cameras:
        task = progress.add_task("sampling", total=cfg.n * cfg.steps)
        for i in range(0, len(noise), per_call):
            z = noise[i : i + per_call]
            d = None if depth is None else depth.expand(z.shape[0], -1, -1)
            latents = prior.sample(
                text.expand(z.shape[0]),
                cfg.steps,
                cfg.guidance_scale,
                latents=z,
                depth=d,
                callback=lambda *_, k=z.shape[0] // views: progress.advance(task, k),
            )
            with torch.no_grad():
                images.append(prior.decode(latents).cpu())
    return torch.cat(images)


def view_count(prior: DiffusionPrior) -> int:
    """Views a sample of ``prior`` has: a multi-view prior's group, else 1."""
    return prior.num_views if isinstance(prior, MultiViewPrior) else 1


def group_cameras(prior: MultiViewPrior, cfg: SampleConfig) -> tuple[Tensor, Tensor]:
    """Azimuths and elevations (degrees, one per view) of every group :func:`draw` draws."""
    start = torch.tensor([cfg.azimuth if cfg.azimuth is not None else 0.0])
    azimuth = group_azimuths(start, prior.num_views)
    return azimuth, torch.full_like(azimuth, cfg.elevation)


def judge(
    images: Tensor, desc: Description, prompt: str, name: str, one_view: bool = True
) -> dict[str, float]:
    """CLIP similarity to the prompt and, for single objects, attribute agreement (the view
    word's too when every image was drawn at the caption's view: ``one_view``)."""
    from dreamlift.metrics.clip import ClipScorer

    scorer = ClipScorer.load(name)
    metrics = {"clip_similarity": float(scorer.clip_similarity(images, prompt).mean())}
    if desc.relation != "single":
        return metrics
    obj = desc.objects[0]
    truth = {"shape": obj.shape, "colour": obj.colour}
    if one_view and desc.view in ("front", "side", "back"):
        truth["view"] = desc.view
    for attribute, want in truth.items():
        found = scorer.classify(images, attribute)
        metrics[f"{attribute}_agreement"] = sum(f == want for f in found) / len(found)
    return metrics


def check_conditioning(prior: DiffusionPrior, cfg: SampleConfig) -> None:
    """The prior takes what the run gives it: a depth map, a camera, or neither."""
    if cfg.depth_from_caption and not prior.depth_conditioned:
        raise ModelError(
            f"--depth-from-caption needs a depth-conditioned prior; {prior.folder} is not one",
            "use --prior toy-sd-depth",
        )
    if cfg.azimuth is not None and not (prior.camera_conditioned or view_count(prior) > 1):
        raise ModelError(
            f"--azimuth needs a camera-conditioned prior; {prior.folder} has no camera/ embedding",
            "use --prior toy-sd-camera or a multi-view prior, or leave out --azimuth",
        )
    if prior.depth_conditioned and not cfg.depth_from_caption:
        raise ModelError(
            f"the prior in {prior.folder} is depth-conditioned", "pass --depth-from-caption"
        )


def sample(cfg: SampleConfig, out: Path, quiet: bool = False) -> dict[str, Any]:
    """Run ``cfg`` into the folder ``out``; returns metrics, notes, timings and outputs."""
    run = RunDir(out)  # its clock starts here; the folder is made once the inputs are checked
    t0 = time.perf_counter()
    prior = load_prior(cfg.prior, cfg.device, prompt=cfg.prompt)
    check_conditioning(prior, cfg)
    desc = check_prompt(cfg.prompt, prior)
    depth = None
    if cfg.depth_from_caption:
        # A free prompt has no world asset: parsing it again raises the grammar's error.
        depth = caption_depth(desc or parse(cfg.prompt), prior.image_size)
    run.prepare()
    run.write_config(cfg)
    timings = {"load_s": time.perf_counter() - t0}

    t0 = time.perf_counter()
    images = draw(prior, cfg, depth, quiet)
    timings["sample_s"] = time.perf_counter() - t0
    timings["seconds_per_sample"] = timings["sample_s"] / cfg.n

    views = view_count(prior)
    outputs = _save(run.path, images, depth, columns=views if views > 1 else None)
    metrics: dict[str, float] = {}
    notes: list[str] = []
    if isinstance(prior, MultiViewPrior):
        azimuth, elevation = group_cameras(prior, cfg)
        angles = ", ".join(f"{a:g}" for a in azimuth.tolist())
        notes.append(
            f"each sample is a group of {views} views (grid rows) denoised together, at "
            f"azimuths {angles}° and elevation {float(elevation[0]):g}°"
        )
    if cfg.judge is None:
        notes.append("not judged (no judge asked for)")
    elif desc is None:
        notes.append("not a world caption: samples not judged")
    else:
        t0 = time.perf_counter()
        try:
            metrics = judge(images, desc, cfg.prompt, cfg.judge, one_view=views == 1)
            timings["judge_s"] = time.perf_counter() - t0
        except DreamliftError as exc:
            notes.append(f"agreement not measured: {exc}")
    command = (
        f"dreamlift sample {cfg.prompt!r} --prior {cfg.prior} --n {cfg.n} --steps {cfg.steps} "
        f"--cfg {cfg.guidance_scale} --seed {cfg.seed}"
        + (" --depth-from-caption" if cfg.depth_from_caption else "")
        + (
            f" --azimuth {cfg.azimuth} --elevation {cfg.elevation}"
            if cfg.azimuth is not None or views > 1
            else ""
        )
    )
    run.write_summary(command, cfg, metrics, timings, outputs, notes=notes)
    return {
        "metrics": metrics,
        "notes": notes,
        "timings": timings,
        "outputs": outputs,
        "views": views,
    }


def _save(
    folder: Path, images: Tensor, depth: Tensor | None, columns: int | None = None
) -> dict[str, Path]:
    """The samples, their grid (``columns`` wide, or about square) and the depth used."""
    hwc = images.permute(0, 2, 3, 1)
    samples = folder / "samples"
    samples.mkdir(exist_ok=True)
    for i, image in enumerate(hwc):
        save_image(samples / f"sample_{i:03d}.png", image)
    columns = columns or min(len(hwc), max(4, math.ceil(math.sqrt(len(hwc)))))
    outputs = {
        "grid": save_image(folder / "grid.png", image_grid(hwc, columns)),
        "samples": samples,
    }
    if depth is not None:
        d = depth[0] / depth.max().clamp(min=1e-8)
        outputs["depth"] = save_image(folder / "depth.png", d[..., None])
    return outputs
