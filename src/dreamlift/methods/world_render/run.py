"""World renders as posed images: what ``dreamlift world render`` writes.

A world asset seen by evenly spaced orbit cameras on the world's orbit (or random ones), as
a nerfstudio ``transforms.json`` folder with RGBA images, depth and a preview grid, plus the
run contract's ``summary.json`` — the input of ``dreamlift reconstruct --data``.

A head (``HeadRequest``: a seed, attribute changes, a light, or a head caption such as 'a
person with red hair and glasses') is seen by EG3D's cameras instead, and its folder adds
per-pixel part labels (``parts/``, ``parts.png``), each frame's EG3D 25-value camera in
``transforms.json`` and an EG3D ``dataset.json``, and the SH light it was rendered under.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import imageio.v2 as imageio
import numpy as np
import torch

from dreamlift.errors import CaptionError, ConfigError
from dreamlift.io.media import image_grid, save_image
from dreamlift.io.run import RunDir
from dreamlift.io.transforms import PosedImages, write_transforms
from dreamlift.methods.world_render.config import (
    HeadRequest,
    WorldRender,
)
from dreamlift.world import (
    HEAD_ORBIT,
    PART_LABELS,
    HeadParams,
    RenderSettings,
    asset_from_caption,
    eg3d_camera_vector,
    head_caption,
    head_params,
    is_head_caption,
    parse_head,
    render,
    render_head,
    with_overrides,
)
from dreamlift.world import caption as to_caption
from dreamlift.world.captions import head_overrides
from dreamlift.world.heads import check_head_seed
from dreamlift.world.lighting import light_from_text


def render_world(request: WorldRender, out: Path) -> dict[str, Any]:
    """Render ``request`` into the folder ``out``; returns the canonical caption and outputs."""
    if request.head is not None or is_head_caption(request.caption):
        return _render_head_folder(request, out)
    if not request.caption.strip():
        raise CaptionError("nothing to render", "give a caption or --head N")
    asset = asset_from_caption(request.caption, ground=request.ground)
    run = RunDir(out).prepare()
    cams = request.views.cameras(request.resolution)
    t0 = time.perf_counter()
    r = render(asset, cams, RenderSettings(supersample=request.supersample))
    render_s = time.perf_counter() - t0
    data = PosedImages(r["rgb"], cams, r["alpha"], r["depth"])
    canonical = to_caption(asset.description)  # type: ignore[arg-type]
    transforms = write_transforms(run.path, data, extra={"caption": canonical, "world": "z-up"})
    columns = min(request.views.count, 8)
    grid = save_image(run.path / "grid.png", image_grid(r["rgb"], columns=columns))
    outputs = {"transforms": transforms, "grid": grid}
    settings = {"caption": canonical, **_view_settings(request), "ground": request.ground}
    metrics = {"coverage": float(r["alpha"].mean())}
    run.write_summary(
        f"world render {request.caption!r}", settings, metrics, {"render_s": render_s}, outputs
    )
    return {"caption": canonical, "metrics": metrics, "outputs": outputs}


def requested_head(request: WorldRender) -> HeadParams:
    """The head a request asks for: the seed's, then the caption's attributes, then the
    explicit changes (each validated, one-line errors)."""
    head = request.head or HeadRequest()
    if request.caption.strip() and not is_head_caption(request.caption):
        raise CaptionError(
            f"{request.caption!r} is not a head caption",
            "with --head the caption must read 'a person with ...', or leave it out",
        )
    params = head_params(check_head_seed(head.seed))
    if request.caption.strip():
        params = with_overrides(params, head_overrides(parse_head(request.caption), params.hair))
    return with_overrides(params, dict(head.overrides))


def _render_head_folder(request: WorldRender, out: Path) -> dict[str, Any]:
    if request.ground:
        raise ConfigError("heads do not stand on the ground", "leave out --ground")
    head = request.head or HeadRequest()
    params = requested_head(request)
    lighting = light_from_text(head.light)
    run = RunDir(out).prepare()
    cams = request.views.cameras(request.resolution, HEAD_ORBIT)
    t0 = time.perf_counter()
    r = render_head(params, cams, lighting, supersample=request.supersample)
    render_s = time.perf_counter() - t0
    view = parse_head(request.caption).view if request.caption.strip() else None
    canonical = head_caption(params, view)
    extra = {
        "caption": canonical,
        "world": "z-up",
        "head": head.seed,
        "head_params": asdict(params),
        "light": head.light,
        "sh": list(lighting.sh or ()),
        "part_labels": list(PART_LABELS),
        "eg3d": "cam2world (OpenCV, EG3D world: y up, face +z, pivot at 0) + K / image size",
    }
    data = PosedImages(r["rgb"], cams, r["alpha"], r["depth"])
    transforms = write_transforms(run.path, data, extra=extra)
    vectors = eg3d_camera_vector(cams)
    (run.path / "parts").mkdir(exist_ok=True)
    meta = json.loads(transforms.read_text())
    for i, frame in enumerate(meta["frames"]):
        frame["eg3d_camera"] = vectors[i].tolist()
        frame["part_label_path"] = f"parts/{i:03d}.png"
        labels = r["labels"][i].to(torch.uint8).numpy()
        imageio.imwrite(run.path / frame["part_label_path"], labels)
    transforms.write_text(json.dumps(meta, indent=1))
    eg3d = run.path / "dataset.json"
    eg3d.write_text(
        json.dumps(
            {"labels": [[f["file_path"], f["eg3d_camera"]] for f in meta["frames"]]}, indent=1
        )
    )
    columns = min(request.views.count, 8)
    grid = save_image(run.path / "grid.png", image_grid(r["rgb"], columns=columns))
    palette = torch.from_numpy(_LABEL_PALETTE)
    parts = save_image(run.path / "parts.png", image_grid(palette[r["labels"]], columns=columns))
    outputs = {"transforms": transforms, "grid": grid, "parts": parts, "eg3d_dataset": eg3d}
    settings = {
        "caption": canonical,
        "head": head.seed,
        "set": dict(head.overrides),
        "light": head.light,
        **_view_settings(request),
    }
    coverage = {
        f"coverage_{name}": float((r["labels"] == i).float().mean())
        for i, name in enumerate(PART_LABELS)
        if i
    }
    metrics = {"coverage": float(r["alpha"].mean()), **coverage}
    run.write_summary(
        f"world render --head {head.seed}", settings, metrics, {"render_s": render_s}, outputs
    )
    return {"caption": canonical, "metrics": metrics, "outputs": outputs, "params": params}


_LABEL_PALETTE = np.array(
    [
        [1.0, 1.0, 1.0],  # background
        [0.95, 0.75, 0.6],  # skin
        [0.45, 0.25, 0.1],  # hair
        [0.9, 0.3, 0.3],  # nose
        [0.2, 0.5, 0.95],  # eyes
        [0.85, 0.1, 0.5],  # lips
        [0.95, 0.6, 0.1],  # ears
        [0.1, 0.1, 0.1],  # glasses
        [0.3, 0.75, 0.3],  # hat
        [0.55, 0.35, 0.75],  # beard
    ],
    dtype=np.float32,
)
"""Preview colours of the part labels (``parts.png``)."""


def _view_settings(request: WorldRender) -> dict[str, Any]:
    """The cameras and render settings a summary records, for objects and heads alike."""
    views = request.views
    return {
        "views": views.count,
        "resolution": request.resolution,
        "seed": views.seed,
        "elevation": views.elevation,
        "random": views.random,
        "supersample": request.supersample,
    }
