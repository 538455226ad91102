"""``dreamlift sample``: text-to-image samples from a prior (registered by :mod:`dreamlift.cli`).

Registered with ``app.command("sample")(sample_command)``; user errors are
:class:`~dreamlift.errors.DreamliftError` and print as one line there (exit code 2).
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

console = Console(stderr=True)


def sample_command(
    prompt: str = typer.Argument(..., help="e.g. 'a red cube, side view' (world grammar for toys)"),
    prior: str = typer.Option("toy-sd", help="Zoo name or diffusers folder of the prior."),
    n: int = typer.Option(8, "--n", min=1, max=1024, help="Number of samples."),
    steps: int = typer.Option(50, min=1, max=1000, help="DDIM steps."),
    cfg: float = typer.Option(7.5, "--cfg", min=0.0, help="Classifier-free guidance scale."),
    seed: int = typer.Option(0, help="Seed of the initial noise."),
    out: Path = typer.Option(Path("out/sample"), help="Run folder."),
    negative: str = typer.Option("", help="Negative prompt (the unconditional branch)."),
    depth_from_caption: bool = typer.Option(
        False,
        "--depth-from-caption",
        help="Depth priors: condition on the depth of the caption's world asset.",
    ),
    azimuth: float | None = typer.Option(
        None,
        help="Camera azimuth in degrees (0 = front) for a camera prior (toy-sd-camera).",
    ),
    elevation: float = typer.Option(15.0, help="Camera elevation in degrees, with --azimuth."),
    judge: str = typer.Option(
        "toy-clip", help="CLIP folder or zoo name judging world captions; 'none' to skip."
    ),
    batch: int = typer.Option(8, min=1, help="Samples per UNet call."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, ..."),
    threads: int | None = typer.Option(None, min=1, help="torch CPU threads."),
    quiet: bool = typer.Option(False, help="No progress bar."),
) -> None:
    """Draw N samples of PROMPT; writes grid.png, samples/, summary.json."""
    from dreamlift.methods.sample import SampleConfig, sample

    if threads:
        import torch

        torch.set_num_threads(threads)
    config = SampleConfig(
        prompt=prompt,
        prior=prior,
        n=n,
        steps=steps,
        guidance_scale=cfg,
        seed=seed,
        negative=negative,
        depth_from_caption=depth_from_caption,
        azimuth=azimuth,
        elevation=elevation,
        judge=None if judge.lower() == "none" else judge,
        batch=batch,
        device=device,
    )
    result = sample(config, out, quiet=quiet)
    shown = ", ".join(f"{k} {v:.3f}" for k, v in result["metrics"].items())
    console.print(f"[bold green]done[/] {n} samples in {out}" + (f": {shown}" if shown else ""))
    for note in result["notes"]:
        console.print(f"  note: {note}", highlight=False)
