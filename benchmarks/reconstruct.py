"""Reconstruction benchmark: both fields on world assets, held-out quality vs time, renderer speed.

    .venv/bin/python benchmarks/reconstruct.py [--fields gaussians nerf] [--resolutions 64 128]

Prints a table and writes benchmarks/results/reconstruct.json. Bars (issue 3): at 64² the
fast preset reaches held-out PSNR >= 28 dB and mask IoU >= 0.95 within 3 minutes per asset;
at 128², PSNR >= 26 dB within 6 minutes.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from dreamlift.cameras import sample_orbit, turntable
from dreamlift.fields.gaussians import GaussianField, GaussiansConfig
from dreamlift.fields.nerf import NerfConfig, NerfField
from dreamlift.methods.reconstruct import build_config, reconstruct
from dreamlift.utils.process import configure_process
from dreamlift.utils.timing import median_seconds

ASSETS = [
    "a yellow torus",
    "a red cube",
    "a green cone",
    "a purple pyramid",
    "a red cube with a blue sphere on top",
    "a green cone next to a white cylinder",
]
BARS = {64: (28.0, 0.95, 180.0), 128: (26.0, 0.0, 360.0)}


def fit_table(fields: list[str], resolutions: list[int], assets: list[str]) -> list[dict]:
    rows = []
    for res in resolutions:
        for field in fields:
            for asset in assets:
                cfg = build_config("fast", field=field, asset=asset, resolution=res)
                with tempfile.TemporaryDirectory() as tmp:
                    result = reconstruct(cfg, Path(tmp) / "run", quiet=True)
                    wall = json.loads((Path(tmp) / "run" / "summary.json").read_text())["timings"][
                        "wall_s"
                    ]
                m, t = result["metrics"], result["timings"]
                psnr_bar, iou_bar, time_bar = BARS.get(res, (0.0, 0.0, float("inf")))
                row = {
                    "field": field,
                    "resolution": res,
                    "asset": asset,
                    "steps": cfg.total_steps(),
                    "psnr": m["psnr"],
                    "ssim": m["ssim"],
                    "mask_iou": m["mask_iou"],
                    "train_s": t["train_s"],
                    "wall_s": wall,
                    "iterations_per_s": t.get("iterations_per_s", 0.0),
                    "split": {
                        k: t[k] / max(t["train_s"], 1e-9)
                        for k in ("render_s", "loss_s", "backward_s", "optimizer_s", "densify_s")
                    },
                    "pass": m["psnr"] >= psnr_bar and m["mask_iou"] >= iou_bar and wall <= time_bar,
                }
                rows.append(row)
                print(
                    f"{field:9s} {res:4d}  {asset:40s} PSNR {row['psnr']:6.2f}  "
                    f"SSIM {row['ssim']:.3f}  IoU {row['mask_iou']:.3f}  {row['wall_s']:6.1f}s  "
                    f"{row['iterations_per_s']:6.1f} it/s  "
                    f"{'pass' if row['pass'] else 'FAIL'}",
                    flush=True,
                )
    return rows


def render_speed() -> list[dict]:
    rows = []
    gen = torch.Generator().manual_seed(0)
    for n in (5_000, 50_000):
        field = GaussianField(GaussiansConfig(num_init=n), gen)
        for size in (64, 256):
            cams = turntable(1, size)

            def fwd(field=field, cams=cams):
                with torch.no_grad():
                    field.render(cams, torch.ones(3))

            def fwd_bwd(field=field, cams=cams):
                field.render(cams, torch.ones(3))["rgb"].sum().backward()

            rows.append(
                {
                    "renderer": f"gaussians {n // 1000}k",
                    "size": size,
                    "fps_forward": 1 / median_seconds(fwd, 3),
                    "fps_forward_backward": 1 / median_seconds(fwd_bwd, 3),
                }
            )
    nerf = NerfField(NerfConfig(), gen)
    # A fitted-like field: a solid ball so that occupancy skipping behaves as on real scenes.
    with torch.no_grad():
        r = nerf.density_grid.shape[-1]
        g = torch.linspace(-1, 1, r)
        zz, yy, xx = torch.meshgrid(g, g, g, indexing="ij")
        nerf.density_grid.copy_(
            torch.where((xx**2 + yy**2 + zz**2).sqrt() < 0.5, 10.0, -10.0)[None, None]
        )
        nerf.update_occupancy()
    for size in (64, 256):
        cams, _, _ = sample_orbit(1, size, generator=gen)
        nerf.eval()

        def nerf_fwd(cams=cams):
            with torch.no_grad():
                nerf.render(cams, torch.ones(3))

        rows.append(
            {
                "renderer": "nerf",
                "size": size,
                "fps_forward": 1 / median_seconds(nerf_fwd, 3),
                "fps_forward_backward": None,
            }
        )
    for row in rows:
        fb = row["fps_forward_backward"]
        print(
            f"{row['renderer']:14s} {row['size']:4d}²  forward {row['fps_forward']:7.1f} fps"
            + (f"  forward+backward {fb:7.1f} fps" if fb else ""),
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields", nargs="+", default=["gaussians", "nerf"])
    parser.add_argument("--resolutions", nargs="+", type=int, default=[64, 128])
    parser.add_argument("--assets", nargs="+", default=ASSETS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--skip-speed", action="store_true", help="Keep the renderer-speed rows of --out."
    )
    parser.add_argument("--speed-only", action="store_true", help="Keep the fit rows of --out.")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "reconstruct.json"
    )
    args = parser.parse_args()
    configure_process()
    torch.set_num_threads(args.threads)
    started = time.time()
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    speed = previous.get("render_speed", []) if args.skip_speed else render_speed()
    rows = (
        previous.get("fits", [])
        if args.speed_only
        else fit_table(args.fields, args.resolutions, args.assets)
    )
    result = {
        "command": "benchmarks/reconstruct.py",
        "machine": {
            "cpu_threads": args.threads,
            "platform": platform.platform(),
            "torch": torch.__version__,
        },
        "bars": {str(k): {"psnr": v[0], "mask_iou": v[1], "wall_s": v[2]} for k, v in BARS.items()},
        "fits": rows,
        "render_speed": speed,
        "all_pass": all(r["pass"] for r in rows),
        "wall_s": time.time() - started,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(
        f"\nall bars met: {result['all_pass']}   ({len(rows)} fits, "
        f"{result['wall_s'] / 60:.1f} min) -> {args.out}"
    )


if __name__ == "__main__":
    main()
