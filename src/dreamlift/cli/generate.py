"""``dreamlift generate``: text-to-3D (:mod:`dreamlift.methods.generate`).

With ``--prompts FILE`` each non-blank line is one run in ``OUT/<nn>-<slug>``; a line that
fails is reported with its number and the batch goes on; ``OUT/batch.json`` holds the table.
``--batch B`` trains B lines at a time with one prior call a step; ``--resume`` keeps the
finished runs and continues the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from dreamlift.cli.common import TRAINING, RunOptions, command, notice, report
from dreamlift.errors import DreamliftError


@command(out="out/generate", options=TRAINING)
def generate_command(
    options: RunOptions,
    prompt: str | None = typer.Argument(None, help="e.g. 'a red cube with a blue sphere on top'"),
    prompts: Path | None = typer.Option(None, help="A file of prompts, one a line (batch)."),
    prior: str | None = typer.Option(
        None, help="Zoo name or diffusers folder (default: toy-sd-camera)."
    ),
    field: str | None = typer.Option(None, help="gaussians or nerf (default: gaussians)."),
    guidance: str | None = typer.Option(None, help="ge3d, sds or ism (default: ge3d)."),
    preset: str | None = typer.Option(
        None,
        help="fast (CPU minutes; Gaussians stop once converged), quick (Gaussians on a fixed "
        "300-step schedule, docs/benchmarks.md) or paper (GE3D's settings) (default: fast).",
    ),
    steps: int | None = typer.Option(None, min=1, help="Optimisation steps."),
    resolution: int | None = typer.Option(
        None, min=8, max=2048, help="Render size [prior's size]."
    ),
    cfg: float | None = typer.Option(None, "--cfg", min=0.0, help="CFG scale."),
    negative: str | None = typer.Option(None, help="Negative prompt (uncond branch)."),
    init: str | None = typer.Option(None, help="Gaussians: sphere, random or PATH.ply."),
    export: str | None = typer.Option(None, help="auto, or mesh (Gaussians: also mesh.glb)."),
    no_score: bool = typer.Option(False, "--no-score", help="Skip ground-truth scoring."),
    time_budget: float | None = typer.Option(
        None, "--time-budget", min=0.0, help="Stop after this many seconds of training."
    ),
    turntable_size: int | None = typer.Option(
        None, min=16, max=2048, help="Turntable video size in pixels [256]."
    ),
    all_steps: bool = typer.Option(
        False,
        "--all-steps",
        help="Run every step: no stop once the silhouettes stop changing (fast preset).",
    ),
    batch: int = typer.Option(
        1,
        "--batch",
        min=1,
        max=64,
        help="--prompts: train this many prompts together, one prior call a step for all.",
    ),
    ray: bool = typer.Option(
        False, "--ray", help="--prompts as Ray tasks, one a prompt (pip install '.[ray]')."
    ),
    ray_address: str | None = typer.Option(
        None, help="An existing Ray cluster, e.g. ray://head:10001 (default: a local Ray)."
    ),
    ray_cpus: int = typer.Option(1, min=1, help="CPUs (and torch threads) of each Ray task."),
    ray_gpus: float = typer.Option(0.0, min=0.0, help="GPUs of each Ray task."),
    viewer: bool = typer.Option(
        False, "--viewer", help="Watch it train in the browser (viser; pip install '.[viewer]')."
    ),
    viewer_port: int = typer.Option(8080, min=1, max=65535, help="The --viewer's port."),
    profile: bool = typer.Option(
        False, help="Synchronise the GPU at each timing boundary (exact iteration split)."
    ),
) -> None:
    """Generate a 3D object from PROMPT (or every line of --prompts)."""
    from dreamlift.methods.generate import build_config, generate, resume_config

    flags: dict[str, Any] = {
        "prompt": prompt,
        "prior": prior,
        "field": field,
        "guidance": guidance,
        "preset": preset,
        "steps": steps,
        "resolution": resolution,
        "guidance_scale": cfg,
        "negative_prompt": negative,
        "init": init,
        "export": export,
        "score": False if no_score else None,
        "time_budget_s": time_budget,
        "profile": True if profile else None,
        "turntable_size": turntable_size,
        "convergence": {"enabled": False} if all_steps else None,
    }
    if prompts is not None:
        if prompt is not None:
            raise DreamliftError("give a PROMPT or --prompts FILE, not both")
        if viewer:
            raise DreamliftError("--viewer watches one run; it takes no --prompts")
        if ray and (batch > 1 or options.resume):
            raise DreamliftError(
                "--ray runs one task a prompt (a failed task resumes by itself); it takes no "
                "--batch or --resume"
            )
        ray_task = RayTasks(ray_address, ray_cpus, ray_gpus) if ray else None
        run_batch(prompts, options, flags, ray_task, batch)
        return
    if ray or ray_address is not None:
        raise DreamliftError("--ray runs the prompts of --prompts FILE", "give --prompts")
    if batch > 1:
        raise DreamliftError("--batch trains the prompts of --prompts FILE", "give --prompts")
    settings_given = options.config is not None or options.settings  # may hold a prompt
    if prompt is None and not options.resume and not settings_given:
        raise DreamliftError("no prompt given", "dreamlift generate 'a red cube' --out out/g1")
    config = options.settings_for(build_config, resume_config, flags)
    if not viewer:
        result = generate(config, options.out, resume=options.resume, quiet=options.quiet)
        report(str(options.out), result)
        return
    from dreamlift.viewer import live_viewer

    heading = f"`generate {config.prompt!r}`"

    def announce(url: str) -> None:
        notice("viewer:", f"{url} (live while it trains)")

    with live_viewer(config.prompt, viewer_port, heading, announce) as watch:
        result = generate(
            config, options.out, resume=options.resume, quiet=options.quiet, watch=watch
        )
    report(str(options.out), result)


@dataclass(frozen=True)
class RayTasks:
    address: str | None
    cpus: int
    gpus: float


def run_batch(
    path: Path,
    options: RunOptions,
    flags: dict[str, Any],
    ray: RayTasks | None = None,
    batch: int = 1,
) -> None:
    """One run per prompt of ``path``, a table of them on stdout: in this process (the prior
    loaded once; ``batch`` prompts trained together) or as Ray tasks."""
    from dreamlift.methods.generate import build_config
    from dreamlift.methods.generate.batch import generate_batch

    overrides = options.overrides(flags)

    def configure(text: str) -> Any:
        return build_config(**{**overrides, "prompt": text})

    def failed(number: int, exc: DreamliftError) -> None:
        notice(f"line {number}:", str(exc))

    if ray is None:
        rows = generate_batch(
            path, options.out, configure, options.quiet, failed, batch, options.resume
        )
    else:
        from dreamlift.methods.generate.ray_batch import generate_on_ray

        def done(row: dict[str, Any]) -> None:
            if row["status"] == "ok" and not options.quiet:
                notice(f"line {row['line']}:", f"done ({row['out']})")

        rows = generate_on_ray(
            path, options.out, configure, failed, ray.address, ray.cpus, ray.gpus, done
        )
    table = Table("line", "prompt", "status", "IoU", "colour err", "shape", "out")
    for r in rows:
        table.add_row(
            str(r["line"]),
            r["prompt"],
            r["status"],
            _number(r.get("silhouette_iou")),
            _number(r.get("colour_error")),
            str(r.get("shape_winner", "-")),
            r["out"] if r["status"] == "ok" else r.get("error", ""),
        )
    Console().print(table)
    if not any(r["status"] == "ok" for r in rows):
        raise DreamliftError(f"no prompt of {path} could be generated", "see the lines above")


def _number(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "-"
