"""Summaries and tables of benchmarks/generate.py: the bars, GE3D against ISM and SDS at equal
time, the iteration-time split, and the printed tables (kept apart from the runs so a results
file can be re-summarised, e.g. by ``--merge``)."""

from __future__ import annotations

import statistics
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(width=170)  # the table stays whole when printed into a log

BARS = {
    "fast_generation_s": 300.0,
    "single_iou": 0.8,
    "single_r_precision": 0.9,
    "composition_iou": 0.7,
    "shape_accuracy": 0.9,
    "colour_accuracy": 0.9,
    "prior_fraction": 0.5,
}


# ---------------------------------------------------------------------- summaries
def _mean(values: list[Any]) -> float | None:
    values = [float(v) for v in values if v is not None]
    return statistics.fmean(values) if values else None


def time_to_reach(curve: list[dict[str, float]], target: float) -> float | None:
    """Training seconds until the quick IoU first reaches ``target`` (None: never)."""
    return next((p["time_s"] for p in curve if p["iou"] >= target - 1e-9), None)


def compare(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """GE3D against ISM and SDS per field: quality at equal time and the time each takes to
    reach SDS's final quick IoU on the same caption."""
    out: dict[str, Any] = {}
    for field in sorted({r["field"] for r in rows}):
        mine = [r for r in rows if r["field"] == field and "error" not in r]
        guidances = sorted({r["guidance"] for r in mine})
        quality = {
            g: {
                k: _mean([r[k] for r in mine if r["guidance"] == g])
                for k in (
                    "silhouette_iou",
                    "colour_error",
                    "clip_similarity",
                    "clip_r_precision",
                    "shape_correct",  # single objects only (None elsewhere): shape accuracy
                    "colour_correct",
                )
            }
            for g in guidances
        }
        field_out: dict[str, Any] = {"quality": quality}
        for other in ("ism", "sds"):
            if "ge3d" in quality and other in quality:
                a, b = quality["ge3d"], quality[other]
                better = {
                    k: (a[k] < b[k] if k == "colour_error" else a[k] > b[k])
                    for k in a
                    if a[k] is not None and b[k] is not None
                }
                field_out[f"ge3d_beats_{other}"] = better
        reach: dict[str, dict[str, float | None]] = {g: {} for g in guidances}
        for r in mine:
            sds = next(
                (
                    s
                    for s in mine
                    if s["guidance"] == "sds" and s["caption"] == r["caption"] and s["eval_curve"]
                ),
                None,
            )
            if sds is not None and r["eval_curve"]:
                target = sds["eval_curve"][-1]["iou"]
                reach[r["guidance"]][r["caption"]] = time_to_reach(r["eval_curve"], target)
        field_out["time_to_sds_final"] = {
            g: {
                "per_caption": times,
                "reached": sum(t is not None for t in times.values()) / max(len(times), 1),
                "median_s": statistics.median([t for t in times.values() if t is not None])
                if any(t is not None for t in times.values())
                else None,
            }
            for g, times in reach.items()
        }
        out[field] = field_out
    return out


def split_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in sorted({(r["guidance"], r["field"]) for r in rows if "split" in r}):
        mine = [r["split"] for r in rows if (r["guidance"], r["field"]) == key and "split" in r]
        parts = mine[0]["fractions"].keys()
        out["/".join(key)] = {
            "fractions": {k: _mean([s["fractions"][k] for s in mine]) for k in parts},
            "prior_fraction": _mean([s["prior_fraction"] for s in mine]),
            "seconds_per_iteration": _mean([s["seconds_per_iteration"] for s in mine]),
        }
    return out


def bars(fast: list[dict[str, Any]], splits: dict[str, Any]) -> dict[str, Any]:
    ok = [r for r in fast if "error" not in r]
    single = [r for r in ok if r["objects"] == 1]
    compositions = [r for r in ok if r["objects"] > 1]

    def frac(rows: list[dict[str, Any]], key: str) -> float | None:
        return sum(bool(r[key]) for r in rows) / len(rows) if rows else None

    measured = {
        "fast_generation_s": max((r["generation_s"] for r in ok), default=None),
        "single_iou": _mean([r["silhouette_iou"] for r in single]),
        "single_r_precision": _mean([r["clip_r_precision"] for r in single]),
        "composition_iou": _mean([r["silhouette_iou"] for r in compositions]),
        "shape_accuracy": frac(single, "shape_correct"),
        "colour_accuracy": frac(single, "colour_correct"),
    }
    for field in ("gaussians", "nerf"):
        measured[f"prior_fraction_{field}"] = splits.get(f"ge3d/{field}", {}).get("prior_fraction")
    result = {}
    for name, value in measured.items():
        bar = BARS["prior_fraction" if name.startswith("prior_fraction") else name]
        passed = None if value is None else (value <= bar if name.endswith("_s") else value >= bar)
        result[name] = {"value": value, "bar": bar, "pass": passed}
    return result


# ---------------------------------------------------------------------- printing
def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def run_line(r: dict[str, Any]) -> str:
    head = f"{r['set']:5s} {r['guidance']:4s} {r['field']:9s} {r['caption']:45s}"
    if "error" in r:
        return f"{head} error: {r['error']}"
    return (
        f"{head} {r['steps_done']:4d}/{r['steps_planned']:<4d} IoU {_num(r['silhouette_iou'])} "
        f"colour err {_num(r['colour_error'])} shape {_num(r['shape_correct'])} colour "
        f"{_num(r['colour_correct'])} R-prec {_num(r['clip_r_precision'])} prior "
        f"{100 * r['split']['prior_fraction']:.0f}% train {r['train_s']:.1f} s "
        f"generation {r['generation_s']:.1f} s"
    )


def print_rows(title: str, rows: list[dict[str, Any]]) -> None:
    table = Table(title=title)
    for name in ("caption", "guid.", "field", "steps", "IoU", "col.err", "shape", "colour"):
        table.add_column(name)
    for name in ("clip", "R-prec", "prior %", "s/it", "train s"):
        table.add_column(name)
    for r in rows:
        if "error" in r:
            table.add_row(r["caption"], r["guidance"], r["field"], "error: " + r["error"])
            continue
        table.add_row(
            r["caption"],
            r["guidance"],
            r["field"],
            f"{r['steps_done']}/{r['steps_planned']}",
            _num(r["silhouette_iou"]),
            _num(r["colour_error"]),
            _num(r["shape_correct"]),
            _num(r["colour_correct"]),
            _num(r["clip_similarity"]),
            _num(r["clip_r_precision"]),
            f"{100 * r['split']['prior_fraction']:.0f}",
            _num(r["split"]["seconds_per_iteration"], 2),
            _num(r["train_s"], 1),
        )
    console.print(table)


def print_summary(result: dict[str, Any]) -> None:
    for field, c in result["comparison"].items():
        for g, q in c["quality"].items():
            reach = c["time_to_sds_final"].get(g, {})
            console.print(
                f"{field:9s} {g:5s} IoU {_num(q['silhouette_iou'])}  colour err "
                f"{_num(q['colour_error'])}  clip {_num(q['clip_similarity'])}  R-prec "
                f"{_num(q['clip_r_precision'])}  shape acc. {_num(q['shape_correct'])}  "
                f"colour acc. {_num(q['colour_correct'])}  reaches SDS's final IoU on "
                f"{100 * reach.get('reached', 0):.0f}% (median {_num(reach.get('median_s'), 1)} s)"
            )
        for other in ("ism", "sds"):
            if f"ge3d_beats_{other}" in c:
                console.print(f"  GE3D better than {other.upper()}: {c[f'ge3d_beats_{other}']}")
    for key, s in result["iteration_split"].items():
        parts = "  ".join(f"{k} {100 * v:.0f}%" for k, v in s["fractions"].items() if v >= 0.005)
        console.print(f"split {key:15s} prior {100 * s['prior_fraction']:.0f}% | {parts}")
    for name, b in result["bars"].items():
        verdict = {True: "pass", False: "FAIL", None: "n/a"}[b["pass"]]
        console.print(f"bar {name:22s} {_num(b['value'])} (bar {b['bar']}) {verdict}")


def print_report(result: dict[str, Any]) -> None:
    """Both run tables, then the comparison, the split and the bars."""
    runs = result["runs"]
    print_rows("equal wall-clock budget", [r for r in runs if r["set"] == "equal"])
    print_rows("fast preset, GE3D on Gaussians", [r for r in runs if r["set"] == "fast"])
    print_summary(result)
