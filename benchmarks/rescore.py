"""Re-score kept `dreamlift generate` run folders with the current ground-truth scores.

    .venv/bin/python benchmarks/rescore.py RUN [RUN ...] [--threads 1]

Loads each run's field from its checkpoint (``stages.load_field``) and scores it as
``generate`` does at the end of a run (``methods/generate/scoring.world_scores``: silhouette
IoU, the colour verdict, the caption judged object by object, toy-clip), without training.
Prints one line per run with the run's old verdicts (from its summary.json) beside the new
ones and the seconds the scoring took.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from dreamlift.methods.generate import build_config
from dreamlift.methods.generate.scoring import world_scores
from dreamlift.stages import load_field
from dreamlift.utils.process import configure_process
from dreamlift.world import parse


def rescore(run: Path) -> dict[str, Any]:
    summary = json.loads((run / "summary.json").read_text())
    prompt = summary["prompt"]
    fld = load_field(run)
    fld.eval()
    warnings: list[str] = []
    start = time.perf_counter()
    scores = world_scores(build_config("fast", prompt=prompt), fld, parse(prompt), warnings)
    seconds = time.perf_counter() - start
    old = summary["metrics"]
    return {
        "run": str(run),
        "prompt": prompt,
        "command": summary.get("command"),
        "old": {k: old.get(k) for k in ("silhouette_iou", "colour_winner", "colour_correct")},
        "silhouette_iou": scores["silhouette_iou"],
        "colour_verdict": scores.get("colour_verdict"),
        "colour_named": scores.get("colour_named"),
        "colour_correct": scores.get("colour_correct"),
        "looks_like": [o["looks_like"] for o in scores["caption"]["objects"]],
        "caption_correct": scores["caption_correct"],
        "clip_r_precision": scores.get("clip_r_precision"),
        "score_s": seconds,
        "warnings": warnings,
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    configure_process()
    torch.set_num_threads(args.threads)
    rows = []
    for run in args.runs:
        row = rescore(run)
        rows.append(row)
        print(
            f"{row['prompt']!r} ({row['command']}): old IoU {row['old']['silhouette_iou']} "
            f"colour {row['old']['colour_winner']} | new IoU {row['silhouette_iou']:.3f} "
            f"colour {row['colour_verdict']} {row['colour_named']} "
            f"looks like {' / '.join(row['looks_like'])} caption "
            f"{'right' if row['caption_correct'] else 'wrong'} | {row['score_s']:.1f} s"
        )
    return rows


if __name__ == "__main__":
    main()
