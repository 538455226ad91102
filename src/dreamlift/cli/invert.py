"""``dreamlift invert``: an image (or a world head) → a generator latent and a tuned generator
(:mod:`dreamlift.methods.invert`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from dreamlift.cli.common import RunOptions, command, console, report, stage_progress


def build_invert_config(**values: Any) -> Any:
    """The preset's config with ``values`` (from --config, --set and the flags) on top."""
    from dataclasses import asdict

    from dreamlift.io.run import to_plain
    from dreamlift.methods.common.config import config_from_values, merge
    from dreamlift.methods.invert import InvertConfig, preset_config

    base = to_plain(asdict(preset_config(str(values.get("preset") or "fast"))))
    return config_from_values(InvertConfig, merge(base, values))


@command(
    out="out/invert", options=("out", "seed", "device", "threads", "quiet", "config", "settings")
)
def invert_command(
    options: RunOptions,
    image: Path | None = typer.Argument(
        None, help="Square PNG/JPEG of a head on a white background (omit with --head)."
    ),
    head: int | None = typer.Option(
        None, help="Invert world head N instead (200-249 are held out) and score it."
    ),
    yaw: float | None = typer.Option(
        None,
        help="Camera yaw in degrees (0 = facing the head; a world head's default 0; a photo's "
        "is estimated by toy-pose when --yaw and --pitch are both left out).",
    ),
    pitch: float | None = typer.Option(
        None, help="Camera pitch in degrees above eye level (a world head's default 10)."
    ),
    generator: str | None = typer.Option(
        None, help="Zoo name or generator folder (default: toy-eg3d)."
    ),
    preset: str | None = typer.Option(None, help="fast (default, ~1 min) or paper."),
    anchor: str | None = typer.Option(
        None, help="PTI anchor: views (default), locality (BlendNeRF's) or none (plain PTI)."
    ),
    lpips: str | None = typer.Option(
        None, help="Folder with LPIPS-VGG weights for the perceptual term (default: toy-clip's)."
    ),
) -> None:
    """Invert one image into the generator: W, then W+, then pivotal tuning (PTI)."""
    from dreamlift.loop import progress_bar
    from dreamlift.methods.invert import InvertRequest, Pose, invert

    flags = {"generator": generator, "preset": preset, "anchor": anchor, "lpips": lpips}
    config = options.settings_for(build_invert_config, build_invert_config, flags)
    pose = None
    if yaw is not None or pitch is not None or head is not None:
        pose = Pose(
            yaw if yaw is not None else 0.0,
            pitch if pitch is not None else (10.0 if head is not None else 0.0),
        )
    request = InvertRequest(image=image, head=head, pose=pose)
    with progress_bar(console, disable=options.quiet) as bar:
        progress = stage_progress(bar)
        summary = invert(request, options.out, config, progress)
    shown: dict[str, float] = {"wall_s": float(summary["timings"]["wall_s"])}
    for stage, scores in (summary["metrics"].get("stages") or {}).items():
        shown[f"{stage}_novel_psnr"] = scores["novel_psnr"]
        shown[f"{stage}_novel_psnr_head"] = scores["novel_psnr_head"]
    if summary["metrics"].get("mesh_silhouette_iou") is not None:
        shown["mesh_iou"] = summary["metrics"]["mesh_silhouette_iou"]
    outputs = {k: str(options.out / v) for k, v in summary["outputs"].items()}
    report(str(options.out), {"metrics": shown, "outputs": outputs})
