"""The summary of benchmarks/handles.py: means per method and group, the paper's ordering,
and the printed tables (split from the runs, as generate_report.py is from generate.py)."""

from __future__ import annotations

from typing import Any

GROUPS = ("translate", "rotate", "rotate_30", "rotate_45", "scale", "all")
"""Rows of the summary: the kinds, rotations by angle (unseen surfaces grow with it), all."""
METRICS = (
    "object_iou",
    "geometry_iou",
    "background_psnr",
    "object_l1",
    "cycle_l1_x10",
    "cycle_feature",
    "edit_s",
)


def mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def summarise(rows: list[dict], methods: list[str]) -> dict[str, dict[str, dict]]:
    """Mean of every metric per method and group (:data:`GROUPS`; None for no cases)."""
    out: dict[str, dict[str, dict]] = {}
    for method in methods:
        out[method] = {}
        for group in GROUPS:
            chosen = [r["methods"][method] for r in rows if group in ("all", *r["groups"])]
            out[method][group] = {m: mean([s.get(m) for s in chosen]) for m in METRICS}
            out[method][group]["cases"] = len(chosen)
    return out


def summarise_fidelity(rows: list[dict]) -> dict[str, float | None]:
    """Mean and worst of what the model loses before any edit: the VAE's round trip of each
    input and the shared inversion's reconstruction (PSNR, dB)."""
    out: dict[str, float | None] = {}
    for key in ("vae_round_trip_psnr", "inversion_psnr"):
        values = [r["fidelity"][key] for r in rows if key in r.get("fidelity", {})]
        out[key] = mean(values)
        out[f"{key}_min"] = min(values) if values else None
    return out


def show_fidelity(fidelity: dict[str, float | None]) -> None:
    print(
        f"\nfidelity of the inputs: VAE round trip {fmt(fidelity['vae_round_trip_psnr'], '.2f')} dB"
        f" (worst {fmt(fidelity['vae_round_trip_psnr_min'], '.2f')}), inversion's"
        f" reconstruction {fmt(fidelity['inversion_psnr'], '.2f')} dB"
        f" (worst {fmt(fidelity['inversion_psnr_min'], '.2f')})"
    )


def _compare(a: float | None, b: float | None, lower_is_better: bool) -> bool | None:
    if a is None or b is None:
        return None
    return a < b if lower_is_better else a > b


def paper_ordering(summary: dict) -> dict[str, Any]:
    """Does feature guidance beat depth-only on identity, and 3D beat 2D on rotations?"""
    out: dict[str, Any] = {}
    if "handles" in summary and "depth_only" in summary:
        h, d = summary["handles"]["all"], summary["depth_only"]["all"]
        checks = {
            m: _compare(h[m], d[m], True) for m in ("object_l1", "cycle_l1_x10", "cycle_feature")
        }
        known = [v for v in checks.values() if v is not None]
        out["identity_vs_depth_only"] = {"checks": checks, "holds": bool(known) and all(known)}
    if "handles" in summary and "warp_paste_2d" in summary:
        h, w = summary["handles"]["rotate"], summary["warp_paste_2d"]["rotate"]
        out["rotation_vs_warp_paste_2d"] = {
            "handles_object_iou": h["object_iou"],
            "warp_paste_2d_object_iou": w["object_iou"],
            "holds": _compare(h["object_iou"], w["object_iou"], False),
        }
    return out


# ---------------------------------------------------------------------- printing
def fmt(v: float | None, spec: str) -> str:
    return "   –  " if v is None else format(v, spec)


def show_table(summary: dict) -> None:
    head = (
        "method         kind        n   obj IoU  geo IoU  bg PSNR  obj L1  "
        "cyc L1×10  cyc feat  s/edit"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for method, kinds in summary.items():
        for kind, s in kinds.items():
            if not s["cases"]:
                continue
            print(
                f"{method:14s} {kind:9s} {s['cases']:3d}   {fmt(s['object_iou'], '6.3f')}   "
                f"{fmt(s['geometry_iou'], '6.3f')}   {fmt(s['background_psnr'], '6.2f')}  "
                f"{fmt(s['object_l1'], '6.3f')}  {fmt(s['cycle_l1_x10'], '8.3f')}   "
                f"{fmt(s['cycle_feature'], '7.4f')}  {fmt(s['edit_s'], '6.1f')}"
            )


def show_ordering(ordering: dict) -> None:
    if "identity_vs_depth_only" in ordering:
        o = ordering["identity_vs_depth_only"]
        parts = ", ".join(
            f"{k} {'yes' if v else 'no' if v is not None else '–'}" for k, v in o["checks"].items()
        )
        print(
            f"paper ordering holds? identity, handles better than depth_only: "
            f"{'yes' if o['holds'] else 'no'} ({parts})"
        )
    if "rotation_vs_warp_paste_2d" in ordering:
        o = ordering["rotation_vs_warp_paste_2d"]
        print(
            "paper ordering holds? rotations, handles object IoU above warp_paste_2d: "
            f"{'yes' if o['holds'] else 'no'} ({fmt(o['handles_object_iou'], '.3f')} vs "
            f"{fmt(o['warp_paste_2d_object_iou'], '.3f')})"
        )


def show_timing(t: dict) -> None:
    total = t["total_s"]
    split = ", ".join(
        f"{k[:-2]} {t[k]:.1f} s ({100 * t[k] / max(total, 1e-9):.0f} %)"
        for k in ("geometry_s", "inversion_s", "recording_s", "guided_s")
        if k in t
    )
    print(
        f"one edit, {t['resolution']}×{t['resolution']}, {t['steps']} steps, "
        f"{t['threads']} thread(s): {total:.1f} s = {split}"
    )
