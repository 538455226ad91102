"""The README's Diffusion Handles picture: input, depth edit, result and true target of one
translation and one rotation of a world scene, each made by the user's command.

    .venv/bin/python benchmarks/handles_figure.py [--out docs/images/handles_edits.png]
        [--scale 4] [--threads 2]

Each row is ``dreamlift handles --scene … --out DIR`` run as a user runs it; the row is read
back from DIR (``input.png``, ``edited_depth.png``, ``edited.png``, ``target.png``) and
enlarged ``--scale`` times with nearest-neighbour sampling, so that what is shown is the
pixels the prior made, not a smoothed version of them. The scores of each edit (from its
``summary.json``) are printed and written next to the picture as JSON.
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
from PIL import Image, ImageDraw
from run_info import command_line

ROOT = Path(__file__).resolve().parents[1]
EDITS = (
    ("translation", "a yellow cylinder next to a purple cube", 1, ["--translate", "0.3", "0", "0"]),
    ("rotation", "a red cube next to a blue sphere", 0, ["--rotate", "y", "45"]),
)
COLUMNS = (
    ("input", "input.png"),
    ("depth edit", "edited_depth.png"),
    ("result", "edited.png"),
    ("true target", "target.png"),
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


def row_image(folder: Path, scale: int) -> Image.Image:
    """The four pictures of one run side by side, enlarged ``scale`` times."""
    tiles = []
    for _, name in COLUMNS:
        tile = Image.open(folder / name).convert("RGB")
        tiles.append(tile.resize((tile.width * scale, tile.height * scale), Image.NEAREST))
    row = Image.new("RGB", (sum(t.width for t in tiles), tiles[0].height), "white")
    x = 0
    for tile in tiles:
        row.paste(tile, (x, 0))
        x += tile.width
    return row


def figure(rows: list[Image.Image]) -> Image.Image:
    """Rows under a line of column titles."""
    width, height = rows[0].width, sum(r.height for r in rows)
    sheet = Image.new("RGB", (width, height + HEADER), "white")
    draw = ImageDraw.Draw(sheet)
    tile = width // len(COLUMNS)
    for i, (title, _) in enumerate(COLUMNS):
        draw.text((i * tile + 4, 3), title, fill=(0, 0, 0))
    y = HEADER
    for row in rows:
        sheet.paste(row, (0, y))
        y += row.height
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
            summary = run_edit(scene, index, transform, folder, args.threads)
            rows.append(row_image(folder, args.scale))
            scores[label] = {
                "command": f"dreamlift handles --scene {scene!r} --object {index} "
                + " ".join(transform),
                **{k: v for k, v in summary.get("metrics", {}).items() if isinstance(v, float)},
            }
            print(f"{label}: {json.dumps(scores[label])}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure(rows).save(args.out)
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
