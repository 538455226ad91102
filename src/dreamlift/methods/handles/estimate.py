"""Depth for images that come without it: a DPT depth estimator from a local folder.

Diffusion Handles estimates depth with ZoeDepth; here any transformers
``DPTForDepthEstimation`` folder serves (an SD2-depth pipeline ships one in
``depth_estimator/``, with its image processor in ``feature_extractor/``). Loading is
offline and local only.

DPT predicts *relative inverse depth*: disparity up to an unknown scale and shift. It is
read as disparity normalised to [0.1, 1] (min → 0.1, max → 1), i.e. z-depth from 1 (the
nearest pixel) to 10 (the farthest), so translations are in those relative units. A flat
prediction gives a flat wall at z = 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamlift.errors import ModelError

NEAR_DISPARITY = 0.1  # the farthest pixel's disparity relative to the nearest's


def _is_dpt(folder: Path) -> bool:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("model_type") == "dpt"


def _model_folder(path: Path) -> tuple[Path, Path | None]:
    """The DPT weights folder and, if found, its image processor's folder."""
    if _is_dpt(path / "depth_estimator"):
        processor = path / "feature_extractor"
        return path / "depth_estimator", processor if processor.is_dir() else None
    if _is_dpt(path):
        has_processor = (path / "preprocessor_config.json").is_file()
        return path, path if has_processor else None
    raise ModelError(
        f"no depth estimator in {path}",
        "give a DPT folder (config.json + weights) or an SD2-depth folder with depth_estimator/",
    )


def load_depth_estimator(path: str | Path, device: str | torch.device = "cpu"):
    """(model, image processor or None) from a local folder."""
    folder = Path(path)
    if not folder.is_dir():
        raise ModelError(f"depth model folder {folder} does not exist")
    weights, processor_dir = _model_folder(folder)
    try:
        from transformers import DPTForDepthEstimation

        model = DPTForDepthEstimation.from_pretrained(weights, local_files_only=True)
        processor = None
        if processor_dir is not None:
            try:
                from transformers import DPTImageProcessorPil as Processor
            except ImportError:  # older transformers: one processor class
                from transformers import DPTImageProcessor as Processor
            processor = Processor.from_pretrained(processor_dir, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the depth estimator in {weights}: {exc}") from None
    return model.to(device).eval(), processor


@torch.no_grad()
def estimate_depth(image: Tensor, path: str | Path, device: str | torch.device = "cpu") -> Tensor:
    """(H, W, 3) image in [0, 1] → (H, W) relative z-depth in [1, 10] (module doc)."""
    model, processor = load_depth_estimator(path, device)
    h, w = image.shape[:2]
    if processor is not None:
        array = (image.clamp(0, 1) * 255).round().byte().numpy()
        pixels = processor(images=array, return_tensors="pt")["pixel_values"]
    else:
        size = int(getattr(model.config, "image_size", 384))
        x = F.interpolate(image.permute(2, 0, 1)[None], size=(size, size), mode="bicubic")
        pixels = (x - 0.5) / 0.5
    pred = model(pixel_values=pixels.to(device)).predicted_depth.float().cpu()
    pred = F.interpolate(pred[:, None], size=(h, w), mode="bicubic", align_corners=False)[0, 0]
    lo, hi = float(pred.min()), float(pred.max())
    span = hi - lo
    if span <= 1e-6 * max(abs(hi), 1e-12):
        return torch.ones(h, w)
    disparity = NEAR_DISPARITY + (1 - NEAR_DISPARITY) * (pred - lo) / span
    return 1.0 / disparity
