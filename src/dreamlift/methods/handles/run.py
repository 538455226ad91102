"""One edit as a run folder: what ``dreamlift handles`` does between parsing and printing.

Inputs come from files (image, mask, depth or a depth estimator) or from a world scene
(``scene``). The files are checked before the prior is loaded, and everything before
anything is written: the 3D edit of the depth too, made once there and handed to the
editor (so ``load_s`` includes it; the editor's ``geometry_s`` only re-checks the inputs).
The folder gets the run contract (``config.yaml``, ``metrics.jsonl`` with the energy of
every guided step, ``summary.json`` with timings split by pass and, for scenes,
ground-truth scores) plus:

``edited.png``, ``edited_depth.png`` (disparity, bright = near) and ``edited_depth.npy``
(z-depth), ``edited_mask.png``, ``input.png``, ``mask.png``, ``points_before.ply`` /
``points_after.ply`` (xyz + rgb, viewer frame), ``strip.png`` and ``edit.gif`` (identity →
full edit; input → edit without ``frames``), ``reconstruction.png`` (the inversion's
rebuild of the input), and for scenes ``target.png``, the true edited render.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dreamlift.errors import DataError
from dreamlift.io.media import image_grid, save_image, to_uint8, write_gif
from dreamlift.io.points import write_point_cloud_ply
from dreamlift.methods.common.folders import open_run
from dreamlift.methods.common.priors import check_prompt, load_prior
from dreamlift.methods.handles.edit import prepare
from dreamlift.methods.handles.estimate import estimate_depth
from dreamlift.methods.handles.files import read_depth, read_image, read_mask, resize_inputs
from dreamlift.methods.handles.inputs import as_image, check_depth, check_mask
from dreamlift.methods.handles.passes import Progress
from dreamlift.methods.handles.registry import EDITORS
from dreamlift.methods.handles.request import HandlesRun
from dreamlift.methods.handles.result import HandlesResult
from dreamlift.methods.handles.scene import SceneCase, scene_case
from dreamlift.methods.handles.scores import score_edit
from dreamlift.priors import DiffusionPrior

SCENE_RESOLUTION = 64  # world scenes for the prior-free 2D baseline


@dataclass
class Inputs:
    image: Tensor
    mask: Tensor
    depth: Tensor | None
    prompt: str
    case: SceneCase | None = None


def read_files(run: HandlesRun) -> Inputs:
    """The image, mask and depth files, checked as far as they can be without the prior."""
    image = as_image(read_image(Path(run.image)))  # type: ignore[arg-type]
    mask = read_mask(Path(run.mask))  # type: ignore[arg-type]
    check_mask(mask, image)
    depth = read_depth(Path(run.depth)) if run.depth else None
    if depth is None and run.depth_model is None:
        raise DataError(
            "no depth for the image", "give --depth FILE, --depth-model DIR or use --scene"
        )
    if depth is not None:
        check_depth(depth, image, mask)
    return Inputs(image, mask, depth, run.prompt or "", None)


def fit_inputs(run: HandlesRun, inputs: Inputs | None, size: int | None) -> Inputs:
    """Render the scene at ``size``, or resize the files to it when ``--resize`` asks."""
    if run.scene is not None:
        case = scene_case(run.scene, run.object_index, run.transform, size or SCENE_RESOLUTION)
        return Inputs(case.image, case.mask, case.depth, run.prompt or case.prompt, case)
    assert inputs is not None
    if run.resize and size is not None and tuple(inputs.mask.shape) != (size, size):
        image, mask, depth = resize_inputs(inputs.image, inputs.mask, inputs.depth, size)
        check_mask(mask, image)
        return replace(inputs, image=image, mask=mask, depth=depth)
    return inputs


def _save(folder: Path, inputs: Inputs, result: HandlesResult) -> dict[str, Path]:
    out: dict[str, Path] = {}
    out["edited"] = save_image(folder / "edited.png", result.image)
    disparity = result.disparity / result.disparity.max().clamp(min=1e-12)
    out["edited_depth"] = save_image(folder / "edited_depth.png", disparity[..., None])
    np.save(folder / "edited_depth.npy", result.depth.numpy().astype(np.float32))
    out["edited_depth_npy"] = folder / "edited_depth.npy"
    out["edited_mask"] = save_image(folder / "edited_mask.png", result.mask.float()[..., None])
    out["input"] = save_image(folder / "input.png", inputs.image)
    out["mask"] = save_image(folder / "mask.png", inputs.mask.float()[..., None])
    for name, cloud in (
        ("points_before", result.points_before),
        ("points_after", result.points_after),
    ):
        out[name] = write_point_cloud_ply(folder / f"{name}.ply", cloud[:, :3], cloud[:, 3:])
    frames = (
        result.frames if result.frames is not None else torch.stack([inputs.image, result.image])
    )
    out["strip"] = save_image(folder / "strip.png", image_grid(frames, columns=len(frames)))
    write_gif(folder / "edit.gif", to_uint8(frames), fps=2.5)  # 400 ms a frame
    out["gif"] = folder / "edit.gif"
    if result.reconstruction is not None:
        out["reconstruction"] = save_image(folder / "reconstruction.png", result.reconstruction)
    if inputs.case is not None:
        out["target"] = save_image(folder / "target.png", inputs.case.target_image)
    return out


def run_handles(
    run: HandlesRun,
    out: Path,
    prior: DiffusionPrior | None = None,
    progress: Progress | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Carry out ``run`` into the folder ``out``; returns metrics, timings, outputs, notes.

    A folder that holds a run is refused unless ``resume``: an edit keeps no checkpoint, so
    resuming redoes the request saved there (with the same result), on another device if
    asked."""
    folder = open_run(out, run, resume)
    t0 = time.perf_counter()
    files = read_files(run) if run.scene is None else None
    if run.method != "warp_paste_2d" and prior is None:
        prior = load_prior(run.prior, run.device, prompt=run.prompt if run.scene is None else None)
    inputs = fit_inputs(run, files, prior.image_size if prior is not None else None)
    transform = inputs.case.transform if inputs.case is not None else run.transform
    intrinsics = inputs.case.intrinsics if inputs.case is not None else None
    if inputs.depth is None:  # estimated once, here, so that it is checked with the rest
        inputs = replace(inputs, depth=estimate_depth(inputs.image, run.depth_model))
    # Every user error (sizes, prompt, a transform that loses the object) before any writing.
    if prior is not None:
        check_prompt(inputs.prompt, prior)
    _, geometry = prepare(
        inputs.image, inputs.mask, inputs.depth, transform, run.config, prior, intrinsics
    )
    load_s = time.perf_counter() - t0
    run = replace(run, transform=transform)
    folder.prepare()
    folder.write_config(run)
    folder.metrics_path.unlink(missing_ok=True)  # a redone run logs its energies afresh
    result = EDITORS[run.method](
        inputs.image,
        inputs.mask,
        inputs.depth,
        transform,
        inputs.prompt,
        prior=prior,
        config=run.config,
        intrinsics=intrinsics,
        interpolate=run.frames,
        progress=progress,
        geometry=geometry,
    )
    for record in result.energies:
        folder.log(record)
    outputs = _save(folder.path, inputs, result)
    metrics: dict[str, Any] = {
        "method": run.method,
        "object_pixels": int(inputs.mask.sum()),
        "edited_object_pixels": int(result.mask.sum()),
        "correspondences": int(result.geometry.source.shape[0]),
    }
    notes: list[str] = []
    if inputs.case is not None:
        metrics.update(score_edit(result, inputs.case))
    else:
        notes.append("no ground truth: scores need --scene")
    timings = {"load_s": load_s, **result.timings}
    command = f"dreamlift handles ({run.method}, {transform.describe()})"
    folder.write_summary(command, run, metrics, timings, outputs, notes=notes)
    return {"metrics": metrics, "timings": timings, "outputs": outputs, "notes": notes}
