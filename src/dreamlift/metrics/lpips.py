"""LPIPS-VGG (Zhang et al., arXiv:1801.03924, §3) from weight files the user placed locally.

The zoo's stand-in (:class:`dreamlift.metrics.perceptual.FeatureDistance`) has no learned
layer weights; where the real network is wanted, this module computes the published metric,
with the same interface (``features``, ``distance``, ``between``, ``name``).

**Weights — nothing is downloaded.** The user copies two files into one folder:

- ``vgg16.pth`` (or ``vgg16.safetensors``): torchvision's ImageNet VGG16 weights (the file
  torchvision names ``vgg16-397923af.pth``, ``VGG16_Weights.IMAGENET1K_V1``), a state dict
  with keys ``features.0.weight`` … ``features.28.bias``. Its ``classifier.*`` keys (the
  fully connected head, unused by LPIPS) are allowed and skipped.
- ``lpips_vgg.pth`` (or ``lpips_vgg.safetensors``): the ``lpips`` package's
  ``weights/v0.1/vgg.pth``, keys ``lin0.model.1.weight`` … ``lin4.model.1.weight``
  (``.model.1`` because index 0 of each ``lin`` is a dropout layer), shapes ``(1, C, 1, 1)``.

``.pth`` files are read with ``torch.load(weights_only=True)``, so no pickled code runs.

**The metric.** Images in [0, 1] are mapped to [-1, 1] and then by LPIPS's ScalingLayer
(shift ``[-.030, -.088, -.188]``, scale ``[.458, .448, .450]``); VGG16's ReLU outputs
relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 are unit-normalised over channels; the squared
difference is weighted per channel by the ``lin`` weights, averaged over positions and summed
over the five layers. Unit normalisation uses ``F.normalize`` (``x / max(|x|, 1e-10)``)
instead of LPIPS's ``x / (|x| + 1e-10)``: equal for any non-vanishing feature vector, but
with a finite gradient where a position's features are all zero.

**Sizes.** No resizing: LPIPS is defined at any size. relu5_3 comes after four 2×2 max-pools
(floor division), so an image needs at least 16 px on each side for that layer to have a
position; smaller images are refused with :class:`DataError`. Non-square images work.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dreamlift.errors import DataError, ModelError

# VGG16 ("configuration D", Simonyan & Zisserman, arXiv:1409.1556, Table 1): output channels of
# the 3×3 convolutions, "M" a 2×2 max-pool. Built in this order, module indices match
# torchvision's ``vgg16().features`` (conv, ReLU pairs; one index per pool).
VGG16_LAYOUT: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)  # fmt: skip
TAPS = (3, 8, 15, 22, 29)
"""Indices in ``features`` of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3."""
TAP_CHANNELS = (64, 128, 256, 512, 512)
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
MIN_SIZE = 16
"""Four max-pools before relu5_3: 16 px is the least that leaves it one position."""

VGG_FILES = ("vgg16.safetensors", "vgg16.pth")
LIN_FILES = ("lpips_vgg.safetensors", "lpips_vgg.pth")
IGNORED_VGG_PREFIX = "classifier."
"""torchvision's file holds the classifier head too; LPIPS does not use it."""


