"""Edit benchmark: Perturb-and-Revise and its ablations on world edits whose result is an asset.

    .venv/bin/python benchmarks/edit.py [--edits 12] [--methods pnr sds eta0.3 eta0.6 pnr-noipg]
    .venv/bin/python benchmarks/edit.py --merge A.json B.json   # parts run side by side

Prints a table and writes benchmarks/results/edit.json. Each edit's source is reconstructed
from the world's views of the source caption (the field is then in world coordinates, like
the target's ground truth), once, and every method edits that same field with the same step
count (equal budgets):

* ``pnr``: adaptive η and the identity-preserving stage (the paper's method);
* ``sds``: the paper's SDS-edit baseline, η = 0 and no IPG stage;
* ``eta0.3`` / ``eta0.6``: fixed η with IPG;
* ``pnr-noipg``: adaptive η without IPG.

Metrics, per edit and method: the caption judged object by object against the *target*
(``caption_correct``: every object's shape and colour right and the relation right — the
target ranks first among the compositions one object away), the aligned silhouette IoU and
colour error against the target over 8 views, fidelity (PSNR of the edited field's renders
against the source field's, over the pixels of the object the edit must leave alone, from the
world's instance masks; additions and removals only; in that object's frame, since the world
lays the target out anew: :mod:`dreamlift.metrics.fidelity`), toy-clip directional similarity
(edit strength) and directional consistency, η, and the time.

Bars (the edit issue): fast preset ≤ 5 minutes an edit; colour and shape edits with target
IoU ≥ 0.8 and caption judged right for ≥ 80 %; additions keep the untouched object at PSNR
≥ 25 dB against the source.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from dreamlift.cameras import DEFAULT_ORBIT, orbit_cameras
from dreamlift.methods.common.outputs import field_renderer
from dreamlift.methods.edit import build_config, edit
from dreamlift.metrics.fidelity import kept_objects, kept_region
from dreamlift.metrics.image import masked_psnr
from dreamlift.stages import load_field
from dreamlift.utils.process import configure_process
from dreamlift.world import asset_from_caption, parse

RESULTS = Path(__file__).parent / "results" / "edit.json"


@dataclass(frozen=True)
class EditCase:
    kind: str  # colour, shape, add, remove
    source: str
    target: str


CASES = (
    EditCase("colour", "a red cube", "a blue cube"),
    EditCase("colour", "a yellow torus", "a green torus"),
    EditCase("colour", "a white sphere", "a purple sphere"),
    EditCase("colour", "an orange cone", "a cyan cone"),
    EditCase("shape", "a red cube", "a red sphere"),
    EditCase("shape", "a blue cylinder", "a blue cone"),
    EditCase("shape", "a green pyramid", "a green cube"),
    EditCase("shape", "a pink sphere", "a pink torus"),
    EditCase("add", "a red cube", "a red cube with a yellow cone on top"),
    EditCase("add", "a blue cylinder", "a blue cylinder with a white sphere on top"),
    EditCase("add", "a green cube", "a green cube next to a red sphere"),
    EditCase("remove", "a red cube with a blue sphere on top", "a red cube"),
)
KINDS = ("colour", "shape", "add", "remove")
METHODS = {
    "pnr": {},
    "sds": {"eta": 0.0, "ipg_steps": 0},
    "eta0.3": {"eta": 0.3},
    "eta0.6": {"eta": 0.6},
    "pnr-noipg": {"ipg_steps": 0},
}


def views(n: int = 8, size: int = 64):  # noqa: ANN201
    az = torch.arange(n, dtype=torch.float32) * 360.0 / n
    return orbit_cameras(
        az, torch.full((n,), 20.0), DEFAULT_ORBIT.radius, DEFAULT_ORBIT.fov_deg, size
    )


def kept_pairs(case: EditCase) -> list[tuple[int, int]]:
    """The objects the edit must leave alone (source index, target index)."""
    return kept_objects(parse(case.source), parse(case.target))


def unaligned_fidelity(case: EditCase, edited, source, cams) -> float | None:  # noqa: ANN001
    """PSNR against the source in the source's frame as it is, over the pixels the run's own
    ``fidelity_psnr`` compares in each kept object's frame (:mod:`dreamlift.metrics.fidelity`).
    Before 2026-12-07 this benchmark reported this kind of number as fidelity, over all the
    source's pixels of the object: it charges an edit for drawing its target the way the
    world lays it out."""
    pairs = kept_pairs(case)
    if not pairs:
        return None
    source_asset, target_asset = asset_from_caption(case.source), asset_from_caption(case.target)
    region = torch.stack(kept_region(source_asset, target_asset, pairs, cams)).any(0)
    a = field_renderer(edited)(cams)["rgb"].clamp(0, 1)
    b = field_renderer(source)(cams)["rgb"].clamp(0, 1)
    return masked_psnr(a, b, region[..., None])


def clip_direction(source, edited, case: EditCase, cams) -> dict[str, float]:  # noqa: ANN001
    from dreamlift.metrics.clip import ClipScorer

    scorer = ClipScorer.load("toy-clip")
    a = field_renderer(source)(cams)["rgb"]
    b = field_renderer(edited)(cams)["rgb"]
    sim = scorer.clip_direction_similarity(a, b, case.source, case.target)
    ea, eb = scorer.image_embeddings(a), scorer.image_embeddings(b)
    d = torch.nn.functional.normalize(eb - ea, dim=-1)
    consistency = float((d[:-1] * d[1:]).sum(-1).mean())  # neighbouring views' edit directions
    return {"clip_direction": float(sim.mean()), "clip_consistency": consistency}


def source_run(case: EditCase, root: Path, field: str, steps: int | None) -> Path:
    from dreamlift.methods.reconstruct import build_config as build_reconstruct
    from dreamlift.methods.reconstruct import reconstruct

    folder = root / "sources" / case.source.replace(" ", "_")
    if not (folder / "summary.json").is_file():
        cfg = build_reconstruct("fast", asset=case.source, field=field, steps=steps, device="cpu")
        reconstruct(cfg, folder, resume=(folder / "config.yaml").is_file(), quiet=True)
    return folder


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=len(CASES))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument(
        "--kinds",
        nargs="+",
        default=list(KINDS),
        choices=list(KINDS),
        help="edit kinds to run (of the first --edits edits; default all)",
    )
    parser.add_argument("--field", default="nerf")
    parser.add_argument("--prior", default=None, help="zoo name or folder (default: the step's)")
    parser.add_argument("--source-steps", type=int, default=None)
    parser.add_argument("--steps", type=int, nargs=3, metavar=("PROBE", "REVISE", "IPG"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("out/bench-edit"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--set", action="append", default=[], help="edit config KEY=VALUE")
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        metavar="PART.json",
        help="write one results file (--out) from runs split by --methods; nothing is run",
    )
    args = parser.parse_args(argv)
    if args.merge:
        return merge_parts(args.merge, argv, args.out)
    configure_process()
    torch.set_num_threads(args.threads)
    from dreamlift.methods.common.config import merge, parse_settings

    extra = parse_settings(args.set)
    t_start = time.perf_counter()
    rows = []
    cams = views()
    for case in [c for c in CASES[: args.edits] if c.kind in args.kinds]:
        src_dir = source_run(case, args.work, args.field, args.source_steps)
        source = load_field(src_dir)
        for method in args.methods:
            out = args.work / "edits" / f"{case.target.replace(' ', '_')}__{method}"
            values = {
                "prompt": case.target,
                "source": str(src_dir),
                "device": "cpu",
                **METHODS[method],
            }
            if args.prior:
                values["step"] = {"prior": args.prior}
            if args.steps:
                values.update(probe_steps=args.steps[0], revise_steps=args.steps[1])
                if METHODS[method].get("ipg_steps", None) != 0:
                    values["ipg_steps"] = args.steps[2]
            cfg = build_config("fast", **merge(values, extra))
            t0 = time.perf_counter()
            result = edit(cfg, out, resume=(out / "config.yaml").is_file(), quiet=True)
            seconds = time.perf_counter() - t0
            edited = load_field(out)
            m = result["metrics"]
            row = {
                "kind": case.kind,
                "source": case.source,
                "target": case.target,
                "method": method,
                "eta": m.get("eta"),
                "caption_correct": m.get("caption_correct"),
                "silhouette_iou": m.get("silhouette_iou"),
                "colour_error": m.get("colour_error"),
                "fidelity_psnr": m.get("fidelity_psnr"),
                "fidelity_psnr_unaligned": unaligned_fidelity(case, edited, source, cams),
                **clip_direction(source, edited, case, cams),
                "seconds": seconds,
            }
            rows.append(row)
            print(
                f"{case.kind:6s} {case.target[:40]:40s} {method:9s} η {row['eta'] or 0:.2f} "
                f"IoU {row['silhouette_iou'] or 0:.3f} right {row['caption_correct']} "
                f"fid {row['fidelity_psnr'] or float('nan'):.1f} dir {row['clip_direction']:.3f} "
                f"{seconds:.0f} s",
                flush=True,
            )

    return finish(rows, argv, args.threads, args.out, time.perf_counter() - t_start)


def merge_parts(parts: list[Path], argv: list[str] | None, out: Path) -> dict:
    """One results file from parts run side by side (say, ``--methods pnr sds`` and
    ``--methods eta0.3 eta0.6``); rows are ordered edit by edit, a later part winning a
    repeated (edit, method)."""
    rows: dict[tuple[str, str], dict] = {}
    threads, wall = set(), 0.0
    for path in parts:
        part = json.loads(path.read_text())
        threads.add(part["machine"].get("cpu_threads"))
        wall = max(wall, part["wall_s"])  # the parts ran side by side
        rows.update({(r["target"], r["method"]): r for r in part["rows"]})
    order = {case.target: i for i, case in enumerate(CASES)}
    methods = list(METHODS)
    ordered = sorted(rows.values(), key=lambda r: (order[r["target"]], methods.index(r["method"])))
    return finish(ordered, argv, threads.pop() if len(threads) == 1 else None, out, wall)


def summarise(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per method, in the order the rows first name it: the means the table prints."""
    summary: dict[str, dict[str, float]] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        fid = [r["fidelity_psnr"] for r in mine if r["fidelity_psnr"] is not None]
        plain = [r.get("fidelity_psnr_unaligned") for r in mine]
        plain = [f for f in plain if f is not None]
        summary[method] = {
            "caption_correct": statistics.mean(float(bool(r["caption_correct"])) for r in mine),
            "silhouette_iou": statistics.mean(r["silhouette_iou"] or 0.0 for r in mine),
            "fidelity_psnr": statistics.mean(fid) if fid else float("nan"),
            "fidelity_psnr_unaligned": statistics.mean(plain) if plain else float("nan"),
            "clip_direction": statistics.mean(r["clip_direction"] for r in mine),
            "clip_consistency": statistics.mean(r["clip_consistency"] for r in mine),
            "seconds": statistics.mean(r["seconds"] for r in mine),
        }
    return summary


