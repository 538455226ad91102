"""The ``dreamlift`` command line. User errors print one line and exit with code 2."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import typer
from rich.console import Console

from dreamlift.cli_generate import generate_command
from dreamlift.cli_handles import handles_command
from dreamlift.cli_sample import sample_command
from dreamlift.errors import DreamliftError
from dreamlift.zoo.cli import zoo_app

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Lift 2D diffusion models into 3D. Runs on a CPU out of the box.",
)
world_app = typer.Typer(no_args_is_help=True, help="The embedded procedural world (ground truth).")
app.add_typer(world_app, name="world")
app.add_typer(zoo_app, name="zoo")
app.command("sample")(sample_command)
app.command("generate")(generate_command)
app.command("handles")(handles_command)
console = Console(stderr=True)


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


@world_app.command("render")
def world_render(
    caption: str = typer.Argument(..., help="e.g. 'a red cube with a blue sphere on top'"),
    views: int = typer.Option(8, min=1, help="Number of views, evenly spaced in azimuth."),
    out: Path = typer.Option(Path("out/world"), help="Output folder."),
    resolution: int = typer.Option(128, min=8, max=2048),
    elevation: float = typer.Option(20.0, help="Camera elevation in degrees."),
    random_views: bool = typer.Option(False, "--random", help="Random orbit views instead."),
    seed: int = typer.Option(0),
    supersample: int = typer.Option(2, min=1, max=8),
    ground: bool = typer.Option(False, help="Stand the objects on a ground plane (a scene)."),
) -> None:
    """Render a world asset to images, depth, masks and a nerfstudio transforms.json."""
    import torch

    from dreamlift.cameras import OrbitRange, orbit_cameras, sample_orbit
    from dreamlift.io.media import image_grid, save_image
    from dreamlift.io.run import RunDir
    from dreamlift.io.transforms import PosedImages, write_transforms
    from dreamlift.world import RenderSettings, asset_from_caption, render
    from dreamlift.world import caption as to_caption

    asset = asset_from_caption(caption, ground=ground)
    run = RunDir(out).prepare()
    if random_views:
        cams, _, _ = sample_orbit(
            views,
            resolution,
            OrbitRange(elevation=(-10.0, 60.0)),
            torch.Generator().manual_seed(seed),
        )
    else:
        azimuth = torch.arange(views, dtype=torch.float32) * 360.0 / views
        cams = orbit_cameras(azimuth, torch.full((views,), elevation), 2.7, 40.0, resolution)
    t0 = time.perf_counter()
    r = render(asset, cams, RenderSettings(supersample=supersample))
    render_s = time.perf_counter() - t0
    data = PosedImages(r["rgb"], cams, r["alpha"], r["depth"])
    canonical = to_caption(asset.description)  # type: ignore[arg-type]
    transforms = write_transforms(run.path, data, extra={"caption": canonical, "world": "z-up"})
    grid = save_image(run.path / "grid.png", image_grid(r["rgb"], columns=min(views, 8)))
    run.write_summary(
        f"world render {caption!r}",
        {
            "caption": canonical,
            "views": views,
            "resolution": resolution,
            "seed": seed,
            "elevation": elevation,
            "random": random_views,
            "supersample": supersample,
            "ground": ground,
        },
        {"coverage": float(r["alpha"].mean())},
        {"render_s": render_s},
        {"transforms": transforms, "grid": grid},
    )
    console.print(f"wrote {views} views of '{canonical}' to {run.path} (grid.png, transforms.json)")


@world_app.command("vocab")
def world_vocab() -> None:
    """Print the words captions may use."""
    from dreamlift.world import vocabulary

    for role, words in vocabulary().items():
        typer.echo(f"{role}: {', '.join(words)}")


@app.command()
def reconstruct(
    asset: str | None = typer.Option(
        None, help="World caption to reconstruct (ground truth known)."
    ),
    data: Path | None = typer.Option(None, help="transforms.json (or its folder) of posed images."),
    field: str | None = typer.Option(None, help="gaussians (default) or nerf."),
    out: Path = typer.Option(Path("out/reconstruct"), help="Run folder."),
    preset: str = typer.Option("fast", help="fast or quality."),
    steps: int | None = typer.Option(None, min=1, help="Override the preset's step count."),
    resolution: int | None = typer.Option(None, min=16, max=1024, help="World view size."),
    train_views: int | None = typer.Option(None, min=1),
    seed: int | None = typer.Option(None, help="Random seed (default 0)."),
    device: str | None = typer.Option(None, help="auto, cpu, cuda, ... [auto]"),
    resume: bool = typer.Option(False, help="Continue the run in --out from its checkpoint."),
    quiet: bool = typer.Option(False, help="No progress bar."),
    threads: int | None = typer.Option(None, min=1, help="torch CPU threads."),
    config: Path | None = typer.Option(
        None, help="YAML of settings (any ReconstructConfig field; nerf:/gaussians: nested)."
    ),
) -> None:
    """Fit a NeRF or 3D Gaussians to posed views; writes metrics, checkpoint, turntable, 3D file."""
    from dreamlift.methods.reconstruct import build_config, resume_config
    from dreamlift.methods.reconstruct import reconstruct as run_reconstruct

    _set_threads(threads)
    flags = {
        "field": field,
        "asset": asset,
        "data": str(data) if data else None,
        "steps": steps,
        "resolution": resolution,
        "train_views": train_views,
        "seed": seed,
        "device": device,
    }
    if resume and (out / "config.yaml").is_file():
        cfg = resume_config(out, **flags)
    else:
        cfg = build_config(preset, config, **flags)
    result = run_reconstruct(cfg, out, resume=resume, quiet=quiet)
    m = result["metrics"]
    shown = ", ".join(f"{k} {v:.3f}" for k, v in m.items() if isinstance(v, float))
    console.print(f"[bold green]done[/] {shown}")
    for name, path in result["outputs"].items():
        console.print(f"  {name:14s} {path}")
    for warning in result["warnings"]:
        console.print(f"[yellow]warning:[/] {warning}")


@app.command("list")
def list_registries() -> None:
    """List fields, guidances, methods, presets, shapes and colours."""
    from dreamlift.fields.registry import FIELDS
    from dreamlift.guidance import GUIDANCES
    from dreamlift.methods.generate import PRESETS as GENERATE_PRESETS
    from dreamlift.methods.handles.config import PRESETS as HANDLES_PRESETS
    from dreamlift.methods.handles.registry import EDITORS
    from dreamlift.methods.reconstruct import PRESETS
    from dreamlift.world import vocabulary

    listing = {
        "fields": list(FIELDS),
        "reconstruct presets": list(PRESETS),
        "guidances": list(GUIDANCES),
        "generate presets": list(GENERATE_PRESETS),
        "handles methods": list(EDITORS),
        "handles presets": list(HANDLES_PRESETS),
        **vocabulary(),
    }
    typer.echo(json.dumps(listing, indent=1))


def main() -> None:
    try:
        app(standalone_mode=False)
    except DreamliftError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(130 if type(exc).__name__ == "Interrupted" else 2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        console.print("aborted")
        sys.exit(130)
    except Exception as exc:  # usage errors: click's ClickException, or typer's copy of it
        import click

        usage = isinstance(exc, click.ClickException) or (
            isinstance(exc, typer.exceptions.TyperException) and hasattr(exc, "show")
        )
        if usage:
            exc.show()  # type: ignore[attr-defined]
            sys.exit(getattr(exc, "exit_code", 2))
        raise


if __name__ == "__main__":
    main()
