"""Where would a run stop? The convergence test's candidate rules against the ground truth.

    .venv/bin/python benchmarks/convergence.py [--captions single,composition,heldout]
        [--threads 1] [--shard 0/2] [--out benchmarks/results/convergence.json]

Runs the fast preset (GE3D on Gaussians) with the stop turned off, every caption to its last
step, and lets several convergence tests (``methods/generate/convergence.py``) watch the same
run: each says at which step it would have stopped. Every 25 steps the run also records the
4-view quick IoU against the world's truth (``eval_iou``), so the table shows what each rule
would have kept: the quick IoU at its stop against the IoU at the last step. The rules differ
in their thresholds and in how often they check; the default rule is ``default``.

Each caption takes the fast preset's full 600 steps plus the evaluations (about 2 minutes at
one thread). ``--shard I/N`` runs every N-th caption from the I-th (two processes, one
thread each, use both cores); ``--merge A.json B.json`` joins their results.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from generate import CAPTIONS  # benchmarks/ is on the path of a script run from it
from run_info import machine

from dreamlift.methods.generate import build_config, generate
from dreamlift.methods.generate.convergence import ConvergenceConfig, ConvergenceStop
from dreamlift.methods.generate.run import load_prior
from dreamlift.utils.process import configure_process

RESULTS = Path(__file__).parent / "results" / "convergence.json"
EVAL_EVERY = 25
RULES: dict[str, dict[str, Any]] = {
    "default": {},
    "silhouettes only": {"colour_change": 1.0},
    "one check": {"patience": 1},
    "every 25": {"every": 25},
    "IoU 0.97": {"threshold": 0.97},
    "IoU 0.99": {"threshold": 0.99},
}
"""Candidate rules: changes to :class:`ConvergenceConfig`'s defaults."""


def watched_run(prior: Any, caption: str, threads: int, steps: int | None = None) -> dict[str, Any]:
    """One fast run to its last step with every rule watching; per rule its stop step."""
    torch.set_num_threads(threads)
    cfg = build_config(
        "fast",
        prompt=caption,
        steps=steps,
        convergence={"enabled": False},
        log_every=EVAL_EVERY,
        eval_every=EVAL_EVERY,
    )
    rules = {
        name: dataclasses.replace(ConvergenceConfig(), enabled=True, **change)
        for name, change in RULES.items()
    }
    stops: dict[str, ConvergenceStop] = {}

    def watch(fld: Any) -> Any:
        stops.update({n: ConvergenceStop(r, fld, cfg.steps, {}) for n, r in rules.items()})

        def on_record(record: dict[str, Any]) -> None:
            for stop in stops.values():
                stop(record["step"])  # a rule checks only at its own multiples

        return on_record

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = generate(cfg, Path(tmp) / "run", quiet=True, prior=prior, watch=watch)
    curve = {int(p["step"]): p["iou"] for p in result["metrics"]["eval_curve"]}
    last = max(curve)
    row: dict[str, Any] = {
        "caption": caption,
        "silhouette_iou": result["metrics"].get("silhouette_iou"),
        "caption_correct": result["metrics"].get("caption_correct"),
        "quick_iou_last": curve[last],
        "seconds": time.perf_counter() - start,
        "rules": {},
    }
    for name, stop in stops.items():
        at = stop.converged_at or last
        row["rules"][name] = {
            "stop": at,
            "quick_iou": curve.get(at),
            "history": stop.record["history"],
        }
    return row


def table(rows: list[dict[str, Any]]) -> None:
    """Per caption and rule: the stop step and the quick IoU there (change from the last)."""
    names = list(RULES)
    print(f"{'caption':46s} {'last':>6s} " + " ".join(f"{n[:18]:>18s}" for n in names))
    for row in rows:
        cells = []
        for name in names:
            rule = row["rules"][name]
            iou = rule["quick_iou"] or 0.0
            cells.append(f"{rule['stop']:4d} {iou:.3f} ({iou - row['quick_iou_last']:+.3f})")
        print(f"{row['caption'][:46]:46s} {row['quick_iou_last']:6.3f} " + " ".join(cells))
    for name in names:
        steps = [r["rules"][name]["stop"] for r in rows]
        worst = min((r["rules"][name]["quick_iou"] or 0) - r["quick_iou_last"] for r in rows)
        mean = sum(steps) / len(steps)
        print(f"  {name:18s} mean stop {mean:6.1f}  worst quick-IoU change {worst:+.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions", default="single,composition,heldout")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shard", default="0/1", help="I/N: every N-th caption from the I-th")
    parser.add_argument("--steps", type=int, default=None, help="Steps [the preset's 600].")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--merge", nargs="+", type=Path, help="Join shards' JSON into --out.")
    args = parser.parse_args()
    if args.merge:
        rows = [r for path in args.merge for r in json.loads(path.read_text())["rows"]]
    else:
        index, count = (int(x) for x in args.shard.split("/"))
        captions = [c for group in args.captions.split(",") for c in CAPTIONS[group]]
        captions = captions[index::count]
        configure_process()
        torch.set_num_threads(args.threads)
        prior = load_prior(build_config("fast", prompt=captions[0]))
        rows = []
        for caption in captions:
            rows.append(watched_run(prior, caption, args.threads, args.steps))
            print(f"{caption}: {rows[-1]['seconds']:.0f} s", flush=True)
    table(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "command": "benchmarks/convergence.py",
        "machine": machine(args.threads),
        "rules": RULES,
        "rows": rows,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
