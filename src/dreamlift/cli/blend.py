"""``dreamlift blend``: a region of a reference head blended into an original head in 3D
(:mod:`dreamlift.methods.blend`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from dreamlift.cli.common import (
    TRAINING,
    RunOptions,
    command,
    console,
    report,
    request_from_options,
    stage_progress,
)


@command(out="out/blend", options=TRAINING)
def blend_command(
    options: RunOptions,
    original: Path | None = typer.Argument(
        None, help="Image whose head is kept (square, head on white); omit with --head."
    ),
    reference: Path | None = typer.Argument(None, help="Image the region is taken from."),
    part: str | None = typer.Option(
        None, help="Region by name: hair, nose, eyes, lips, ears, glasses, hat, beard, face."
    ),
    mask: Path | None = typer.Option(None, help="Region as a mask image of the original."),
    head: int | None = typer.Option(None, help="World head to blend into (then scored)."),
    yaw: float | None = typer.Option(None, help="The original's yaw in degrees."),
    pitch: float | None = typer.Option(None, help="The original's pitch in degrees."),
    reference_head: int | None = typer.Option(None, help="World head the region comes from."),
    reference_yaw: float | None = typer.Option(None, help="The reference's yaw in degrees."),
    reference_pitch: float | None = typer.Option(None, help="The reference's pitch in degrees."),
    reference_set: str | None = typer.Option(
        None, help="Attribute overrides of the reference head, e.g. scale=1.1,hair=long."
    ),
    poisson: bool = typer.Option(
        False, "--poisson", help="The paper's 'ours + Poisson' variant (contour band, clone)."
    ),
    generator: str | None = typer.Option(None, help="Zoo name or generator folder (toy-eg3d)."),
    preset: str | None = typer.Option(None, help="fast (default, ~3 min) or paper."),
    steps: int | None = typer.Option(None, min=0, help="Blending steps (fast 100, paper 200)."),
    no_icp: bool = typer.Option(False, "--no-icp", help="Global alignment only."),
    lpips: str | None = typer.Option(
        None, help="Folder with LPIPS-VGG weights for the perceptual terms (default: toy-clip's)."
    ),
) -> None:
    """Blend a region (--part or --mask) of REFERENCE into ORIGINAL through the generator."""
    from dreamlift.loop import progress_bar
    from dreamlift.methods.blend import BlendRequest, preset_config, run_blend

    def given(**values: Any) -> dict[str, Any]:
        return {k: v for k, v in values.items() if v is not None}

    config = given(
        preset=preset,
        generator=generator,
        steps=steps,
        lpips=lpips,
        variant="poisson" if poisson else None,
        align={"enabled": False} if no_icp else None,
    )
    flags = {
        "original": str(original) if original is not None else None,
        "reference": str(reference) if reference is not None else None,
        "part": part,
        "mask": str(mask) if mask is not None else None,
        "head": head,
        "yaw": yaw,
        "pitch": pitch,
        "reference_head": reference_head,
        "reference_yaw": reference_yaw,
        "reference_pitch": reference_pitch,
        "reference_set": reference_set,
        "config": config or None,
    }
    request = request_from_options(BlendRequest, preset_config, options, flags)
    with progress_bar(console, disable=options.quiet) as bar:
        progress = stage_progress(bar)
        summary = run_blend(request, options.out, progress, resume=options.resume)
    metrics = summary["metrics"]
    shown: dict[str, float] = {"wall_s": float(summary["timings"]["wall_s"])}
    for key in ("psnr_view", "psnr_novel", "true_icp_scale"):
        if isinstance(metrics.get(key), float):
            shown[key] = metrics[key]
    shown["icp_scale"] = float(metrics["icp"]["scale"])
    outputs = {k: str(options.out / v) for k, v in summary["outputs"].items()}
    report(
        str(options.out),
        {"metrics": shown, "outputs": outputs, "warnings": summary.get("warnings", [])},
    )