class VGG16Features(nn.Module):
    """VGG16's convolutional trunk; ``state_dict`` keys are torchvision's ``features.N.*``."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in VGG16_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                out = int(item)
                # Not in-place (torchvision's is): the tapped ReLU outputs must stay intact.
                layers += [nn.Conv2d(channels, out, kernel_size=3, padding=1), nn.ReLU()]
                channels = out
        self.features = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> list[Tensor]:
        """The five ReLU taps; the layers after relu5_3 (the last pool) are not run."""
        taps = []
        for index, layer in enumerate(self.features[: TAPS[-1] + 1]):
            x = layer(x)
            if index in TAPS:
                taps.append(x)
        return taps


def expected_vgg_shapes() -> dict[str, tuple[int, ...]]:
    """Key → shape of every parameter of the trunk, in module order."""
    return {k: tuple(v.shape) for k, v in VGG16Features().state_dict().items()}


def expected_lin_shapes() -> dict[str, tuple[int, ...]]:
    return {f"lin{i}.model.1.weight": (1, c, 1, 1) for i, c in enumerate(TAP_CHANNELS)}


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """A flat tensor dict from ``.safetensors`` or ``.pth`` (no pickled code), else ModelError."""
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch and safetensors raise many kinds for a bad file
        raise ModelError(f"unreadable weights file {path}: {type(exc).__name__}") from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ModelError(f"{path} is not a state dict of tensors")
    return state


def check_state_dict(
    state: dict[str, Tensor], expected: dict[str, tuple[int, ...]], path: Path, ignore: str = ""
) -> dict[str, Tensor]:
    """The expected entries of ``state``; the first missing, unexpected or misshapen key is a
    ModelError, so a wrong file fails at load time and not as a silently random metric."""
    for key, shape in expected.items():
        if key not in state:
            raise ModelError(f"{path}: missing key {key!r}")
        if tuple(state[key].shape) != shape:
            got = tuple(state[key].shape)
            raise ModelError(f"{path}: key {key!r} has shape {got}, expected {shape}")
    for key in state:
        if key not in expected and not (ignore and key.startswith(ignore)):
            raise ModelError(f"{path}: unexpected key {key!r}")
    return {key: state[key] for key in expected}


def pick_file(folder: Path, names: tuple[str, ...]) -> Path:
    """The first of ``names`` present in ``folder`` (safetensors preferred)."""
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise ModelError(f"no {' or '.join(reversed(names))} in {folder}")


class LPIPSDistance:
    """``distance(images, target_features)`` → scalar; images (B, 3, H, W) in [0, 1], H, W ≥ 16."""

    name = "LPIPS-VGG (local weights)"

    def __init__(self, vgg_weights: Path, lin_weights: Path) -> None:
        vgg_weights, lin_weights = Path(vgg_weights), Path(lin_weights)
        vgg_state = check_state_dict(
            read_state_dict(vgg_weights), expected_vgg_shapes(), vgg_weights, IGNORED_VGG_PREFIX
        )
        lin_state = check_state_dict(
            read_state_dict(lin_weights), expected_lin_shapes(), lin_weights
        )
        self.trunk = VGG16Features()
        self.trunk.load_state_dict(vgg_state)
        self.trunk.eval().requires_grad_(False)
        self.lins = [lin_state[key].float() for key in expected_lin_shapes()]
        self.shift = torch.tensor(SHIFT).view(1, 3, 1, 1)
        self.scale = torch.tensor(SCALE).view(1, 3, 1, 1)

    def _follow(self, device: torch.device) -> None:
        """Move the network to the images' device on first use (callers move only images)."""
        if self.shift.device != device:
            self.trunk.to(device)
            self.lins = [w.to(device) for w in self.lins]
            self.shift, self.scale = self.shift.to(device), self.scale.to(device)

    def features(self, images: Tensor) -> list[Tensor]:
        """The five taps, each unit-normalised over channels: (B, C, h, w)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise DataError(f"LPIPS needs (B, 3, H, W) images, got {tuple(images.shape)}")
        if min(images.shape[-2:]) < MIN_SIZE:
            raise DataError(
                f"LPIPS-VGG needs images of at least {MIN_SIZE}×{MIN_SIZE} px, "
                f"got {images.shape[-2]}×{images.shape[-1]}"
            )
        self._follow(images.device)
        x = (images * 2 - 1 - self.shift) / self.scale
        return [F.normalize(tap, dim=1, eps=1e-10) for tap in self.trunk(x)]

    def per_image(self, images: Tensor, target: list[Tensor]) -> Tensor:
        """(B,) LPIPS of each image to the target features (a batch of 1 broadcasts)."""
        feats = self.features(images)
        layers = [
            ((f - t).square() * w).sum(1).mean((-2, -1))
            for f, t, w in zip(feats, target, self.lins, strict=True)
        ]
        return torch.stack(layers).sum(0)

    def distance(self, images: Tensor, target: list[Tensor]) -> Tensor:
        return self.per_image(images, target).mean()

    def between(self, images: Tensor, reference: Tensor) -> Tensor:
        """Distance of ``images`` to ``reference`` images (no gradient through the reference)."""
        with torch.no_grad():
            target = self.features(reference)
        return self.distance(images, target)


def load_lpips(folder: str | Path) -> LPIPSDistance:
    """LPIPS from a folder of ``vgg16.{pth,safetensors}`` and ``lpips_vgg.{pth,safetensors}``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"LPIPS weights folder not found: {folder}")
    return LPIPSDistance(pick_file(folder, VGG_FILES), pick_file(folder, LIN_FILES))
