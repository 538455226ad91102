"""Metrics: image quality, masks, and (later) CLIP-based scores."""

from dreamlift.metrics.image import mask_iou, psnr, ssim

__all__ = ["mask_iou", "psnr", "ssim"]
