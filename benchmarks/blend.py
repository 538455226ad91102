"""Blend benchmark: BlendNeRF on pairs of held-out world heads, against the composed truth.

    .venv/bin/python benchmarks/blend.py [--pairs 20] [--threads 2] [--shard 0/2]
    .venv/bin/python benchmarks/blend.py --merge     # after shards: one table from all
    .venv/bin/python benchmarks/blend.py --rescore   # blend.json summarised again, no blending

Prints a table and writes benchmarks/results/blend.json (a shard writes blend-shard-K.json).

Pairs: held-out heads (seeds 200-249, never trained on), drawn from a fixed seed, each with
a part to blend (hair, nose, eyes, glasses, face, in turn) chosen so the part differs between
the two heads (hair pairs without hats, glasses pairs whose reference wears them), yaw gaps
from 5° to 45°, and on every fourth pair a reference made 10 % larger or smaller by the
world's ``scale`` attribute (what ICP must recover: these pairs are the original's own head
wearing the other's part, so the true scale is exact). The truth is the world's composed head
(the original's identity, the reference's part) under the original's light.

Each pair is inverted once (fast preset: W, W+, joint PTI) and blended six ways:

* ``ours``: BlendNeRF (global + ICP alignment, image + density terms);
* ``ours_no_icp``: global alignment only; ``ours_no_density``: the image term only;
* ``ours_poisson``: the paper's "ours + Poisson" variant;
* ``paste_2d`` and ``poisson_2d``: the unaligned reference pasted / Poisson-blended in 2D;
* two floors, no blending at all: ``unchanged_2d`` (the original image) and
  ``unblended_3d`` (the original's inverted latent rendered).

Scores: PSNR against the truth at the original's view (all) and at four novel views (3D
methods); the paper's masked L2 and masked perceptual distance (inside against the aligned
reference, outside against the original); KID in toy-clip's feature space against the
truths; ICP's scale against the scale the true surfaces give and against the world's
``scale`` ratio. Bars (the blend issue): one blend (both inversions + blending) ≤ 5 min;
ours beats 2D Poisson on PSNR for ≥ 75 % of pairs with a yaw gap ≥ 20°; ICP's scale within
5 % of the true ratio where the world changed it. Beside the bar's figure, the wins over the
pairs whose part the original's view shows (:data:`VISIBLE_PIXELS`).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch
from run_info import write_results

from dreamlift.errors import DataError
from dreamlift.methods.blend.baselines import paste_2d, poisson_2d, region_2d
from dreamlift.methods.blend.config import preset_config
from dreamlift.methods.blend.inputs import BlendRequest, load_inputs
from dreamlift.methods.blend.phases import align_reference, blend_pair, invert_pair
from dreamlift.methods.blend.scores import (
    NOVEL_POSES,
    masked_errors,
    true_surface_scale,
    truth_views,
)
from dreamlift.methods.invert.inputs import pose_cameras
from dreamlift.methods.invert.run import load_generator
from dreamlift.metrics.image import masked_psnr
from dreamlift.metrics.perceptual import load_feature_distance
from dreamlift.utils.numerics import flush_denormals
from dreamlift.utils.process import configure_process
from dreamlift.world.heads import HELD_OUT_HEADS, PART_ATTRIBUTES, head_params
from dreamlift.zoo.recipes.head_nets import load_head_net

RESULTS = Path(__file__).parent / "results"
PARTS = ("hair", "nose", "eyes", "glasses", "face")
GAPS = (5.0, 15.0, 25.0, 35.0, 45.0, 20.0, 30.0, 40.0)
METHODS_3D = ("ours", "ours_no_icp", "ours_no_density", "ours_poisson")
METHODS_2D = ("paste_2d", "poisson_2d")
FLOORS = ("unchanged_2d", "unblended_3d")
"""What doing nothing scores: the original image itself, and the original's inverted latent
rendered (every 3D method's starting point). On a pair whose part looks alike at the
original's view the first is near the truth and no blend can beat it."""
METHODS = (*METHODS_3D, *METHODS_2D, *FLOORS)
BARS = {"blend_s": 300.0, "wins_vs_poisson_2d": 0.75, "icp_scale_error": 0.05}
VISIBLE_CHANGE = 0.1
VISIBLE_PIXELS = 16
"""A pair *shows its part* when the composed truth differs from the original image, at the
original's view, by more than ``VISIBLE_CHANGE`` in some channel on at least
``VISIBLE_PIXELS`` pixels (a 4×4 patch at 64²). Judged from the world alone, before any
method runs: at 64² a world nose moves 0-10 pixels that much and a bun behind the head none,
so on such a pair the original itself is the answer and the pair tests no blending."""


def _differs(a, b, part: str) -> bool:  # noqa: ANN001
    if part == "hair":
        return (
            not a.hat
            and not b.hat
            and b.hair != "none"
            and (a.hair, a.hair_colour) != (b.hair, b.hair_colour)
        )
    if part == "glasses":
        return b.glasses and not a.glasses
    if part == "nose":
        return abs(a.nose_length - b.nose_length) > 0.004
    if part == "eyes":
        return a.eye_colour != b.eye_colour
    return a.skin_tone != b.skin_tone


def visible_pixels(original: torch.Tensor, truth: torch.Tensor) -> int:
    """Pixels where the truth (3, R, R) differs from the original by more than
    :data:`VISIBLE_CHANGE` in some channel."""
    return int(((truth - original).abs().amax(dim=0) > VISIBLE_CHANGE).sum())


def part_assignments(params, part: str) -> str:  # noqa: ANN001
    """``--reference-set`` text giving a head ``params``' attributes of ``part``."""
    values = []
    for name in PART_ATTRIBUTES[part]:
        value = getattr(params, name)
        values.append(f"{name}={('yes' if value else 'no') if isinstance(value, bool) else value}")
    return ",".join(values)


def make_pairs(n: int, seed: int = 0) -> list[dict]:
    """``n`` pairs of held-out heads, deterministic in ``seed``. Every fourth pair is a scale
    pair: the reference is the original's own head wearing the other head's part, made 10 %
    larger or smaller, so the true ICP scale is exactly the inverse of that change (pairs of
    two heads differ in proportions too, and have no one true scale)."""
    rng = random.Random(seed)
    heads = list(HELD_OUT_HEADS)
    pairs = []
    while len(pairs) < n:
        i = len(pairs)
        part = PARTS[i % len(PARTS)]
        a, b = rng.sample(heads, 2)
        if not _differs(head_params(a), head_params(b), part):
            continue
        yaw = round(rng.uniform(-20, 20), 1)
        gap = GAPS[i % len(GAPS)] * (1 if rng.random() < 0.5 else -1)
        reference, changes = b, ""
        if i % 4 == 3:  # a scale pair: the original's own head, b's part, sized by the world
            scale = 1.1 if rng.random() < 0.5 else 0.9
            reference, changes = a, f"scale={scale}," + part_assignments(head_params(b), part)
        pairs.append(
            {
                "index": i,
                "head": a,
                "reference_head": reference,
                "part": part,
                "yaw": yaw,
                "reference_yaw": round(yaw + gap, 1),
                "gap": abs(gap),
                "reference_set": changes,
            }
        )
    return pairs


def run_pair(spec: dict, cfg, gen, parser, distance) -> dict:  # noqa: ANN001
    request = BlendRequest(
        head=spec["head"],
        yaw=spec["yaw"],
        pitch=10.0,
        reference_head=spec["reference_head"],
        reference_yaw=spec["reference_yaw"],
        reference_pitch=10.0,
        reference_set=spec["reference_set"],
        part=spec["part"],
        config=cfg,
    )
    part = spec["part"]
    original, reference = load_inputs(request)
    t0 = time.perf_counter()
    pair = invert_pair(gen, original, reference, cfg, distance)
    inversion_s = time.perf_counter() - t0
    truth = truth_views(request, original, [original.pose, *NOVEL_POSES], cfg.resolution)
    cams = pose_cameras(NOVEL_POSES, cfg.resolution)
    variants = {
        "ours": cfg,
        "ours_no_icp": replace(cfg, align=replace(cfg.align, enabled=False)),
        "ours_no_density": replace(cfg, density_weight=0.0),
        "ours_poisson": replace(cfg, variant="poisson"),
    }
    out: dict = {**spec, "inversion_s": inversion_s, "methods": {}}
    ours_alignment = None
    for name, vcfg in variants.items():
        t0 = time.perf_counter()
        try:
            alignment = align_reference(pair, original, vcfg, parser, part, None)
        except DataError as exc:  # the part is not in the inverted images: nothing to blend
            out["methods"][name] = {"failed": str(exc), "seconds": time.perf_counter() - t0}
            out.setdefault("images", {})[name] = original.image
            continue
        result = blend_pair(pair, original, alignment, vcfg, distance, part)
        seconds = time.perf_counter() - t0
        with torch.no_grad():
            novel = pair.generator.render(
                pair.generator.synthesis(result.ws), cams, warp=result.rays
            ).rgb
        scores = {
            "psnr_view": masked_psnr(result.image[0], truth[0]),
            "psnr_novel": statistics.mean(
                masked_psnr(novel[i], truth[i + 1]) for i in range(len(NOVEL_POSES))
            ),
            "seconds": seconds,
            **masked_errors(
                result.image, original.image, alignment.aligned, alignment.mask, distance
            ),
        }
        if name == "ours":
            ours_alignment = alignment
            scores["icp"] = alignment.warp.to_json()
        out["methods"][name] = scores
        out.setdefault("images", {})[name] = result.image
    mask_2d = region_2d(parser, original.image, reference.image, part)
    with torch.no_grad():
        planes = pair.generator.synthesis(pair.ws_original)
        unblended_novel = pair.generator.render(planes, cams).rgb
        unblended = pair.generator.render(planes, original.camera(cfg.resolution)).rgb.cpu()
    baselines = {
        "paste_2d": paste_2d(original.image, reference.image, mask_2d),
        "poisson_2d": poisson_2d(original.image, reference.image, mask_2d),
        "unchanged_2d": original.image,
        "unblended_3d": unblended,
    }
    for name, image in baselines.items():
        out["methods"][name] = {"psnr_view": masked_psnr(image[0], truth[0])}
        if name == "unblended_3d":
            out["methods"][name]["psnr_novel"] = statistics.mean(
                masked_psnr(unblended_novel[i], truth[i + 1]) for i in range(len(NOVEL_POSES))
            )
        if ours_alignment is not None:
            out["methods"][name].update(
                masked_errors(
                    image, original.image, ours_alignment.aligned, ours_alignment.mask, distance
                )
            )
        out["images"][name] = image
    out["truth_view"] = truth[:1]
    out["blend_s"] = inversion_s + out["methods"]["ours"]["seconds"]
    out["region_2d_pixels"] = int(mask_2d.sum())
    out.update(true_surface_scale(request, original, cfg))
    return out


def _kid(records: list[dict]) -> dict[str, float]:
    """KID of each method's blends against the truths, in toy-clip's feature space."""
    from dreamlift.metrics.clip import ClipScorer
    from dreamlift.metrics.fid import fid_kid

    scorer = ClipScorer.load("toy-clip")
    real = torch.cat([r["truth_view"] for r in records]).permute(0, 2, 3, 1)
    out = {}
    for name in METHODS:
        fake = torch.cat([r["images"][name] for r in records]).permute(0, 2, 3, 1)
        out[name] = fid_kid(real, fake, scorer)["kid_mean"]
    return out


def _wins(records: list[dict], name: str) -> int:
    return sum(
        r["methods"][name].get("psnr_view", -1.0) > r["methods"]["poisson_2d"]["psnr_view"]
        for r in records
    )


def summarise(records: list[dict], kid: dict[str, float] | None) -> dict:
    table = {}
    wide = [r for r in records if r["gap"] >= 20]
    shown = [r for r in wide if r["visible_pixels"] >= VISIBLE_PIXELS]
    for name in METHODS:
        rows = [r["methods"][name] for r in records if "failed" not in r["methods"][name]]
        keys = sorted({k for row in rows for k, v in row.items() if isinstance(v, float)})
        entry = {k: statistics.mean(row[k] for row in rows if k in row) for k in keys}
        entry["failed"] = len(records) - len(rows)
        for key, group in (("gap20", wide), ("gap20_shown", shown)):
            if group:  # a failed blend counts as a loss
                entry[f"wins_vs_poisson_2d_{key}"] = _wins(group, name) / len(group)
        if kid:
            entry["kid"] = kid[name]
        table[name] = entry
    ok = [r for r in records if "icp" in r["methods"]["ours"]]
    scaled = [r for r in ok if r["world_scale_ratio"] != 1.0]
    icp = {
        "scale_error_vs_world": [
            abs(r["methods"]["ours"]["icp"]["scale"] / r["world_scale_ratio"] - 1) for r in scaled
        ],
        "scale_error_vs_true_surfaces": [
            abs(r["methods"]["ours"]["icp"]["scale"] / r["true_icp_scale"] - 1)
            for r in ok
            if r["true_icp_scale"]
        ],
        "fell_back": sum(r["methods"]["ours"]["icp"]["fell_back"] for r in ok),
    }
    by_gap = {}
    for lo, hi in ((0, 20), (20, 35), (35, 46)):
        group = [r for r in records if lo <= r["gap"] < hi]
        if group:
            by_gap[f"{lo}-{hi}"] = {
                name: statistics.mean(
                    r["methods"][name]["psnr_view"]
                    for r in group
                    if "psnr_view" in r["methods"][name]
                )
                for name in ("ours", "poisson_2d", "paste_2d", "unchanged_2d")
                if any("psnr_view" in r["methods"][name] for r in group)
            }
    return {
        "methods": table,
        "icp": icp,
        "by_gap": by_gap,
        "pairs": len(records),
        "pairs_gap20": len(wide),
        "pairs_gap20_shown": len(shown),
        "blend_s": statistics.mean(r["blend_s"] for r in records),
        "blend_s_max": max(r["blend_s"] for r in records),
    }


def show(summary: dict, n: int) -> None:
    print(f"\n{n} pairs; mean over pairs (PSNR against the composed truth)")
    cols = ("psnr_view", "psnr_novel", "masked_l2_inside", "masked_l2_outside", "kid", "failed")
    wins = ("wins_vs_poisson_2d_gap20", "wins_vs_poisson_2d_gap20_shown")
    labels = (*cols, "wins gap≥20°", "wins gap≥20° shown")
    print(f"{'method':18s}" + "".join(f"{c:>20s}" for c in labels))
    for name, entry in summary["methods"].items():
        cells = [entry.get(c) for c in (*cols, *wins)]
        print(
            f"{name:18s}" + "".join(f"{c:20.4f}" if c is not None else f"{'-':>20s}" for c in cells)
        )
    print(
        f"wins: over the {summary['pairs_gap20']} pairs with a gap ≥ 20°, and over the "
        f"{summary['pairs_gap20_shown']} of them whose part changes ≥ {VISIBLE_PIXELS} pixels "
        "of the original's view (shown)"
    )
    print("PSNR at the original's view by yaw gap:", json.dumps(summary["by_gap"], indent=None))
    icp = summary["icp"]
    for key in ("scale_error_vs_world", "scale_error_vs_true_surfaces"):
        errs = icp[key]
        if errs:
            print(f"ICP {key}: mean {statistics.mean(errs):.3f}, max {max(errs):.3f} ({len(errs)})")
    print(f"ICP fell back on {icp['fell_back']} pairs")
    print(
        f"one blend (inversions + ours): mean {summary['blend_s']:.0f} s, "
        f"max {summary['blend_s_max']:.0f} s (bar ≤ {BARS['blend_s']:.0f} s)"
    )


def _plain(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in ("images", "truth_view")}


def _save_images(record: dict, folder: Path) -> None:
    torch.save(
        {"images": record["images"], "truth_view": record["truth_view"]},
        folder / f"pair-{record['index']:03d}.pt",
    )


@flush_denormals()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shard", default="0/1", help="K/N: run every N-th pair from K")
    parser.add_argument("--merge", action="store_true", help="combine the shards' results")
    parser.add_argument(
        "--rescore",
        action="store_true",
        help="summarise blend.json's pairs again from their saved images (no blending)",
    )
    parser.add_argument("--images", type=Path, default=Path(".zoo-cache/bench/blend-images"))
    args = parser.parse_args()
    configure_process()
    torch.set_num_threads(args.threads)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.merge or args.rescore:
        records, provenance = [], {}
        paths = [RESULTS / "blend.json"] if args.rescore else RESULTS.glob("blend-shard-*.json")
        for path in sorted(paths):
            saved = json.loads(path.read_text())
            records += saved["pairs"]
            if args.rescore:  # the blends keep the date and commit they were made at
                provenance = {
                    "blended": saved.get("blended")
                    or {k: saved[k] for k in ("date", "commit") if k in saved}
                }
        records.sort(key=lambda r: r["index"])
        for r in records:
            saved_images = args.images / f"pair-{r['index']:03d}.pt"
            if not saved_images.exists():
                raise SystemExit(f"error: {saved_images} is missing (the pair's run saves it)")
            r.update(torch.load(saved_images))
        finish(records, RESULTS / "blend.json", **provenance)
        return
    k, n = (int(v) for v in args.shard.split("/"))
    cfg = preset_config("fast")
    gen = load_generator(cfg.generator)
    parts_net = load_head_net("toy-parts")
    distance = load_feature_distance()
    args.images.mkdir(parents=True, exist_ok=True)
    records = []
    for spec in make_pairs(args.pairs)[k::n]:
        t0 = time.perf_counter()
        record = run_pair(spec, cfg, gen, parts_net, distance)
        _save_images(record, args.images)
        records.append(record)
        ours = record["methods"]["ours"]
        icp = ours.get("icp", {}).get("scale", float("nan"))
        print(
            f"pair {spec['index']:2d} {spec['head']}←{spec['reference_head']} {spec['part']:7s} "
            f"gap {spec['gap']:4.0f}° {spec['reference_set'] or '':9s} ours "
            f"{ours.get('psnr_view', float('nan')):.2f} / 2D Poisson "
            f"{record['methods']['poisson_2d']['psnr_view']:.2f} dB, ICP scale {icp:.3f} "
            f"(true {record['true_icp_scale'] or float('nan'):.3f}), "
            f"{time.perf_counter() - t0:.0f} s {ours.get('failed', '')}",
            flush=True,
        )
        path = RESULTS / (f"blend-shard-{k}.json" if n > 1 else "blend.json")
        if n > 1:
            path.write_text(json.dumps({"pairs": [_plain(r) for r in records]}, indent=1))
    if n == 1:
        finish(records, RESULTS / "blend.json")


def finish(records: list[dict], path: Path, **provenance: dict) -> None:
    for r in records:  # every record holds its images here: run, merged or rescored alike
        r["visible_pixels"] = visible_pixels(r["images"]["unchanged_2d"][0], r["truth_view"][0])
    summary = summarise(records, _kid(records))
    show(summary, len(records))
    write_results(
        path, **provenance, bars=BARS, summary=summary, pairs=[_plain(r) for r in records]
    )


if __name__ == "__main__":
    main()
