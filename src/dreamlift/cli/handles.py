"""``dreamlift handles``: move an object of an image in 3D (:mod:`dreamlift.methods.handles`).

The transform is given in the camera's frame: x right, y up, z towards the camera, in the
depth's units; rotation and scale act about the object's centroid. ``--rotate y 45`` turns
the object 45° counter-clockwise seen from above. With ``--scene`` the frame is
gravity-aligned (y is the world's vertical) and the run is scored against the true edit.
The paper code's frame is x left, y up, looking along +z: copied from it, translations in
x and z and rotations about x and z change sign; y keeps its sign
(:mod:`dreamlift.methods.handles.transform`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.progress import Progress, TaskID

from dreamlift.cli.common import TRAINING, RunOptions, command, console, report


@command(out="out/handles", options=TRAINING)
def handles_command(
    options: RunOptions,
    image: Path | None = typer.Argument(None, help="Image to edit (PNG/JPEG); omit with --scene."),
    mask: Path | None = typer.Option(None, help="Object mask image (white = the object)."),
    prompt: str | None = typer.Option(None, help="Caption of the image (a scene's by default)."),
    depth: Path | None = typer.Option(
        None, help="z-depth: .npy, 16-bit PNG in mm, or 8-bit disparity PNG (bright = near)."
    ),
    depth_model: Path | None = typer.Option(
        None, help="DPT folder (or SD2-depth folder) estimating depth when --depth is absent."
    ),
    translate: tuple[float, float, float] | None = typer.Option(
        None,
        help="X Y Z in depth units: x right, y up, z towards the camera "
        "(the paper code's X and Z have the opposite sign).",
    ),
    rotate: tuple[str, float] | None = typer.Option(
        None,
        help="AXIS DEG about the object's centroid; AXIS is x, y (up), z or 'a,b,c' "
        "(about x or z the paper code's DEG has the opposite sign; about y it agrees).",
    ),
    scale: float | None = typer.Option(None, help="Uniform scale about the object's centroid."),
    scene: str | None = typer.Option(
        None, help="World caption: render a ground scene as the input and score the edit."
    ),
    object_index: int | None = typer.Option(None, "--object", help="Which object of --scene."),
    method: str | None = typer.Option(
        None, help="handles, depth_only or warp_paste_2d (see dreamlift list) (default: handles)."
    ),
    prior: str | None = typer.Option(
        None, help="Zoo name or SD2-depth diffusers folder (default: toy-sd-depth)."
    ),
    preset: str | None = typer.Option(None, help="paper (DH's settings) or fast (default: paper)."),
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
    frames: int | None = typer.Option(
        None, min=0, help="Frames from the identity to the edit for strip/gif (0: input, edit)."
    ),
    resize: bool = typer.Option(False, help="Resize image, mask and depth to the prior's size."),
    keep_background: bool = typer.Option(
        False,
        "--keep-background",
        help="Not the paper's: copy the reconstruction's latents back outside both objects at "
        "every step (latent blending), so the background stays as the inversion made it.",
    ),
    carry_steps: int | None = typer.Option(
        None,
        min=0,
        help="Not the paper's: for this many first steps (at most --steps), write the "
        "object's pixels moved along the 3D edit (encoded, noised to the step) into both "
        "objects' latent cells; the prior redraws it in the steps after, at CFG 1 "
        "(HandlesConfig.redraw_guidance_scale) "
        "(preset: 0, off; 38 of 50 are the guided steps).",
    ),
) -> None:
    """Move an object of IMAGE (or of a --scene) in 3D; writes edited.png and friends."""
    from dreamlift.methods.handles.request import build_request, resume_request
    from dreamlift.methods.handles.run import run_handles

    flags = {
        "image": str(image) if image is not None else None,
        "mask": str(mask) if mask is not None else None,
        "depth": str(depth) if depth is not None else None,
        "depth_model": str(depth_model) if depth_model is not None else None,
        "prompt": prompt,
        "scene": scene,
        "object_index": object_index,
        "method": method.replace("-", "_") if method is not None else None,
        "prior": prior,
        "preset": preset,
        "frames": frames,
        "resize": True if resize else None,
        "transform": _given(**transform_settings(translate, rotate, scale)) or None,
        "config": _given(
            steps=steps,
            inversion_inner_steps=inversion_steps,
            step_size=step_size,
            keep_background=True if keep_background else None,
            carry_steps=carry_steps,
            geometry=_given(fov_deg=fov) or None,
        )
        or None,
    }
    request = options.settings_for(build_request, resume_request, flags)
    with Progress(disable=options.quiet, transient=True, console=console) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done)

        result = run_handles(request, options.out, progress=progress, resume=options.resume)
    report(str(options.out), result)


def transform_settings(
    translate: tuple[float, float, float] | None,
    rotate: tuple[str, float] | None,
    scale: float | None,
) -> dict[str, Any]:
    """The transform's settings the flags give: translate, axis and angle, scale."""
    from dreamlift.methods.handles.transform import parse_axis

    return {
        "translate": tuple(float(v) for v in translate) if translate is not None else None,
        "axis": parse_axis(rotate[0]) if rotate is not None else None,
        "angle_deg": float(rotate[1]) if rotate is not None else None,
        "scale": float(scale) if scale is not None else None,
    }


def _given(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
