"""``dreamlift reconstruct``: fit a field to posed views (:mod:`dreamlift.methods.reconstruct`)."""

from __future__ import annotations

from pathlib import Path

import typer

from dreamlift.cli.common import TRAINING, RunOptions, command, report


@command(out="out/reconstruct", options=TRAINING)
def reconstruct_command(
    options: RunOptions,
    asset: str | None = typer.Option(
        None, help="World caption to reconstruct (ground truth known)."
    ),
    data: Path | None = typer.Option(None, help="transforms.json (or its folder) of posed images."),
    field: str | None = typer.Option(None, help="gaussians (default) or nerf."),
    preset: str | None = typer.Option(None, help="fast or quality (default: fast)."),
    steps: int | None = typer.Option(None, min=1, help="Override the preset's step count."),
    resolution: int | None = typer.Option(None, min=16, max=1024, help="World view size."),
    train_views: int | None = typer.Option(None, min=1),
    turntable_size: int | None = typer.Option(
        None, min=16, max=2048, help="Turntable video size in pixels [256]."
    ),
) -> None:
    """Fit a NeRF or 3D Gaussians to posed views; writes metrics, checkpoint, turntable, 3D file."""
    from dreamlift.methods.reconstruct import build_config, reconstruct, resume_config

    flags = {
        "asset": asset,
        "data": str(data) if data is not None else None,
        "field": field,
        "preset": preset,
        "steps": steps,
        "resolution": resolution,
        "train_views": train_views,
        "turntable_size": turntable_size,
    }
    config = options.settings_for(build_config, resume_config, flags)
    result = reconstruct(config, options.out, resume=options.resume, quiet=options.quiet)
    report(str(options.out), result)
