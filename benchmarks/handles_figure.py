"""The README's Diffusion Handles picture: input, depth edit, result (the paper's passes),
result with the two options that are not the paper's (``--keep-background --carry-steps
38``) and true target of one translation and one rotation of a world scene, each made by the
user's command.

    .venv/bin/python benchmarks/handles_figure.py [--out docs/images/handles_edits.png]
        [--scale 4] [--threads 2]

Each row is ``dreamlift handles --scene … --out DIR`` run as a user runs it, once as given
and once with the options; the row is read back from the DIRs (``input.png``,
``edited_depth.png``, ``edited.png``, ``target.png``) and enlarged ``--scale`` times with
nearest-neighbour sampling, so that what is shown is the pixels the prior made, not a
smoothed version of them. The scores of each edit (from its ``summary.json``) are printed
and written next to the picture as JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from run_info import command_line

from dreamlift.io.media import image_grid

ROOT = Path(__file__).resolve().parents[1]
EDITS = (
    ("translation", "a yellow cylinder next to a purple cube", 1, ["--translate", "0.3", "0", "0"]),
    ("rotation", "a red cube next to a blue sphere", 0, ["--rotate", "y", "45"]),
)
OPTIONS = ["--keep-background", "--carry-steps", "38"]
"""The variant's flags (not the paper's; docs/benchmarks.md, "Carrying the object")."""
RUNS = {"paper": [], "options": OPTIONS}
COLUMNS = (  # (title, run, file)
    ("input", "paper", "input.png"),
    ("depth edit", "paper", "edited_depth.png"),
    ("result", "paper", "edited.png"),
    ("+ carried", "options", "edited.png"),
    ("true target", "paper", "target.png"),
)
HEADER = 18  # px of the column titles


def run_edit(scene: str, index: int, transform: list[str], out: Path, threads: int) -> dict:
    """One ``dreamlift handles`` run, as the README gives it; returns its summary."""
    command = [sys.executable, "-m", "dreamlift", "handles", "--scene", scene]
    command += ["--object", str(index), *transform, "--threads", str(threads), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"handles failed: {done.stderr.strip() or done.stdout.strip()}")
    return json.loads((out / "summary.json").read_text())


def row_tiles(folder: Path, scale: int) -> torch.Tensor:
    """(5, H·scale, W·scale, 3) the pictures of one edit's two runs, enlarged ``scale`` times."""
    pictures = [Image.open(folder / run / name).convert("RGB") for _, run, name in COLUMNS]
    tiles = torch.stack([torch.from_numpy(np.array(p)) for p in pictures])
    return tiles.repeat_interleave(scale, 1).repeat_interleave(scale, 2)


def figure(tiles: torch.Tensor) -> Image.Image:
    """The runs' tiles (uint8), one run a row, under a line of column titles."""
    grid = Image.fromarray(image_grid(tiles, columns=len(COLUMNS)).numpy())
    sheet = Image.new("RGB", (grid.width, grid.height + HEADER), "white")
    sheet.paste(grid, (0, HEADER))
    draw = ImageDraw.Draw(sheet)
    for i, (title, _, _) in enumerate(COLUMNS):
        draw.text((i * grid.width // len(COLUMNS) + 4, 3), title, fill=(0, 0, 0))
    return sheet


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "handles_edits.png")
    parser.add_argument("--scale", type=int, default=4, help="Nearest-neighbour enlargement.")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if args.scale < 1:
        parser.exit(2, "error: --scale must be at least 1\n")
    started = time.time()
    rows, scores = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, scene, index, transform in EDITS:
            folder = Path(tmp) / label
            for run, flags in RUNS.items():
                summary = run_edit(scene, index, transform + flags, folder / run, args.threads)
                name = label if not flags else f"{label}, {' '.join(flags)}"
                scores[name] = {
                    "command": f"dreamlift handles --scene {scene!r} --object {index} "
                    + " ".join(transform + flags),
                    **{k: v for k, v in summary["metrics"].items() if isinstance(v, float)},
                }
                print(f"{name}: {json.dumps(scores[name])}", flush=True)
            rows.append(row_tiles(folder, args.scale))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure(torch.cat(rows)).save(args.out)
    result = {
        "command": command_line("handles_figure.py", argv),
        "picture": str(args.out),
        "edits": scores,
        "wall_s": time.time() - started,
    }
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    size = np.asarray(Image.open(args.out)).shape
    print(f"{args.out} ({size[1]}×{size[0]} px)")
    return result


if __name__ == "__main__":
    main()
