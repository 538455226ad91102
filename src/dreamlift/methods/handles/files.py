"""Reading an edit's image, mask and depth from files, and resizing them together.

Depth files hold **z-depth**, in the units the transform's translation is given in:

- ``.npy``: a float (H, W) array; 0 marks pixels with no surface.
- 16-bit ``.png``: millimetres (the common depth-sensor convention), read as metres.
- 8-bit ``.png``: a disparity picture such as ``edited_depth.png`` (bright = near, 0 = no
  surface); relative only, read as z = 255 / value, so the nearest possible pixel sits at 1.

Any other image (a float TIFF, a 32-bit PNG) is refused rather than guessed at: float depth
belongs in ``.npy``. A depth image with colour channels must be grey (all channels equal).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dreamlift.errors import DataError


def _read_array(path: Path, what: str) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} file {path} does not exist")
    try:
        with warnings.catch_warnings():  # plugins probed on a non-image warn about themselves
            warnings.simplefilter("ignore")
            return np.asarray(imageio.imread(path))
    except Exception as exc:  # imageio raises many types for non-images
        reason = str(exc).splitlines()[0][:80] if str(exc) else type(exc).__name__
        raise DataError(
            f"cannot read {what} {path}: not an image file ({reason})",
            "give a PNG or JPEG" + (" (or .npy for depth)" if what == "depth" else ""),
        ) from None


def _unit_range(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535
    return array.astype(np.float32)


def read_image(path: Path) -> Tensor:
    """(H, W, 3) float32 in [0, 1]; grey is replicated, alpha dropped."""
    a = _read_array(path, "image")
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    if a.ndim != 3 or a.shape[-1] not in (3, 4):
        raise DataError(f"image {path} has shape {a.shape}; expected H×W×3")
    return torch.from_numpy(np.clip(_unit_range(a[..., :3]), 0, 1).copy())


def read_mask(path: Path) -> Tensor:
    """(H, W) bool: pixels brighter than half (mean of the colour channels; .npy: > 0.5)."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        a = _load_npy(path, "mask").astype(np.float32)
    else:
        a = _unit_range(_read_array(path, "mask"))
    if a.ndim == 3:
        a = a[..., :3].mean(-1) if a.shape[-1] >= 3 else a[..., 0]
    if a.ndim != 2:
        raise DataError(f"mask {path} has shape {a.shape}; expected H×W")
    return torch.from_numpy(a > 0.5)


def _load_npy(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{what} file {path} does not exist")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"cannot read {what} {path}: {exc}", "save it with numpy.save") from None


def read_depth(path: Path) -> Tensor:
    """(H, W) float32 z-depth (see the module doc for the formats)."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        a = _load_npy(path, "depth")
        if a.ndim == 3 and a.shape[-1] == 1:
            a = a[..., 0]
        if a.ndim != 2 or not np.issubdtype(a.dtype, np.number):
            raise DataError(f"depth {path} must be a numeric H×W array, got {a.shape}")
        return torch.from_numpy(a.astype(np.float32))
    a = _read_array(path, "depth")
    if a.dtype not in (np.uint8, np.uint16):
        raise DataError(
            f"depth {path} is a {a.dtype} image; depth images must be 8-bit disparity or "
            "16-bit millimetres",
            "save float depth as .npy (numpy.save)",
        )
    if a.ndim == 3:
        colour = a[..., :3] if a.shape[-1] >= 3 else a[..., :1]
        if not bool((colour == colour[..., :1]).all()):
            raise DataError(
                f"depth {path} is a colour image (its channels differ)",
                "save depth as a grey PNG, or float depth as .npy",
            )
        a = a[..., 0]
    if a.ndim != 2:
        raise DataError(f"depth {path} has shape {a.shape}; expected H×W")
    if a.dtype == np.uint16:
        return torch.from_numpy(a.astype(np.float32) / 1000)
    value = _unit_range(a)
    z = np.where(value > 0, 1.0 / np.maximum(value, 1e-6), 0.0)
    return torch.from_numpy(z.astype(np.float32))


def resize_inputs(
    image: Tensor, mask: Tensor, depth: Tensor | None, size: int
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Resize to size × size: the image smoothly, mask and depth by nearest neighbour (so no
    depth is invented between an object and what lies behind it)."""
    img = F.interpolate(
        image.permute(2, 0, 1)[None], size=(size, size), mode="bilinear", antialias=True
    )[0].permute(1, 2, 0)
    m = F.interpolate(mask.float()[None, None], size=(size, size), mode="nearest")[0, 0] > 0.5
    d = None
    if depth is not None:
        d = F.interpolate(depth.float()[None, None], size=(size, size), mode="nearest")[0, 0]
    return img.clamp(0, 1), m, d
