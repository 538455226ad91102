"""Batched prompts in one process: assets per minute of ``generate --prompts FILE --batch B``
at B = 1, 2, 4, 8, for GE3D and SDS, with the quality of each asset.

Every size runs the same command on the same captions (the fast set's six single objects
and two on-top compositions) in a fresh process, so a size's wall time holds everything a
user waits for: loading, training, turntables, 3D files and scoring. Sizes run in the order
1, 8, 2, 4 for each guidance (the bar's pair side by side), ``--repeats`` times alternating,
and speed is reported as a ratio to B = 1 of the same repeat, because absolute times drift
on this machine. Quality: each asset's silhouette IoU against the world's truth and whether
its caption is judged right, against the same caption at B = 1.

Bar (issue "Ecosystem"): GE3D at B = 8 ≥ 1.5× the assets per minute of B = 1, mean IoU within
0.02 of B = 1's. Run it alone on the machine:

    python benchmarks/batch.py                      # ~45 min on a 2-core CPU
    python benchmarks/batch.py --guidances ge3d --sizes 1 8 --captions 4 --steps 100
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from generate import CAPTIONS
from run_info import command_line, machine, write_verdict

CAPTION_SET = (*CAPTIONS["single"], *CAPTIONS["composition"][:2])
"""Six single objects and the two on-top compositions of the generate benchmark."""
SPEED_BAR = 1.5
IOU_TOLERANCE = 0.02
RESULTS = Path(__file__).parent / "results" / "batch.json"


def run_size(
    prompts: Path,
    out: Path,
    guidance: str,
    size: int,
    threads: int,
    steps: int | None,
    device: str = "auto",
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One ``generate --prompts --batch size`` in a fresh process: wall time and each
    asset's scores (from its summary.json)."""
    cmd = [sys.executable, "-m", "dreamlift", "generate", "--prompts", str(prompts)]
    cmd += ["--guidance", guidance, "--batch", str(size), "--threads", str(threads)]
    cmd += ["--device", device, *extra]
    cmd += ["--out", str(out), "--quiet"] + (["--steps", str(steps)] if steps else [])
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr[-1500:]}")
    assets = []
    for row in json.loads((out / "batch.json").read_text()):
        summary = json.loads((Path(row["out"]) / "summary.json").read_text())
        metrics = summary["metrics"]
        assets.append(
            {
                "prompt": row["prompt"],
                "silhouette_iou": metrics.get("silhouette_iou"),
                "caption_correct": metrics.get("caption_correct"),
                "steps_done": metrics.get("steps_done"),
                "train_s": summary["timings"].get("train_s"),
            }
        )
    return {"wall_s": wall, "assets": assets, "assets_per_min": 60.0 * len(assets) / wall}


def summarise(runs: dict[int, list[dict[str, Any]]]) -> dict[int, dict[str, Any]]:
    """Per size: assets per minute (median over repeats), its ratio to B = 1 per repeat, mean
    IoU, captions right, and each caption's IoU change against B = 1 (first repeat)."""
    base = runs[1]
    table = {}
    for size, reps in runs.items():
        pairs = zip(reps, base, strict=True)
        ratios = [r["assets_per_min"] / b["assets_per_min"] for r, b in pairs]
        ious = [a["silhouette_iou"] or 0.0 for a in reps[0]["assets"]]
        deltas = {
            a["prompt"]: (a["silhouette_iou"] or 0.0) - (b["silhouette_iou"] or 0.0)
            for a, b in zip(reps[0]["assets"], base[0]["assets"], strict=True)
        }
        table[size] = {
            "assets_per_min": statistics.median(r["assets_per_min"] for r in reps),
            "ratio_to_1": statistics.median(ratios),
            "ratios": ratios,
            "mean_iou": statistics.fmean(ious),
            "captions_right": sum(bool(a["caption_correct"]) for a in reps[0]["assets"]),
            "iou_change": deltas,
        }
    return table


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guidances", nargs="+", default=["ge3d", "sds"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[1, 8, 2, 4])
    parser.add_argument("--captions", type=int, default=len(CAPTION_SET))
    parser.add_argument("--steps", type=int, default=None, help="Override the preset's steps.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (generate's).")
    parser.add_argument("--prior", default=None, help="generate's --prior (default: its own).")
    parser.add_argument(
        "--set", dest="settings", action="append", default=[], help="generate's --set KEY=VALUE"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if 1 not in args.sizes:
        parser.error("--sizes must include 1, the reference")
    captions = list(CAPTION_SET[: args.captions])
    extra = tuple(["--prior", args.prior] if args.prior else [])
    extra += tuple(x for setting in args.settings for x in ("--set", setting))
    started = time.perf_counter()
    tables: dict[str, dict[int, dict[str, Any]]] = {}
    raw: dict[str, dict[int, list[dict[str, Any]]]] = {}
    with tempfile.TemporaryDirectory(prefix="dreamlift-batch-") as tmp:
        prompts = Path(tmp) / "prompts.txt"
        prompts.write_text("\n".join(captions) + "\n")
        for guidance in args.guidances:
            runs: dict[int, list[dict[str, Any]]] = {size: [] for size in args.sizes}
            for repeat in range(args.repeats):
                order = args.sizes if repeat % 2 == 0 else args.sizes[::-1]
                for size in order:
                    out = Path(tmp) / f"{guidance}-{size}-{repeat}"
                    run = run_size(
                        prompts, out, guidance, size, args.threads, args.steps, args.device, extra
                    )
                    runs[size].append(run)
                    print(
                        f"{guidance} B={size} repeat {repeat}: {run['wall_s']:.1f} s, "
                        f"{run['assets_per_min']:.2f} assets/min",
                        flush=True,
                    )
            raw[guidance] = runs
            tables[guidance] = summarise(runs)
    print(f"\n{len(captions)} captions, {args.threads} threads, steps {args.steps or 'preset'}")
    print(f"{'guidance':9} {'B':>2} {'assets/min':>10} {'× B=1':>6} {'mean IoU':>8} {'right':>5}")
    for guidance, table in tables.items():
        for size in sorted(table):
            row = table[size]
            print(
                f"{guidance:9} {size:>2} {row['assets_per_min']:>10.2f} "
                f"{row['ratio_to_1']:>6.2f} {row['mean_iou']:>8.3f} {row['captions_right']:>5}"
            )
    passes = {}
    ge3d = tables.get("ge3d", {})
    if 8 in ge3d:
        passes = {
            "ge3d_batch8_speed": ge3d[8]["ratio_to_1"] >= SPEED_BAR,
            "ge3d_batch8_iou": abs(ge3d[8]["mean_iou"] - ge3d[1]["mean_iou"]) <= IOU_TOLERANCE,
        }
    result = {
        "command": command_line("batch.py", argv),
        "machine": machine(args.threads, device=args.device),
        "captions": captions,
        "steps": args.steps,
        "tables": {g: {str(k): v for k, v in t.items()} for g, t in tables.items()},
        "runs": {g: {str(k): v for k, v in r.items()} for g, r in raw.items()},
        "bars": passes,
        "all_pass": bool(passes) and all(passes.values()),
        "wall_s": time.perf_counter() - started,
    }
    write_verdict(args.out, result)
    return result


if __name__ == "__main__":
    main()
