"""``dreamlift world``: the embedded procedural world (ground truth)."""

from __future__ import annotations

import typer

from dreamlift.cli.common import RunOptions, command, console

world_app = typer.Typer(no_args_is_help=True, help="The embedded procedural world (ground truth).")


@world_app.command("render")
@command(out="out/world", options=("out", "seed"))
def world_render(
    options: RunOptions,
    caption: str = typer.Argument(
        "", help="e.g. 'a red cube with a blue sphere on top' or 'a person with red hair'"
    ),
    views: int = typer.Option(8, min=1, help="Number of views, evenly spaced in azimuth."),
    resolution: int = typer.Option(128, min=8, max=2048),
    elevation: float | None = typer.Option(
        None, help="Camera elevation in degrees (default 20, heads 10)."
    ),
    random_views: bool = typer.Option(False, "--random", help="Random orbit views instead."),
    supersample: int = typer.Option(2, min=1, max=8),
    ground: bool = typer.Option(False, help="Stand the objects on a ground plane (a scene)."),
    head: int | None = typer.Option(
        None, help="Render head N of the world (0-249; 200-249 are held out of training)."
    ),
    attributes: str | None = typer.Option(
        None, "--set", help="Head attributes, e.g. hair=long,hair_colour=red,glasses=yes."
    ),
    light: str | None = typer.Option(
        None, help="Head light: front, left, right, top, bottom, back, or 9/27 SH numbers."
    ),
) -> None:
    """Render a world asset or head to images, depth, masks and a nerfstudio transforms.json."""
    from dreamlift.errors import ConfigError
    from dreamlift.methods.world_render import HeadRequest, WorldRender, WorldViews, render_world
    from dreamlift.world import is_head_caption
    from dreamlift.world.heads import parse_assignments

    is_head = head is not None or is_head_caption(caption)
    if not is_head and (attributes is not None or light is not None):
        raise ConfigError("--set and --light apply to heads", "add --head N")
    seed = options.seed if options.seed is not None else 0
    elevation = elevation if elevation is not None else (10.0 if is_head else 20.0)
    cameras = WorldViews(count=views, elevation=elevation, random=random_views, seed=seed)
    head_request = None
    if is_head:
        overrides = tuple(parse_assignments(attributes or "").items())
        head_request = HeadRequest(head or 0, overrides, light or "front")
    request = WorldRender(
        caption, cameras, resolution, supersample=supersample, ground=ground, head=head_request
    )
    result = render_world(request, options.out)
    console.print(
        f"wrote {views} views of '{result['caption']}' to {options.out} (grid.png, "
        "transforms.json)",
        highlight=False,
    )


@world_app.command("vocab")
def world_vocab() -> None:
    """Print the words captions may use, and the head attributes --set accepts."""
    from dreamlift.world import head_vocabulary, vocabulary
    from dreamlift.world.heads import ATTRIBUTES, attribute_values

    for role, words in {**vocabulary(), **head_vocabulary()}.items():
        typer.echo(f"{role}: {', '.join(words)}")
    typer.echo("head attributes (--set name=value):")
    for name in ATTRIBUTES:
        typer.echo(f"  {name}: {attribute_values(name)}")
