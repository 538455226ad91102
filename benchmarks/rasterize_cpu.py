"""The pure-torch Gaussian rasteriser on the CPU: binning by the splat's ellipse against binning
by its (opacity-aware) 3σ box, on the Gaussians of real text-to-3D runs.

    python benchmarks/rasterize_cpu.py [--caption "a red cube" ...] [--ply PATH ...]
        [--steps 600] [--views 12] [--resolution 64] [--repeats 3] [--threads 1] [--quick]
        [--out benchmarks/results/rasterize_cpu.json]

Scenes: the end state of a fast-preset SDS run on Gaussians per ``--caption`` (generated
first, about a minute each on one thread: SDS leaves many thin, faint splats, which is where
the binning matters), and any 3DGS ``--ply``. ``--quick``: two random clouds, a smoke test.

Both binnings render the same 64² views (orbit, elevation 15°) and back-propagate a fixed
random weighting of the colour image. Reported per scene: the (tile, Gaussian) pairs each
keeps over all views, forward + backward ms per view (best of ``--repeats``, the two modes
alternating in one process so machine load hits both alike), the speed ratio, and how far
images and gradients differ (the pairs dropped composite to nothing, so only float noise).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from rasterize_cuda import PARAMETERS, random_gaussians
from run_info import command_line, machine

from dreamlift.cameras import DEFAULT_ORBIT, Cameras, orbit_cameras
from dreamlift.fields.gaussians import SH_C0
from dreamlift.fields.rasterize import bin_views, project_gaussians, rasterize_gaussians
from dreamlift.io.ply import read_gaussians_ply
from dreamlift.utils.process import configure_process

MODES = {"box": False, "ellipse": True}
TILE_SIZE = 8  # the CPU default at 64² (GaussiansConfig.tile_size)


def gaussians_from_ply(path: Path) -> dict[str, torch.Tensor]:
    ply = read_gaussians_ply(path)
    return {
        "means": ply.means,
        "quats": ply.quats,
        "log_scales": ply.log_scales,
        "opacities": torch.sigmoid(ply.opacity_logits),
        "colors": (0.5 + SH_C0 * ply.features_dc[:, 0]).clamp(0.0, 1.0),
    }


def sds_end_state(caption: str, steps: int, folder: Path) -> Path:
    """Run the fast preset's SDS on Gaussians for ``steps`` steps; returns its gaussians.ply."""
    from dreamlift.methods.generate import build_config, generate

    cfg = build_config(
        "fast", prompt=caption, guidance="sds", steps=steps, score=False, turntable_frames=2
    )
    out = folder / caption.replace(" ", "_")
    generate(cfg, out, quiet=True)
    return out / "gaussians.ply"


def pair_counts(params: dict[str, torch.Tensor], cameras: list[Cameras]) -> dict[str, int]:
    """(tile, Gaussian) pairs over all views, binned exactly as the renderer bins them."""
    counts = dict.fromkeys(MODES, 0)
    log_opacity = torch.log(params["opacities"].detach().clamp(min=1e-10))
    for cam in cameras:
        with torch.no_grad():
            p = project_gaussians(params["means"], params["quats"], params["log_scales"], cam)
        for mode, ellipse in MODES.items():
            bins = bin_views(
                p,
                params["opacities"].detach(),
                log_opacity,
                cam.width,
                cam.height,
                TILE_SIZE,
                ellipse,
            )
            counts[mode] += int(bins.counts.sum())
    return counts


def render_all(params, cameras, weight, ellipse: bool) -> tuple[list, list]:
    images, grads = [], []
    for cam in cameras:
        for p in params.values():
            p.grad = None
        out = rasterize_gaussians(
            **params,
            cameras=cam,
            background=torch.ones(3),
            tile_size=TILE_SIZE,
            backend="torch",
            footprint_binning=ellipse,
        )
        (out["rgb"][0] * weight).sum().backward()
        images.append(out["rgb"].detach())
        grads.append({k: params[k].grad.clone() for k in PARAMETERS})
    return images, grads


