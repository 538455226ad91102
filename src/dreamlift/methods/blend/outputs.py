"""What a blend run writes besides its summary: the blended image and latent, the aligned
reference, the mask, the image strip of every stage, a turntable and a mesh."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor

from dreamlift.io.media import image_grid, save_image, save_turntable
from dreamlift.methods.blend.align import Warp
from dreamlift.methods.blend.inputs import BlendImage, BlendRequest
from dreamlift.methods.blend.phases import Alignment, Blend, InvertedPair
from dreamlift.methods.invert.run import turntable_frames, write_generator_mesh

INVERSION_DIR = "inversion"


def _mesh_box(box: float, warp: Warp | None) -> float:
    """Half-size of the cube that holds the (warped) head."""
    if warp is None:
        return box
    return box * warp.scale + max(abs(v) for v in warp.translation)


def _hwc(image: Tensor) -> Tensor:
    return image[0].permute(1, 2, 0).cpu()


def write_outputs(
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
    warp = result.warp
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
    frames = turntable_frames(gen, result.ws, cfg.turntable_frames, cfg.resolution, result.rays)
    outputs.update(save_turntable(out, frames))
    write_generator_mesh(
        gen,
        result.ws,
        out / "mesh.glb",
        cfg.mesh_resolution,
        cfg.inversion.mesh_threshold,
        box=_mesh_box(gen.cfg.box, warp),
        to_frame=warp.to_reference if warp else None,
    )
    outputs["mesh"] = out / "mesh.glb"
    return outputs
