"""The gsplat backend of :func:`~dreamlift.fields.rasterize.rasterize_gaussians` (CUDA only,
imported lazily): the same contract through ``gsplat.rasterization``."""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from dreamlift.cameras import Cameras
from dreamlift.fields.splat_composite import assemble_output
from dreamlift.fields.splat_projection import EPS_2D, NEAR_PLANE, Projected


def gsplat_available() -> bool:
    """Whether gsplat's CUDA kernels load. Importing gsplat is not enough: its extension is
    built (minutes, once) or loaded at first use, and without a CUDA toolkit it is ``None``,
    so ``auto`` would pick a backend that fails at the first render."""
    return gsplat_unavailable_reason() is None


@functools.cache
def gsplat_unavailable_reason() -> str | None:
    """Why gsplat's CUDA kernels do not load (one line), or None when they do; tried once.

    The failures that mean "not usable here" are kept as the reason: gsplat not installed
    or a dependency missing (ImportError), its compiled library not loading (OSError), its
    kernels failing to build (RuntimeError, from torch's extension builder), or no CUDA
    toolkit to build them with (gsplat then leaves ``_C`` None). Anything else is a bug and
    propagates.
    """
    try:
        from gsplat.cuda._backend import _C
    except (ImportError, OSError, RuntimeError) as exc:
        lines = str(exc).strip().splitlines() or [""]
        return f"{type(exc).__name__}: {lines[0][:200]}".rstrip(": ")
    if _C is None:
        return "gsplat's CUDA extension is not built and no CUDA toolkit was found to build it"
    return None


def rasterize_gsplat(
    means: Tensor,
    quats: Tensor,
    log_scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    cameras: Cameras,
    background: Tensor,
    tile_size: int,
    extra: Tensor | None,
) -> dict[str, Tensor]:
    """The same contract through ``gsplat.rasterization`` (depth and extras as channels)."""
    from gsplat import rasterization

    b, n = len(cameras), means.shape[0]
    w2c = cameras.w2c().to(means)
    z = torch.einsum("bj,nj->bn", w2c[:, 2, :3], means) + w2c[:, 2, 3:4]
    parts = [colors.expand(b, n, 3), z[..., None]]
    if extra is not None:
        parts.append(extra.expand(b, n, extra.shape[-1]))
    feats, _alphas, meta = rasterization(
        means,
        quats,
        torch.exp(log_scales),
        opacities,
        torch.cat(parts, dim=-1),
        viewmats=w2c,
        Ks=cameras.intrinsics().to(means),
        width=cameras.width,
        height=cameras.height,
        near_plane=NEAR_PLANE,
        eps2d=EPS_2D,
        tile_size=tile_size,
        packed=False,
        render_mode="RGB",
        rasterize_mode="classic",
    )
    means2d = meta["means2d"]
    if means2d.requires_grad:
        means2d.retain_grad()
    radii = meta["radii"]
    if radii.ndim == 3:  # newer gsplat: per-axis radii
        radii = radii.max(dim=-1).values
    projected = Projected(means2d, meta.get("conics", means2d), z, radii.to(means.dtype))
    return assemble_output(feats, _alphas[..., 0], background, feats.shape[-1] - 4, projected)