def compare(name: str, params: dict, views: int, resolution: int, repeats: int) -> dict:
    params = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    azimuths = torch.linspace(0, 360, views + 1)[:views]
    cameras = [
        orbit_cameras(
            a[None], torch.tensor([15.0]), DEFAULT_ORBIT.radius, DEFAULT_ORBIT.fov_deg, resolution
        )
        for a in azimuths
    ]
    weight = torch.rand(resolution, resolution, 3, generator=torch.Generator().manual_seed(0))
    seconds = {mode: [] for mode in MODES}
    render_all(params, cameras[:1], weight, ellipse=True)  # warm-up: neither mode runs cold
    results = {}
    for _ in range(repeats):
        for mode, ellipse in MODES.items():
            start = time.perf_counter()
            results[mode] = render_all(params, cameras, weight, ellipse)
            seconds[mode].append((time.perf_counter() - start) / views)
    (img_box, grad_box), (img_ell, grad_ell) = results["box"], results["ellipse"]
    image_diff = max(float((a - b).abs().max()) for a, b in zip(img_box, img_ell, strict=True))
    grad_diff = max(
        float((a[k] - b[k]).abs().max() / b[k].abs().max().clamp_min(1e-20))
        for a, b in zip(grad_box, grad_ell, strict=True)
        for k in PARAMETERS
    )
    ms = {mode: 1000 * min(s) for mode, s in seconds.items()}
    return {
        "scene": name,
        "gaussians": int(params["means"].shape[0]),
        "views": views,
        "resolution": resolution,
        "pairs": pair_counts(params, cameras),
        "forward_backward_ms": ms,
        "speedup": ms["box"] / ms["ellipse"],
        "image_max_abs_diff": image_diff,
        "gradient_max_diff_over_max": grad_diff,
    }


def print_row(row: dict) -> None:
    pairs, ms = row["pairs"], row["forward_backward_ms"]
    print(
        f"{row['scene'][:28]:28s} {row['gaussians']:7d} {pairs['box']:9d} {pairs['ellipse']:9d}"
        f" ({pairs['ellipse'] / max(pairs['box'], 1):4.0%}) {ms['box']:7.1f} {ms['ellipse']:7.1f}"
        f" {row['speedup']:5.2f}x  {row['image_max_abs_diff']:.1e}"
        f"  {row['gradient_max_diff_over_max']:.1e}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--caption", action="append", help="Scene from an SDS run (repeat).")
    parser.add_argument("--ply", action="append", type=Path, help="A 3DGS .ply (repeat).")
    parser.add_argument("--steps", type=int, default=600, help="SDS steps per caption.")
    parser.add_argument("--views", type=int, default=12)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="Two random clouds, 2 views.")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "rasterize_cpu.json"
    )
    args = parser.parse_args(argv)
    configure_process()
    torch.set_num_threads(args.threads)
    started = time.time()
    scenes: list[tuple[str, dict]] = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.quick:
            args.views, args.repeats = 2, 1
            scenes = [
                (f"random {n}", random_gaussians(n, n, torch.device("cpu"))) for n in (500, 2000)
            ]
        for path in args.ply or []:
            scenes.append((str(path), gaussians_from_ply(path)))
        captions = args.caption if args.caption is not None else []
        if not scenes and not captions:
            captions = ["a red cube", "a yellow torus", "a green cone", "a blue sphere"]
        for caption in captions:
            print(f"SDS, fast preset, {args.steps} steps: {caption!r} ...", flush=True)
            scenes.append(
                (caption, gaussians_from_ply(sds_end_state(caption, args.steps, Path(tmp))))
            )
    print(
        f"{'scene':28s} {'N':>7s} {'pairs box':>9s} {'ellipse':>9s} {'kept':>6s} "
        f"{'ms box':>7s} {'ms ell.':>7s} {'ratio':>6s}  max|Δimg|  max|Δgrad|/max",
        flush=True,
    )
    rows = []
    for name, params in scenes:
        rows.append(compare(name, params, args.views, args.resolution, args.repeats))
        print_row(rows[-1])
    result = {
        "command": command_line("rasterize_cpu.py", argv),
        "machine": machine(args.threads),
        "tile_size": TILE_SIZE,
        "rows": rows,
        "wall_s": time.time() - started,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"-> {args.out}")
    return result


if __name__ == "__main__":
    main()
