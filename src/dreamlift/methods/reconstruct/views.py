"""The posed views a reconstruction fits and is scored on: world renders (ground truth known)
or a ``transforms.json`` folder, split into training and held-out views."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from dreamlift.cameras import OrbitRange, sample_orbit
from dreamlift.errors import DreamliftError
from dreamlift.fields.base import Field
from dreamlift.io.transforms import PosedImages, normalize_scene, read_transforms
from dreamlift.methods.reconstruct.config import ReconstructConfig
from dreamlift.metrics import mask_iou, psnr, ssim
from dreamlift.world import RenderSettings, asset_from_caption, render

TEST_SEED_OFFSET = 10_007
"""The held-out cameras' seed is the run's plus this: other random cameras than training's."""


def world_views(cfg: ReconstructConfig) -> tuple[PosedImages, PosedImages]:
    """Training and held-out views of ``cfg.asset`` rendered by the world (ground truth)."""
    asset = asset_from_caption(cfg.asset or "")
    ranges = OrbitRange(elevation=cfg.elevation)
    settings = RenderSettings(supersample=cfg.supersample)
    out = []
    for n, seed in ((cfg.train_views, cfg.seed), (cfg.test_views, cfg.seed + TEST_SEED_OFFSET)):
        cams, _, _ = sample_orbit(n, cfg.resolution, ranges, torch.Generator().manual_seed(seed))
        r = render(asset, cams, settings)
        out.append(PosedImages(r["rgb"], cams, r["alpha"], r["depth"]))
    return out[0], out[1]


def data_views(cfg: ReconstructConfig) -> tuple[PosedImages, PosedImages]:
    """The frames of ``cfg.data``, every ``holdout_every``-th held out."""
    data = read_transforms(Path(cfg.data or ""))
    cams, _, _ = normalize_scene(data.cameras)
    data = PosedImages(data.images, cams, data.alphas, data.depths, data.names)
    n = len(data)
    test = [i for i in range(n) if cfg.holdout_every > 0 and i % cfg.holdout_every == 0 and n > 1]
    train = [i for i in range(n) if i not in test]
    if not train:
        raise DreamliftError(f"{cfg.data} has too few frames ({n}) to train on")
    return data.subset(train), data.subset(test or train[:1])


@torch.no_grad()
def evaluate(fld: Field, views: PosedImages) -> tuple[dict[str, float], dict[str, Tensor]]:
    """Held-out metrics of ``fld`` against ``views`` (mask IoU when alphas are known); the
    renders come back on the CPU, like ``views``."""
    was_training = fld.training
    fld.eval()
    device = next(fld.parameters()).device
    out = fld.render(views.cameras.to(device), torch.ones(3, device=device))
    out = {k: v.detach().cpu() for k, v in out.items()}
    fld.train(was_training)
    pred = out["rgb"].clamp(0, 1)
    metrics = {
        "psnr": float(psnr(pred, views.images).mean()),
        "ssim": float(ssim(pred, views.images).mean()),
    }
    if views.alphas is not None:
        metrics["mask_iou"] = float(mask_iou(out["opacity"], views.alphas).mean())
    return metrics, out
