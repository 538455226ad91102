"""``dreamlift face``: one face image → an editable, relightable 3D face
(:mod:`dreamlift.methods.face`)."""

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


@command(out="out/face", options=TRAINING)
def face_command(
    options: RunOptions,
    image: Path | None = typer.Argument(
        None,
        help="Square PNG/JPEG of a face on a white background (omit with --head, or "
        "for text-only generation).",
    ),
    prompt: str | None = typer.Option(
        None, help="Head caption of the edit, e.g. 'a person with glasses'."
    ),
    light: str | None = typer.Option(
        None, help="Relight: front, left, right, top, bottom or back."
    ),
    sh: str | None = typer.Option(None, help="Relight with 9 comma-separated SH coefficients."),
    sh_file: Path | None = typer.Option(None, help="Relight with 9 SH coefficients from a file."),
    head: int | None = typer.Option(None, help="World head to start from (then scored)."),
    yaw: float | None = typer.Option(
        None,
        help="The input's yaw in degrees (a photo's is estimated when yaw and pitch are left out).",
    ),
    pitch: float | None = typer.Option(None, help="The input's pitch in degrees."),
    generator: str | None = typer.Option(None, help="Zoo name or generator folder (toy-eg3d)."),
    prior: str | None = typer.Option(
        None, help="Head-caption prior: zoo name or diffusers folder (toy-sd-heads)."
    ),
    preset: str | None = typer.Option(None, help="fast (default, ~3 min) or paper."),
    lpips: str | None = typer.Option(
        None, help="Folder with LPIPS-VGG weights for the perceptual term (default: toy-clip's)."
    ),
) -> None:
    """Lift one face image into the generator and edit (--prompt) or relight (--light) it."""
    from dreamlift.loop import progress_bar
    from dreamlift.methods.face import FaceRequest, parse_light, preset_config, run_face

    def given(**values: Any) -> dict[str, Any]:
        return {k: v for k, v in values.items() if v is not None}

    sh_values = parse_light(light, sh, sh_file)
    config = given(preset=preset, generator=generator, prior=prior, lpips=lpips)
    flags = {
        "image": str(image) if image is not None else None,
        "head": head,
        "yaw": yaw,
        "pitch": pitch,
        "prompt": prompt,
        "light": list(sh_values) if sh_values is not None else None,
        "light_name": light,
        "config": config or None,
    }
    request = request_from_options(FaceRequest, preset_config, options, flags)
    with progress_bar(console, disable=options.quiet) as bar:
        progress = stage_progress(bar)
        summary = run_face(request, options.out, progress, resume=options.resume)
    metrics = summary["metrics"]
    shown: dict[str, Any] = {"wall_s": float(summary["timings"]["wall_s"])}
    if isinstance(metrics.get("reconstruction_psnr"), float):
        shown["reconstruction_psnr"] = metrics["reconstruction_psnr"]
    for key, value in (metrics.get("scores") or {}).items():
        if key in ("psnr", "identity_kept", "edit_views", "light_error"):
            shown[key] = value
    outputs = {k: str(options.out / v) for k, v in summary["outputs"].items()}
    report(
        str(options.out),
        {"metrics": shown, "outputs": outputs, "warnings": summary.get("warnings", [])},
    )
