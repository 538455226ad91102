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
from pathlib import Path

from dreamlift.devices import resolve_device
from dreamlift.methods.blend.align import Warp
from dreamlift.methods.blend.inputs import BlendRequest, load_inputs
from dreamlift.methods.blend.masks import read_mask
from dreamlift.methods.blend.optimize import Progress
from dreamlift.methods.blend.outputs import INVERSION_DIR, write_outputs
from dreamlift.methods.blend.phases import (
    align_reference,
    blend_pair,
    inversion_fit,
    invert_pair,
    load_pair,
    save_pair,
)
from dreamlift.methods.common.folders import open_run
from dreamlift.methods.invert.run import load_generator
from dreamlift.metrics.perceptual import load_feature_distance
from dreamlift.utils.numerics import flush_denormals

MIN_INVERSION_PSNR = 18.0
"""Below this a latent does not render its own image: the input is likely not a head the
generator can render (world heads invert to 24-28 dB at the fast preset)."""
ALIGNMENT_NAME = "alignment.json"


@flush_denormals()
def run_blend(
    request: BlendRequest,
    out: Path,
    progress: Progress | None = None,
    resume: bool = False,
) -> dict:
    """Run a blend into ``out``; returns the summary (also written to summary.json)."""
    from dreamlift.methods.blend.scores import score_world_blend
    from dreamlift.zoo.recipes.head_nets import load_head_net

    cfg = request.config
    out = Path(out)
    run = open_run(out, request, resume)
    t_start = time.perf_counter()
    original, reference = load_inputs(request)  # bad input fails before any model loads
    given_mask = read_mask(Path(request.mask), cfg.resolution) if request.mask else None
    device = str(resolve_device(cfg.device))
    gen = load_generator(cfg.generator, device)
    parser = load_head_net(cfg.parts_net, "parts")  # parts, and the ICP's head
    distance = load_feature_distance(lpips=cfg.lpips)
    run.prepare()
    run.write_config(request)
    timings: dict[str, float] = {"load_s": time.perf_counter() - t_start}

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
    outputs = write_outputs(out, request, pair, original, reference, alignment, result)
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
        metrics.update(score_world_blend(request, pair, original, alignment, result, distance))
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
