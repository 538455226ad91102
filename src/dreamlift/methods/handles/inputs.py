"""Checking an edit's inputs before any model runs, with errors that say what to do.

An edit takes an image (H, W, 3) in [0, 1], an object mask (H, W) and a z-depth map
(H, W, > 0 where there is a surface, 0 for none). Everything a user can get wrong — sizes
that disagree, an empty or all-covering mask, an image the prior cannot take, a prior with
no depth input — is a :class:`~dreamlift.errors.DreamliftError` with a hint, raised here,
so a bad call fails in milliseconds rather than after the inversion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from dreamlift.errors import DataError, ModelError
from dreamlift.methods.handles.lift import Intrinsics
from dreamlift.priors import DiffusionPrior


@dataclass
class EditInputs:
    """Validated inputs as float32 / bool CPU tensors, with the camera they are seen by."""

    image: Tensor
    mask: Tensor
    depth: Tensor
    intrinsics: Intrinsics


def _tensor(x: Tensor | np.ndarray, name: str) -> Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, Tensor):
        raise DataError(f"the {name} must be an array or tensor, got {type(x).__name__}")
    return x.detach().cpu()


def _size(t: Tensor) -> str:
    return f"{t.shape[1]}×{t.shape[0]}"


def _check_image_size(x: Tensor, image: Tensor, name: str) -> None:
    """A per-pixel map (mask, depth map) must have the image's height and width."""
    if tuple(x.shape) != tuple(image.shape[:2]):
        shown = _size(x) if x.ndim == 2 else f"of shape {tuple(x.shape)}"
        raise DataError(
            f"the {name} is {shown} but the image is {_size(image)}",
            f"give a {name} of the image's size",
        )


def as_image(image: Tensor | np.ndarray) -> Tensor:
    """(H, W, 3) float32 in [0, 1]; uint8 is scaled, an alpha channel dropped."""
    x = _tensor(image, "image")
    if x.dtype == torch.uint8:
        x = x.float() / 255
    if x.ndim != 3 or x.shape[-1] not in (3, 4):
        raise DataError(f"the image must be H×W×3, got shape {tuple(x.shape)}")
    x = x[..., :3].float()
    if not bool(torch.isfinite(x).all()) or float(x.min()) < 0 or float(x.max()) > 1:
        raise DataError("image values must lie in [0, 1]", "scale 8-bit images by 1/255")
    return x


def check_mask(mask: Tensor | np.ndarray, image: Tensor) -> Tensor:
    """(H, W) bool, the image's size, neither empty nor covering everything."""
    m = _tensor(mask, "mask")
    if m.ndim == 3 and m.shape[-1] in (1, 3, 4):
        m = m[..., 0]
    _check_image_size(m, image, "mask")
    m = m.float() > 0.5 if m.dtype != torch.bool else m
    if not bool(m.any()):
        raise DataError("the object mask is empty", "white (non-zero) pixels mark the object")
    if bool(m.all()):
        raise DataError(
            "the object mask covers the whole image",
            "nothing would be left as background: mask only the object to move",
        )
    return m


def check_depth(depth: Tensor | np.ndarray, image: Tensor, mask: Tensor) -> Tensor:
    """(H, W) float32 z-depth of the image's size, finite, ≥ 0, valid on the object."""
    d = _tensor(depth, "depth")
    if d.ndim == 3 and d.shape[-1] == 1:
        d = d[..., 0]
    _check_image_size(d, image, "depth map")
    d = d.float()
    if not bool(torch.isfinite(d).all()) or float(d.min()) < 0:
        raise DataError(
            "the depth map has negative or non-finite values",
            "give z-depth > 0 (0 marks pixels with no surface)",
        )
    if not bool((d[mask] > 0).any()):
        raise DataError("the depth map is 0 everywhere under the object mask")
    return d


def check_prior(prior: DiffusionPrior, image: Tensor) -> None:
    """The prior must take depth and work at the image's size."""
    if not prior.depth_conditioned:
        raise ModelError(
            f"Diffusion Handles needs a depth-conditioned prior; {prior.folder} is not one",
            "use --prior toy-sd-depth or a Stable Diffusion 2 depth folder",
        )
    h, w = image.shape[:2]
    f, size = prior.vae_scale_factor, prior.image_size
    if h % f or w % f:
        raise DataError(
            f"the image is {w}×{h}; its sides must be multiples of the VAE factor {f}",
            f"resize it to {size}×{size}, the prior's size (--resize in the CLI)",
        )
    if (h, w) != (size, size):
        raise DataError(
            f"the image is {w}×{h} but the prior works at {size}×{size}",
            f"resize image, mask and depth to {size}×{size} (--resize in the CLI)",
        )


def check_steps(steps: int, prior: DiffusionPrior) -> None:
    """A DDIM grid of ``steps`` must fit in the prior's training timesteps."""
    total = prior.num_train_timesteps
    if steps > total:
        raise DataError(
            f"{steps} DDIM steps exceed the prior's {total} training timesteps",
            f"use --steps {total} or fewer (the paper uses 50)",
        )


def check_inputs(
    image: Tensor | np.ndarray,
    mask: Tensor | np.ndarray,
    depth: Tensor | np.ndarray,
    intrinsics: Intrinsics | None = None,
    fov_deg: float = 55.0,
    prior: DiffusionPrior | None = None,
) -> EditInputs:
    """Validate and convert; ``intrinsics`` default to a centred pinhole of ``fov_deg``."""
    img = as_image(image)
    m = check_mask(mask, img)
    d = check_depth(depth, img, m)
    if prior is not None:
        check_prior(prior, img)
    h, w = img.shape[:2]
    if intrinsics is None:
        intrinsics = Intrinsics.from_fov(fov_deg, w, h)
    elif (intrinsics.height, intrinsics.width) != (h, w):
        raise DataError(
            f"the camera is {intrinsics.width}×{intrinsics.height} but the image {w}×{h}"
        )
    return EditInputs(img, m, d, intrinsics)
