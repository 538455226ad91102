"""``dreamlift handles``: move an object of an image in 3D (registered by :mod:`dreamlift.cli`).

Registered with ``app.command("handles")(handles_command)``; user errors are
:class:`~dreamlift.errors.DreamliftError` and print as one line there (exit code 2).

The transform is given in the camera's frame: x right, y up, z towards the camera, in the
depth's units; rotation and scale act about the object's centroid. ``--rotate y 45`` turns
the object 45° counter-clockwise seen from above. With ``--scene`` the frame is
gravity-aligned (y is the world's vertical) and the run is scored against the true edit.
The paper code's frame is x left, y up, looking along +z: copied from it, translations in
x and z and rotations about x and z change sign; y keeps its sign
(:mod:`dreamlift.methods.handles.transform`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress, TaskID

from dreamlift.errors import DataError

console = Console(stderr=True)


def handles_command(
    image: Path | None = typer.Argument(None, help="Image to edit (PNG/JPEG); omit with --scene."),
    mask: Path | None = typer.Option(None, help="Object mask image (white = the object)."),
    prompt: str | None = typer.Option(None, help="Caption of the image (a scene's by default)."),
    depth: Path | None = typer.Option(
        None, help="z-depth: .npy, 16-bit PNG in mm, or 8-bit disparity PNG (bright = near)."
    ),
    depth_model: Path | None = typer.Option(
        None, help="DPT folder (or SD2-depth folder) estimating depth when --depth is absent."
    ),
    translate: tuple[float, float, float] = typer.Option(
        (0.0, 0.0, 0.0),
        help="X Y Z in depth units: x right, y up, z towards the camera "
        "(the paper code's X and Z have the opposite sign).",
    ),
    rotate: tuple[str, float] | None = typer.Option(
        None,
        help="AXIS DEG about the object's centroid; AXIS is x, y (up), z or 'a,b,c' "
        "(about x or z the paper code's DEG has the opposite sign; about y it agrees).",
    ),
    scale: float = typer.Option(1.0, help="Uniform scale about the object's centroid."),
    scene: str | None = typer.Option(
        None, help="World caption: render a ground scene as the input and score the edit."
    ),
    object_index: int = typer.Option(0, "--object", help="Which object of --scene to move."),
    method: str = typer.Option(
        "handles", help="handles, depth_only or warp_paste_2d (see dreamlift list)."
    ),
    prior: str = typer.Option("toy-sd-depth", help="Zoo name or SD2-depth diffusers folder."),
    preset: str = typer.Option("paper", help="paper (DH's settings) or fast."),
    steps: int | None = typer.Option(
        None, min=1, max=1000, help="DDIM steps (preset: 50; at most the prior's 1000 timesteps)."
    ),
    inversion_steps: int | None = typer.Option(
        None, min=1, help="Null-text inversion inner steps (preset: 5)."
    ),
    step_size: float | None = typer.Option(
        None, min=0.0, help="Latent step on the guidance energy (preset: 0.1)."
    ),
    fov: float | None = typer.Option(
        None, min=1.0, max=179.0, help="Assumed horizontal FoV in degrees (55)."
    ),
    frames: int = typer.Option(
        0, min=0, help="Frames from the identity to the edit for strip/gif (0: input, edit)."
    ),
    resize: bool = typer.Option(False, help="Resize image, mask and depth to the prior's size."),
    seed: int = typer.Option(0, help="torch seed (inversion makes the edit deterministic)."),
    out: Path = typer.Option(Path("out/handles"), help="Run folder."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, ..."),
    threads: int | None = typer.Option(None, min=1, help="torch CPU threads."),
    quiet: bool = typer.Option(False, help="No progress bar."),
) -> None:
    """Move an object of IMAGE (or of a --scene) in 3D; writes edited.png and friends."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    from dreamlift.methods.handles.config import PRESETS
    from dreamlift.methods.handles.request import HandlesRun
    from dreamlift.methods.handles.run import run_handles
    from dreamlift.methods.handles.transform import transform_from_options

    if preset not in PRESETS:
        raise DataError(f"unknown preset {preset!r}", f"one of: {', '.join(PRESETS)}")
    config = PRESETS[preset]
    if steps is not None:
        config = replace(config, steps=steps)
    if inversion_steps is not None:
        config = replace(config, inversion_inner_steps=inversion_steps)
    if step_size is not None:
        config = replace(config, step_size=step_size)
    if fov is not None:
        config = replace(config, geometry=replace(config.geometry, fov_deg=fov))
    request = HandlesRun(
        transform=transform_from_options(translate, rotate, scale),
        image=str(image) if image else None,
        mask=str(mask) if mask else None,
        depth=str(depth) if depth else None,
        depth_model=str(depth_model) if depth_model else None,
        prompt=prompt,
        scene=scene,
        object_index=object_index,
        prior=prior,
        method=method.replace("-", "_"),
        device=device,
        seed=seed,
        frames=frames,
        resize=resize,
        config=config,
    )
    with Progress(disable=quiet, transient=True, console=console) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done)

        result = run_handles(request, out, progress=progress)
    shown = ", ".join(f"{k} {v:.3f}" for k, v in result["metrics"].items() if isinstance(v, float))
    console.print(f"[bold green]done[/] {out}" + (f": {shown}" if shown else ""))
    for name, path in result["outputs"].items():
        console.print(f"  {name:18s} {path}")
    for note in result["notes"]:
        console.print(f"  note: {note}", highlight=False)
