"""Parity and speed of the two Gaussian rasterisers on a GPU: dreamlift's pure-torch tiles
against gsplat's CUDA kernels, through the one ``rasterize_gaussians`` contract.

    python benchmarks/rasterize_cuda.py [--counts 4096 81920] [--views 4] [--resolution 512]
        [--repeats 5] [--out benchmarks/results/rasterize_cuda.json]

Both backends render the same random Gaussians (the paper preset's sizes: 81,920 at 512², four
views a step) and back-propagate the same loss, a fixed random weighting of the colour,
opacity and depth images, so every output channel's gradient is compared. Reported per count:
the largest pixel difference of each image (depth accumulated, i.e. times opacity), the
relative L2 error and cosine of each
parameter's gradient (gsplat's as the reference), and forward + backward time (CUDA events,
mean of ``--repeats`` after two warm-ups) with the peak memory. Needs CUDA and gsplat; exits
with code 2 and one line otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from run_info import machine

from dreamlift.cameras import DEFAULT_ORBIT, orbit_cameras
from dreamlift.fields.rasterize import rasterize_gaussians
from dreamlift.fields.splat_gsplat import gsplat_available

PARAMETERS = ("means", "quats", "log_scales", "opacities", "colors")
IMAGES = ("rgb", "opacity", "depth")


def random_gaussians(n: int, seed: int, device: torch.device) -> dict[str, torch.Tensor]:
    """A cloud like a mid-run object: radius 0.6, scales 0.005-0.05, opacities up to 0.9."""
    g = torch.Generator().manual_seed(seed)
    scale_max = 0.05 * math.sqrt(4096 / n) ** (1 / 1.5)  # smaller splats as the count grows
    values = {
        "means": (torch.rand(n, 3, generator=g) * 2 - 1) * 0.6,
        "quats": torch.randn(n, 4, generator=g),
        "log_scales": torch.log(torch.rand(n, 3, generator=g) * scale_max + 0.005),
        "opacities": torch.rand(n, generator=g) * 0.9,
        "colors": torch.rand(n, 3, generator=g),
    }
    return {k: v.to(device).requires_grad_(True) for k, v in values.items()}


def render_and_backward(
    params: dict[str, torch.Tensor], cameras, background, weights, backend: str
) -> dict[str, torch.Tensor]:
    for p in params.values():
        p.grad = None
    out = rasterize_gaussians(**params, cameras=cameras, background=background, backend=backend)
    loss = sum((out[k] * weights[k]).sum() for k in IMAGES)
    loss.backward()
    return out


def timed(fn, repeats: int) -> float:
    """Mean seconds of ``fn`` over ``repeats`` calls, after two warm-ups."""
    for _ in range(2):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(repeats):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1000 / repeats


def compare(n: int, views: int, resolution: int, repeats: int) -> dict:
    device = torch.device("cuda")
    params = random_gaussians(n, seed=n, device=device)
    azimuths = torch.linspace(0, 360, views + 1)[:views]
    cameras = orbit_cameras(
        azimuths,
        torch.full((views,), 20.0),
        DEFAULT_ORBIT.radius,
        DEFAULT_ORBIT.fov_deg,
        resolution,
    )
    cameras = cameras.to(device)
    background = torch.tensor([1.0, 1.0, 1.0], device=device)
    g = torch.Generator().manual_seed(7)
    shapes = {"rgb": 3, "opacity": 1, "depth": 1}
    weights = {
        k: torch.rand(views, resolution, resolution, c, generator=g).to(device)
        for k, c in shapes.items()
    }
    results, grads, images = {}, {}, {}
    for backend in ("gsplat", "torch"):
        out = render_and_backward(params, cameras, background, weights, backend)
        images[backend] = {k: out[k].detach() for k in IMAGES}
        grads[backend] = {k: params[k].grad.detach().clone() for k in PARAMETERS}
        torch.cuda.reset_peak_memory_stats()
        seconds = timed(
            lambda b=backend: render_and_backward(params, cameras, background, weights, b),
            repeats,
        )
        results[backend] = {
            "forward_backward_s": seconds,
            "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30,
        }
    # Depth is normalised by opacity, so at nearly empty pixels (opacity ~1e-4 in one backend,
    # 0 in the other) it jumps between 0 and the z of a single faint splat: the accumulated
    # depth (depth × opacity) is the quantity both composite, and the one compared.
    for b in images.values():
        b["depth"] = b["depth"] * b["opacity"]
    image_diff = {k: float((images["torch"][k] - images["gsplat"][k]).abs().max()) for k in IMAGES}
    gradient = {}
    for k in PARAMETERS:
        ours, ref = grads["torch"][k].flatten(), grads["gsplat"][k].flatten()
        gradient[k] = {
            "relative_l2": float((ours - ref).norm() / ref.norm().clamp_min(1e-20)),
            "cosine": float(torch.nn.functional.cosine_similarity(ours, ref, dim=0)),
        }
    return {
        "gaussians": n,
        "views": views,
        "resolution": resolution,
        "image_max_abs_diff": image_diff,
        "gradient": gradient,
        "backends": results,
        "torch_over_gsplat_time": results["torch"]["forward_backward_s"]
        / results["gsplat"]["forward_backward_s"],
    }


def print_row(row: dict) -> None:
    d, gr, b = row["image_max_abs_diff"], row["gradient"], row["backends"]
    print(
        f"{row['gaussians']:7d} Gaussians, {row['views']} × {row['resolution']}²: "
        f"max |Δ| rgb {d['rgb']:.2e} opacity {d['opacity']:.2e} depth {d['depth']:.2e}",
        flush=True,
    )
    print(
        "    gradient rel. L2 / cosine: "
        + ", ".join(f"{k} {v['relative_l2']:.3f}/{v['cosine']:.4f}" for k, v in gr.items()),
        flush=True,
    )
    print(
        f"    forward+backward: gsplat {1000 * b['gsplat']['forward_backward_s']:.1f} ms "
        f"({b['gsplat']['peak_memory_gb']:.2f} GB), torch "
        f"{1000 * b['torch']['forward_backward_s']:.1f} ms ({b['torch']['peak_memory_gb']:.2f} GB)"
        f" -> torch / gsplat {row['torch_over_gsplat_time']:.1f}×",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[4096, 81_920])
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "rasterize_cuda.json"
    )
    args = parser.parse_args()
    missing = (
        "a CUDA device"
        if not torch.cuda.is_available()
        else "gsplat (pip install 'dreamlift[cuda]')"
        if not gsplat_available()
        else None
    )
    if missing:
        print(f"error: rasterize_cuda.py needs {missing}", file=sys.stderr)
        sys.exit(2)
    started = time.time()
    rows = []
    for n in args.counts:
        rows.append(compare(n, args.views, args.resolution, args.repeats))
        print_row(rows[-1])
    import gsplat

    result = {
        "command": "benchmarks/rasterize_cuda.py",
        "machine": {**machine(device=torch.cuda.get_device_name()), "gsplat": gsplat.__version__},
        "runs": rows,
        "wall_s": time.time() - started,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
