"""``dreamlift edit``: text-driven editing of a run's field with Perturb-and-Revise
(:mod:`dreamlift.methods.edit`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from dreamlift.cli.common import TRAINING, RunOptions, command, report


@command(out="out/edit", options=TRAINING)
def edit_command(
    options: RunOptions,
    source: str | None = typer.Argument(
        None, help="Folder of the run to edit (generate, reconstruct or edit); omit with --asset."
    ),
    prompt: str | None = typer.Argument(None, help="The edit prompt, e.g. 'a blue cube'."),
    asset: str | None = typer.Option(
        None, help="Edit a world caption instead, reconstructed from its views first."
    ),
    eta: float | None = typer.Option(
        None, help="Fixed perturbation size in [0, 1] (default: chosen by the probe)."
    ),
    no_ipg: bool = typer.Option(False, "--no-ipg", help="Skip the identity-preserving stage."),
    field: str | None = typer.Option(
        None, help="nerf or gaussians: --asset's field; a source run must hold this kind."
    ),
    prior: str | None = typer.Option(None, help="Zoo name or diffusers folder (toy-sd-camera)."),
    lpips: str | None = typer.Option(
        None, help="Folder with LPIPS-VGG weights for the IPG term (default: toy-clip's distance)."
    ),
    preset: str | None = typer.Option(None, help="fast (CPU minutes) or paper (PnR's code)."),
    cfg: float | None = typer.Option(None, "--cfg", min=0.0, help="CFG scale."),
    turntable_size: int | None = typer.Option(
        None, min=16, max=2048, help="Turntable video size in pixels [256]."
    ),
) -> None:
    """Edit SOURCE's field toward PROMPT: probe, perturb, revise, identity-preserving
    refinement."""
    from dreamlift.errors import DreamliftError
    from dreamlift.methods.edit import build_config, edit, resume_config

    if asset is not None and prompt is None:  # `edit --asset CAPTION PROMPT`: one positional
        source, prompt = None, source
    if prompt is None and not options.resume:
        raise DreamliftError(
            "give SOURCE and PROMPT", 'dreamlift edit out/g1 "a blue cube" --out out/e1'
        )
    if source is not None and not Path(source).is_dir():
        raise DreamliftError(
            f"source run {source} does not exist",
            "give the folder of a generate or reconstruct run",
        )
    step: dict[str, Any] = {
        k: v
        for k, v in {
            "prior": prior,
            "guidance_scale": cfg,
            "turntable_size": turntable_size,
        }.items()
        if v is not None
    }
    flags: dict[str, Any] = {
        "prompt": prompt,
        "source": source,
        "asset": asset,
        "field": field,
        "lpips": lpips,
        "eta": eta,
        "preset": preset,
        "ipg_steps": 0 if no_ipg else None,
        "step": step or None,
    }
    config = options.settings_for(build_config, resume_config, flags)
    result = edit(config, options.out, resume=options.resume, quiet=options.quiet)
    metrics = dict(result["metrics"])
    report(str(options.out), {**result, "metrics": metrics})