def bar_verdicts(rows: list[dict]) -> dict[str, bool]:
    """The issue's bars on PnR's rows (a file without them meets none)."""
    pnr = [r for r in rows if r["method"] == "pnr"]
    edits = [r for r in pnr if r["kind"] in ("colour", "shape")]
    adds = [r for r in pnr if r["kind"] == "add" and r["fidelity_psnr"] is not None]
    return {
        "time_5_min": bool(pnr) and all(r["seconds"] <= 300 for r in pnr),
        "colour_shape_edits": bool(edits)
        and sum(bool(r["caption_correct"]) and (r["silhouette_iou"] or 0) >= 0.8 for r in edits)
        >= 0.8 * len(edits),
        "additions_keep_25db": bool(adds) and all(r["fidelity_psnr"] >= 25.0 for r in adds),
    }


def finish(
    rows: list[dict], argv: list[str] | None, threads: int | None, out: Path, wall_s: float
) -> dict:
    """Print the summary table and write the results file with the bars' verdicts."""
    summary = summarise(rows)
    print(
        f"\n{'method':10s} {'right':>6s} {'IoU':>6s} {'fid dB':>7s} {'dir':>6s} {'cons':>6s} "
        f"{'s':>5s}"
    )
    for method, s in summary.items():
        print(
            f"{method:10s} {s['caption_correct']:6.2f} {s['silhouette_iou']:6.3f} "
            f"{s['fidelity_psnr']:7.1f} {s['clip_direction']:6.3f} "
            f"{s['clip_consistency']:6.3f} {s['seconds']:5.0f}"
        )
    bars = bar_verdicts(rows)
    from run_info import command_line, machine, write_verdict

    result = {
        "command": command_line("edit.py", argv),
        "machine": machine(threads),
        "date": time.strftime("%Y-%m-%d"),
        "summary": summary,
        "rows": rows,
        "bars": bars,
        "all_pass": all(bars.values()),
        "wall_s": wall_s,
    }
    write_verdict(out, result)
    return result


if __name__ == "__main__":
    main()
