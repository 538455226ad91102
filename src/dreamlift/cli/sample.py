"""``dreamlift sample``: text-to-image samples from a prior (:mod:`dreamlift.methods.sample`)."""

from __future__ import annotations

import typer

from dreamlift.cli.common import RunOptions, command, report


@command(out="out/sample")
def sample_command(
    options: RunOptions,
    prompt: str | None = typer.Argument(
        None, help="e.g. 'a red cube, side view' (world grammar for toys); none for toy-eg3d"
    ),
    prior: str = typer.Option(
        "toy-sd", help="Zoo name or folder: a diffusers prior, or a 3D generator (toy-eg3d)."
    ),
    n: int = typer.Option(8, "--n", min=1, max=1024, help="Number of samples."),
    steps: int = typer.Option(50, min=1, max=1000, help="DDIM steps."),
    cfg: float = typer.Option(7.5, "--cfg", min=0.0, help="Classifier-free guidance scale."),
    negative: str = typer.Option("", help="Negative prompt (the unconditional branch)."),
    depth_from_caption: bool = typer.Option(
        False,
        "--depth-from-caption",
        help="Depth priors: condition on the depth of the caption's world asset.",
    ),
    azimuth: float | None = typer.Option(
        None,
        help="Camera azimuth in degrees (0 = front) for a camera prior (toy-sd-camera); "
        "a multi-view prior's first view (its views then evenly spaced; default 0).",
    ),
    elevation: float = typer.Option(
        15.0, help="Camera elevation in degrees, with --azimuth or a multi-view prior."
    ),
    judge: str = typer.Option(
        "toy-clip", help="CLIP folder or zoo name judging world captions; 'none' to skip."
    ),
    batch: int = typer.Option(8, min=1, help="Samples per UNet call."),
    views: int = typer.Option(4, min=1, max=64, help="3D generators: views of each sample."),
    truncation: float = typer.Option(
        0.7, min=0.0, max=1.0, help="3D generators: truncation ψ toward the mean latent."
    ),
) -> None:
    """Draw N samples of PROMPT (or of a 3D generator, several views each); writes grid.png,
    samples/, summary.json."""
    from dreamlift.errors import DreamliftError
    from dreamlift.methods.sample import SampleConfig, sample
    from dreamlift.methods.sample.heads import (
        GeneratorSampleConfig,
        is_generator,
        sample_generator,
    )

    if is_generator(prior):
        if prompt:
            raise DreamliftError(f"{prior} is an unconditional 3D generator; it takes no prompt")
        gen_config = GeneratorSampleConfig(
            generator=prior,
            n=n,
            views=views,
            truncation=truncation,
            seed=options.seed if options.seed is not None else 0,
            device="cpu" if options.device in (None, "auto") else options.device,
        )
        result = sample_generator(gen_config, options.out)
        report(f"{n} samples × {views} views in {options.out}", result)
        return
    if not prompt:
        raise DreamliftError("no prompt given", "dreamlift sample 'a red cube' --out out/s1")

    config = SampleConfig(
        prompt=prompt,
        prior=prior,
        n=n,
        steps=steps,
        guidance_scale=cfg,
        seed=options.seed if options.seed is not None else 0,
        negative=negative,
        depth_from_caption=depth_from_caption,
        azimuth=azimuth,
        elevation=elevation,
        judge=None if judge.lower() == "none" else judge,
        batch=batch,
        device=options.device or "auto",
    )
    result = sample(config, options.out, quiet=options.quiet)
    views = result.get("views", 1)
    report(f"{n} samples{f' × {views} views' if views > 1 else ''} in {options.out}", result)
