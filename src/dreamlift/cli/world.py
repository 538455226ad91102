"""``dreamlift world``: the embedded procedural world (ground truth)."""

from __future__ import annotations

import typer

from dreamlift.cli.common import RunOptions, command, console

world_app = typer.Typer(no_args_is_help=True, help="The embedded procedural world (ground truth).")


@world_app.command("render")
@command(out="out/world", options=("out", "seed"))
def world_render(
    options: RunOptions,
    caption: str = typer.Argument(..., help="e.g. 'a red cube with a blue sphere on top'"),
    views: int = typer.Option(8, min=1, help="Number of views, evenly spaced in azimuth."),
    resolution: int = typer.Option(128, min=8, max=2048),
    elevation: float = typer.Option(20.0, help="Camera elevation in degrees."),
    random_views: bool = typer.Option(False, "--random", help="Random orbit views instead."),
    supersample: int = typer.Option(2, min=1, max=8),
    ground: bool = typer.Option(False, help="Stand the objects on a ground plane (a scene)."),
) -> None:
    """Render a world asset to images, depth, masks and a nerfstudio transforms.json."""
    from dreamlift.methods.world_render import WorldRender, WorldViews, render_world

    seed = options.seed if options.seed is not None else 0
    cameras = WorldViews(count=views, elevation=elevation, random=random_views, seed=seed)
    request = WorldRender(caption, cameras, resolution, supersample=supersample, ground=ground)
    result = render_world(request, options.out)
    console.print(
        f"wrote {views} views of '{result['caption']}' to {options.out} (grid.png, "
        "transforms.json)",
        highlight=False,
    )


@world_app.command("vocab")
def world_vocab() -> None:
    """Print the words captions may use."""
    from dreamlift.world import vocabulary

    for role, words in vocabulary().items():
        typer.echo(f"{role}: {', '.join(words)}")
