"""Differentiable 3D Gaussian splatting rasteriser (pure PyTorch, tiled; optional gsplat).

The torch backend follows the 3DGS recipe (Kerbl et al. 2023):

* project each Gaussian with the EWA Jacobian, ``Σ' = J W Σ Wᵀ Jᵀ + 0.3 I`` (the 0.3 px²
  low-pass dilation), conic = ``Σ'⁻¹``, radius = ``ceil(3 sqrt(λ_max))``;
* cull Gaussians in front of the near plane (z < 0.01) or whose 3σ box misses the image;
* bin Gaussians to ``tile_size``² tiles by their 3σ boxes, sort each tile's list by depth;
* alpha = ``min(0.99, o exp(-½ dᵀ conic d))``, dropped below 1/255, composited front to back
  with transmittance = exclusive cumprod of ``1 - alpha``.

Instead of a per-pixel loop, each tile's list is padded to a common length K and evaluated as
one dense (tiles, pixels, K) block. The quadratic form is written as a matmul of six pixel
features (1, x, y, x², xy, y² relative to the tile centre) with six per-(tile, Gaussian)
coefficients, and compositing has a hand-written backward pass, so a block costs a handful
of elementwise passes and a few batched matmuls. Tiles are sorted by list length and chunked
so that each chunk is padded only to its own longest list and stays within a memory budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from dreamlift.cameras import Cameras

NEAR_PLANE = 0.01
"""Gaussians whose centre is closer than this (z-depth) are culled, as in 3DGS."""
EPS_2D = 0.3
"""Low-pass dilation (px²) added to every projected covariance, as in 3DGS."""
ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.99
T_MIN = 1.0e-4
"""A pixel stops compositing once its transmittance would fall below this (as 3DGS)."""
_LOG_ALPHA_MAX = math.log(ALPHA_MAX)
_LOG_ALPHA_FLOOR = math.log(ALPHA_MIN) - 1.0  # anything below is dropped anyway
_ODDS_MAX = 0.5 * (ALPHA_MAX / (1 - ALPHA_MAX) + 0.98 / 0.02)  # between 0.98 and 0.99 odds
_PAD_LOGIT = -1.0e4  # log-alpha of padding entries: exp() is exactly 0
_BYTES_PER_ELEMENT = 28  # peak bytes per (tile, pixel, K) element in forward + backward
_SEGMENT_ELEMENTS = 1 << 18  # (tile, pixel, K) elements per depth segment


@dataclass
class Projected:
    """Screen-space Gaussians for a batch of B cameras."""

    means2d: Tensor  # (B, N, 2) pixel coordinates (pixel centres at +0.5)
    conics: Tensor  # (B, N, 3) inverse 2D covariance (a, b, c) = [[a, b], [b, c]]
    depths: Tensor  # (B, N) camera z of the centres
    radii: Tensor  # (B, N) 3σ radius in pixels, 0 where culled


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """Rotation matrices (N, 3, 3) from unnormalised wxyz quaternions (N, 4)."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z),
        2 * (x * y - w * z),
        2 * (x * z + w * y),
        2 * (x * y + w * z),
        1 - 2 * (x * x + z * z),
        2 * (y * z - w * x),
        2 * (x * z - w * y),
        2 * (y * z + w * x),
        1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(*quats.shape[:-1], 3, 3)


def covariance_3d(quats: Tensor, log_scales: Tensor) -> Tensor:
    """World covariances ``R S Sᵀ Rᵀ`` (N, 3, 3)."""
    m = quat_to_rotmat(quats) * torch.exp(log_scales)[..., None, :]
    return m @ m.transpose(-1, -2)


def project_gaussians(
    means: Tensor, quats: Tensor, log_scales: Tensor, cameras: Cameras
) -> Projected:
    """EWA-project N Gaussians into B cameras (differentiable in everything but the radii)."""
    w2c = cameras.w2c().to(means.dtype)
    rot, trans = w2c[:, :3, :3], w2c[:, :3, 3]
    cam = torch.einsum("bij,nj->bni", rot, means) + trans[:, None, :]  # (B, N, 3)
    x, y, z = cam.unbind(-1)
    fx, fy = cameras.fx[:, None].to(means), cameras.fy[:, None].to(means)
    cx, cy = cameras.cx[:, None].to(means), cameras.cy[:, None].to(means)
    safe_z = torch.where(z.abs() < 1e-8, torch.full_like(z, 1e-8), z)
    means2d = torch.stack([fx * x / safe_z + cx, fy * y / safe_z + cy], dim=-1)

    # The Jacobian is evaluated at a centre clamped to a little beyond the frustum (as 3DGS):
    # far off-axis Gaussians would otherwise get huge, unstable footprints.
    tan_x, tan_y = 0.5 * cameras.width / fx, 0.5 * cameras.height / fy
    tx = safe_z * torch.minimum(
        torch.maximum(x / safe_z, -(cx / fx + 0.3 * tan_x)), (cameras.width - cx) / fx + 0.3 * tan_x
    )
    ty = safe_z * torch.minimum(
        torch.maximum(y / safe_z, -(cy / fy + 0.3 * tan_y)),
        (cameras.height - cy) / fy + 0.3 * tan_y,
    )
    zero = torch.zeros_like(z)
    jac = torch.stack(
        [
            torch.stack([fx / safe_z, zero, -fx * tx / safe_z**2], dim=-1),
            torch.stack([zero, fy / safe_z, -fy * ty / safe_z**2], dim=-1),
        ],
        dim=-2,
    )  # (B, N, 2, 3)
    t = jac @ rot[:, None]  # J W
    cov2d = t @ covariance_3d(quats, log_scales)[None] @ t.transpose(-1, -2)
    a = cov2d[..., 0, 0] + EPS_2D
    b = cov2d[..., 0, 1]
    c = cov2d[..., 1, 1] + EPS_2D
    det = a * c - b * b
    ok_det = det > 1e-12
    inv_det = 1.0 / torch.where(ok_det, det, torch.ones_like(det))
    conics = torch.stack([c * inv_det, -b * inv_det, a * inv_det], dim=-1)

    with torch.no_grad():
        mid = 0.5 * (a + c)
        lam = mid + torch.sqrt(torch.clamp(mid * mid - det, min=0.1))
        radii = torch.ceil(3.0 * torch.sqrt(lam))
        u, v = means2d.unbind(-1)
        on_screen = (
            (u + radii > 0)
            & (u - radii < cameras.width)
            & (v + radii > 0)
            & (v - radii < cameras.height)
        )
        visible = (z >= NEAR_PLANE) & ok_det & on_screen & torch.isfinite(radii)
        radii = torch.where(visible, radii, torch.zeros_like(radii))
    return Projected(means2d, conics, z, radii)


# ---------------------------------------------------------------------------------------------
# Tiled compositing
# ---------------------------------------------------------------------------------------------


def _pixel_features(tile_size: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """(P, 6) features [1, x, y, x², xy, y²] of a tile's pixel centres relative to its centre."""
    r = torch.arange(tile_size, device=device, dtype=dtype) + 0.5 - 0.5 * tile_size
    py, px = torch.meshgrid(r, r, indexing="ij")
    px, py = px.reshape(-1), py.reshape(-1)
    return torch.stack([torch.ones_like(px), px, py, px * px, px * py, py * py], dim=-1)


def _segment(coef: Tensor, pixfeat: Tensor, t0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Compositing weights of one depth segment of a block of tiles.

    ``coef`` (T, S, 6) log-alpha coefficients, ``t0`` (T, P) transmittance in front of the
    segment (0 for pixels that already terminated). Returns the weights ``alpha * T``
    (T, P, S), the odds ``alpha / (1 - alpha)`` (T, P, S) the backward pass needs, and the
    transmittance behind the segment (T, P), 0 where the pixel terminated.
    """
    alpha = torch.matmul(pixfeat, coef.transpose(1, 2))
    # Clamping below too keeps exp() away from subnormal results, which are very slow on CPUs.
    alpha.clamp_(min=_LOG_ALPHA_FLOOR, max=_LOG_ALPHA_MAX).exp_()
    torch.nn.functional.threshold_(alpha, ALPHA_MIN, 0.0)
    one_minus = 1.0 - alpha
    first = one_minus[..., 0].clone()
    one_minus[..., 0] *= t0  # fold the incoming transmittance into the product
    trans = torch.cumprod(one_minus, dim=-1)  # inclusive
    one_minus[..., 0] = first
    # 3DGS early termination: the Gaussian that would take T below T_MIN and all behind it
    # are skipped. The inclusive product is monotone, so zeroing it where it is below T_MIN
    # zeroes exactly those entries' weights (and the transmittance carried on).
    torch.nn.functional.threshold_(trans, T_MIN, 0.0)
    t_end = trans[..., -1].clone()
    weights = trans.div_(one_minus).mul_(alpha)  # exclusive T (1 - alpha >= 0.01) times alpha
    return weights, alpha.div_(one_minus), t_end


class _CompositeTiles(torch.autograd.Function):
    """Front-to-back compositing of a (tiles, pixels, K) block with a hand-written backward.

    Inputs: ``coef`` (T, K, 6) log-alpha quadratic coefficients, ``feats`` (T, K, C) features
    to composite (the last one constant 1, giving the opacity), ``pixfeat`` (P, 6) pixel
    features, ``counts`` (T,) list lengths, ``seg`` the segment length, ``save`` whether to
    keep intermediates for backward (else recompute them), ``clamped`` whether any alpha can
    reach the 0.99 clamp. Output: composited features (T, P, C).

    The K axis is walked in segments; tiles leave the block once their list is exhausted or
    all their pixels terminated.
    """

    @staticmethod
    def forward(ctx, coef, feats, pixfeat, counts, seg, save, clamped):  # type: ignore[override]
        n_tiles, k, _ = coef.shape
        t0 = coef.new_ones(n_tiles, pixfeat.shape[0])
        # Products are arranged so the long axis is never the tiny output's (MKL is ~5x
        # slower at (P, S) @ (S, C) than at (C, S) @ (S, P) for C of a few channels).
        out_t = coef.new_zeros(n_tiles, feats.shape[-1], pixfeat.shape[0])  # (T, C, P)
        feats_t = feats.transpose(1, 2)
        active = torch.arange(n_tiles, device=coef.device)
        segments = []
        for k0 in range(0, k, seg):
            active = active[counts[active] > k0]
            if active.numel() == 0:
                break
            k1 = min(k, k0 + seg)
            everyone = active.numel() == n_tiles  # no gathers needed
            t_in = t0 if everyone else t0[active]
            weights, odds, t_end = _segment(
                coef[:, k0:k1] if everyone else coef[active, k0:k1], pixfeat, t_in
            )
            if everyone:
                out_t.baddbmm_(feats_t[:, :, k0:k1], weights.transpose(1, 2))
                t0 = t_end
            else:
                out_t.index_add_(
                    0, active, torch.bmm(feats_t[active, :, k0:k1], weights.transpose(1, 2))
                )
                t0 = t0.index_copy(0, active, t_end)
            segments.append((k0, k1, active, t_in, (weights, odds) if save else None))
            active = active[(t_end > 0).any(dim=-1)]
        ctx.segments = segments
        ctx.clamped = clamped
        ctx.save_for_backward(coef, feats, pixfeat)
        return out_t.transpose(1, 2)

    @staticmethod
    def backward(ctx, d_out):  # type: ignore[override]
        coef, feats, pixfeat = ctx.saved_tensors
        d_coef = torch.zeros_like(coef)
        d_feats = torch.zeros_like(feats)
        tail_after = d_out.new_zeros(d_out.shape[:2])  # sum_{j in later segments} g_j w_j
        for k0, k1, active, t_in, cached in reversed(ctx.segments):
            weights, odds = (
                cached if cached is not None else _segment(coef[active, k0:k1], pixfeat, t_in)[:2]
            )
            g_out = d_out[active]
            d_feats[active, k0:k1] = torch.bmm(g_out.transpose(1, 2), weights).transpose(1, 2)
            # With g_k = dL/dw_k and S_k = sum_{j>k} g_j w_j:
            # dL/dlog(alpha_k) = alpha_k (g_k T_k - S_k / (1 - alpha_k))
            #                  = g_k w_k - S_k alpha_k / (1 - alpha_k).
            gw = torch.bmm(g_out, feats[active, k0:k1].transpose(1, 2)).mul_(weights)
            tail = torch.cumsum(gw, dim=-1)
            seg_total = tail[..., -1].clone()
            tail.neg_().add_((seg_total + tail_after[active])[..., None])
            d_log = gw.sub_(tail.mul_(odds))
            if ctx.clamped:  # no gradient through the clamp (odds of 0.99 are 99)
                d_log.masked_fill_(odds >= _ODDS_MAX, 0.0)
            d_coef[active, k0:k1] = torch.matmul(pixfeat.t(), d_log).transpose(1, 2)
            tail_after.index_add_(0, active, seg_total)
        ctx.segments = None
        return d_coef, d_feats, None, None, None, None, None


@dataclass
class _Bins:
    """Gaussian ids sorted by (tile, depth); tile t owns ``ids[starts[t]:starts[t]+counts[t]]``."""

    ids: Tensor
    starts: Tensor
    counts: Tensor
    tiles_x: int
    tiles_y: int


def _bin_to_tiles(
    means2d: Tensor, radii: Tensor, depths: Tensor, width: int, height: int, tile_size: int
) -> _Bins:
    """Assign each visible Gaussian to the tiles its 3σ box overlaps (one image, no grad)."""
    tiles_x, tiles_y = math.ceil(width / tile_size), math.ceil(height / tile_size)
    n_tiles = tiles_x * tiles_y
    dev = means2d.device
    vis = torch.nonzero(radii > 0).squeeze(-1)
    if vis.numel() == 0:
        empty = torch.zeros(0, dtype=torch.long, device=dev)
        zeros = torch.zeros(n_tiles, dtype=torch.long, device=dev)
        return _Bins(empty, zeros, zeros.clone(), tiles_x, tiles_y)
    uv, r = means2d[vis], radii[vis, None]
    lo = torch.floor((uv - r) / tile_size).long()
    hi = torch.floor((uv + r) / tile_size).long()
    lim = torch.tensor([tiles_x - 1, tiles_y - 1], device=dev)
    lo = torch.minimum(lo.clamp(min=0), lim)
    hi = torch.minimum(hi.clamp(min=0), lim)
    span = hi - lo + 1  # (V, 2) tiles covered along x and y
    per = span[:, 0] * span[:, 1]
    # Rank by depth (stable, so ties keep index order like the dense reference).
    rank = torch.empty_like(vis)
    rank[torch.argsort(depths[vis], stable=True)] = torch.arange(vis.numel(), device=dev)
    owner = torch.repeat_interleave(torch.arange(vis.numel(), device=dev), per)
    local = torch.arange(owner.numel(), device=dev) - torch.repeat_interleave(
        torch.cumsum(per, 0) - per, per
    )
    width_o = span[owner, 0]
    tile = (lo[owner, 1] + local // width_o) * tiles_x + lo[owner, 0] + local % width_o
    order = torch.argsort(tile * vis.numel() + rank[owner])
    tile_sorted = tile[order]
    counts = torch.bincount(tile_sorted, minlength=n_tiles)
    starts = torch.cumsum(counts, 0) - counts
    return _Bins(vis[owner[order]], starts, counts, tiles_x, tiles_y)


def _chunks(counts: Tensor, pixels: int, budget_elements: int) -> list[tuple[Tensor, int]]:
    """Group non-empty tiles (longest lists first) into chunks of (tile ids, padded K).

    A new chunk starts when the memory budget would be exceeded or when the next tile's list
    is much shorter than the chunk's K, so little work is wasted on padding.
    """
    order = torch.argsort(counts, descending=True, stable=True)
    sorted_counts = counts[order].tolist()
    out: list[tuple[Tensor, int]] = []
    start = 0
    n = len(sorted_counts)
    while start < n and sorted_counts[start] > 0:
        k = sorted_counts[start]
        end = start + 1
        while (
            end < n
            and sorted_counts[end] > 0
            and sorted_counts[end] * 4 >= k * 3
            and (end - start + 1) * pixels * k <= budget_elements
        ):
            end += 1
        out.append((order[start:end], k))
        start = end
    return out


def _composite_image(
    means2d: Tensor,
    conics: Tensor,
    log_opacity: Tensor,
    feats: Tensor,
    bins: _Bins,
    tile_size: int,
    budget_bytes: int,
    saved_bytes: list[int],
) -> tuple[Tensor, Tensor]:
    """Composite one image; returns features (H', W', C) and opacity (H', W') on the tile grid."""
    dev, dt = means2d.device, means2d.dtype
    n, c = feats.shape
    pixels = tile_size * tile_size
    n_tiles = bins.tiles_x * bins.tiles_y
    pixfeat = _pixel_features(tile_size, dev, dt)
    # A padding row (index n) whose alpha is exactly zero.
    mean_ext = torch.cat([means2d, means2d.new_zeros(1, 2)])
    conic_ext = torch.cat([conics, conics.new_zeros(1, 3)])
    logop_ext = torch.cat([log_opacity, log_opacity.new_full((1,), _PAD_LOGIT)])
    # The constant last feature composites to the opacity.
    feat_ext = torch.cat(
        [torch.cat([feats, feats.new_ones(n, 1)], dim=-1), feats.new_zeros(1, c + 1)]
    )

    tile_ids, outs = [], []
    for tiles, k in _chunks(bins.counts, pixels, budget_bytes // _BYTES_PER_ELEMENT):
        with torch.no_grad():
            slot = torch.arange(k, device=dev)
            valid = slot[None] < bins.counts[tiles, None]
            pos = (bins.starts[tiles, None] + slot[None]).clamp(max=max(bins.ids.numel() - 1, 0))
            gid = torch.where(valid, bins.ids[pos], torch.full_like(pos, n))
            centre = (
                torch.stack([tiles % bins.tiles_x, tiles // bins.tiles_x], dim=-1).to(dt)
                * tile_size
                + 0.5 * tile_size
            )
        m = mean_ext[gid] - centre[:, None, :]  # (T, K, 2) relative to the tile centre
        ca, cb, cc = conic_ext[gid].unbind(-1)
        mx, my = m.unbind(-1)
        coef = torch.stack(
            [
                logop_ext[gid] - 0.5 * (ca * mx * mx + cc * my * my) - cb * mx * my,
                ca * mx + cb * my,
                cc * my + cb * mx,
                -0.5 * ca,
                -cb,
                -0.5 * cc,
            ],
            dim=-1,
        )
        block_bytes = 8 * len(tiles) * pixels * k
        save = saved_bytes[0] + block_bytes <= budget_bytes
        saved_bytes[0] += block_bytes if save else 0
        seg = max(16, _SEGMENT_ELEMENTS // (len(tiles) * pixels))
        with torch.no_grad():
            clamped = bool(logop_ext[gid].max() >= _LOG_ALPHA_MAX)
        outs.append(
            _CompositeTiles.apply(
                coef, feat_ext[gid], pixfeat, bins.counts[tiles], seg, save, clamped
            )
        )
        tile_ids.append(tiles)

    full = feats.new_zeros(n_tiles, pixels, c + 1)
    if outs:
        full = full.index_copy(0, torch.cat(tile_ids), torch.cat(outs))
    else:  # nothing visible: stay connected to the inputs so backward yields zero gradients
        full = full + 0.0 * (feats.sum() + means2d.sum() + conics.sum() + log_opacity.sum())
    grid = full.reshape(bins.tiles_y, bins.tiles_x, tile_size, tile_size, c + 1)
    grid = grid.permute(0, 2, 1, 3, 4).reshape(
        bins.tiles_y * tile_size, bins.tiles_x * tile_size, c + 1
    )
    return grid[..., :c], grid[..., c]


def _finish(
    feats: Tensor, opacity: Tensor, background: Tensor, n_extra: int, projected: Projected
) -> dict[str, Tensor]:
    """Assemble the output dict from composited (B, H, W, C) features and (B, H, W) opacity."""
    opacity = opacity[..., None]
    bg = background.to(feats)
    out = {
        "rgb": feats[..., :3] + (1.0 - opacity) * bg,
        "opacity": opacity,
        "depth": feats[..., 3:4] / opacity.clamp(min=1e-6),
        "means2d": projected.means2d,
        "radii": projected.radii,
    }
    if n_extra:
        out["extra"] = feats[..., 4:]
    return out


def _prepare(
    means: Tensor,
    quats: Tensor,
    log_scales: Tensor,
    colors: Tensor,
    cameras: Cameras,
    extra: Tensor | None,
) -> tuple[Projected, Tensor]:
    """Project, and stack per-camera features [rgb, z, extra] to (B, N, C)."""
    projected = project_gaussians(means, quats, log_scales, cameras)
    if projected.means2d.requires_grad:
        projected.means2d.retain_grad()
    b, n = len(cameras), means.shape[0]
    parts = [colors.expand(b, n, 3), projected.depths[..., None]]
    if extra is not None:
        parts.append(extra.expand(b, n, extra.shape[-1]))
    return projected, torch.cat(parts, dim=-1)


def rasterize_gaussians(
    means: Tensor,
    quats: Tensor,
    log_scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    cameras: Cameras,
    background: Tensor,
    tile_size: int = 16,
    extra: Tensor | None = None,
    backend: str = "auto",
    memory_budget_mb: float = 512.0,
) -> dict[str, Tensor]:
    """Render N Gaussians into B cameras.

    Args:
        means: (N, 3) world centres. quats: (N, 4) unnormalised wxyz. log_scales: (N, 3).
        opacities: (N,) in [0, 1] (after the sigmoid). colors: (B, N, 3) or (N, 3).
        background: (3,) colour composited behind. extra: optional (B, N, C) or (N, C)
        features composited like colour (e.g. normals), returned as ``extra`` (B, H, W, C)
        without normalisation by opacity.
        backend: ``"torch"``, ``"gsplat"`` (CUDA) or ``"auto"`` (gsplat when the tensors are
        on CUDA and it imports, else torch).

    Returns ``rgb`` (B, H, W, 3), ``opacity`` (B, H, W, 1), ``depth`` (B, H, W, 1) z-depth
    (0 where empty), ``means2d`` (B, N, 2) with ``retain_grad()`` called when it requires
    grad (densification statistics) and ``radii`` (B, N) pixel radii (0 = culled).
    """
    if backend not in ("auto", "torch", "gsplat"):
        raise ValueError(f"unknown rasteriser backend {backend!r}")
    if backend == "gsplat" or (backend == "auto" and means.is_cuda and _gsplat_available()):
        return _rasterize_gsplat(
            means, quats, log_scales, opacities, colors, cameras, background, tile_size, extra
        )
    projected, feats = _prepare(means, quats, log_scales, colors, cameras, extra)
    log_opacity = torch.log(opacities.clamp(min=1e-10))
    budget = int(memory_budget_mb * 2**20)
    saved = [0]
    images, alphas = [], []
    for i in range(len(cameras)):
        with torch.no_grad():
            bins = _bin_to_tiles(
                projected.means2d[i],
                projected.radii[i],
                projected.depths[i],
                cameras.width,
                cameras.height,
                tile_size,
            )
        img, alpha = _composite_image(
            projected.means2d[i],
            projected.conics[i],
            log_opacity,
            feats[i],
            bins,
            tile_size,
            budget,
            saved,
        )
        images.append(img[: cameras.height, : cameras.width])
        alphas.append(alpha[: cameras.height, : cameras.width])
    n_extra = feats.shape[-1] - 4
    return _finish(torch.stack(images), torch.stack(alphas), background, n_extra, projected)


def rasterize_gaussians_reference(
    means: Tensor,
    quats: Tensor,
    log_scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    cameras: Cameras,
    background: Tensor,
    tile_size: int = 16,
    extra: Tensor | None = None,
) -> dict[str, Tensor]:
    """Dense (every pixel x every Gaussian) version of :func:`rasterize_gaussians`, for tests.

    Plain autograd, no tiling, no custom backward. A Gaussian only reaches the pixels of the
    tiles its 3σ box overlaps, exactly as in the tiled renderer (and in 3DGS).
    """
    projected, feats = _prepare(means, quats, log_scales, colors, cameras, extra)
    h, w = cameras.height, cameras.width
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=means.dtype), torch.arange(w, dtype=means.dtype), indexing="ij"
    )
    pix = torch.stack([xs, ys], dim=-1).reshape(-1, 2).to(means.device) + 0.5
    pix_tile = torch.floor((pix - 0.5) / tile_size).long()  # (P, 2)
    tiles_x, tiles_y = math.ceil(w / tile_size), math.ceil(h / tile_size)
    lim = torch.tensor([tiles_x - 1, tiles_y - 1], device=means.device)
    images, alphas = [], []
    for i in range(len(cameras)):
        uv, r = projected.means2d[i], projected.radii[i]
        lo = torch.minimum(torch.floor((uv - r[:, None]) / tile_size).long().clamp(min=0), lim)
        hi = torch.minimum(torch.floor((uv + r[:, None]) / tile_size).long().clamp(min=0), lim)
        inside = ((pix_tile[:, None, :] >= lo[None]) & (pix_tile[:, None, :] <= hi[None])).all(
            -1
        ) & (r > 0)[None]
        d = pix[:, None, :] - uv[None]  # (P, N, 2)
        ca, cb, cc = projected.conics[i].unbind(-1)
        power = -0.5 * (ca * d[..., 0] ** 2 + cc * d[..., 1] ** 2) - cb * d[..., 0] * d[..., 1]
        alpha = torch.clamp(opacities[None] * torch.exp(power), max=ALPHA_MAX)
        alpha = torch.where(inside & (alpha >= ALPHA_MIN), alpha, torch.zeros_like(alpha))
        order = torch.argsort(projected.depths[i], stable=True)
        alpha = alpha[:, order]
        with torch.no_grad():  # early termination, as in the tiled renderer
            ended = torch.cumprod(1.0 - alpha, dim=-1) < T_MIN
        alpha = torch.where(ended, torch.zeros_like(alpha), alpha)
        trans = torch.cumprod(1.0 - alpha, dim=-1)
        trans = torch.cat([torch.ones_like(trans[:, :1]), trans[:, :-1]], dim=-1)
        weights = alpha * trans
        images.append((weights @ feats[i][order]).reshape(h, w, -1))
        alphas.append(weights.sum(-1).reshape(h, w))
    n_extra = feats.shape[-1] - 4
    return _finish(torch.stack(images), torch.stack(alphas), background, n_extra, projected)


# ---------------------------------------------------------------------------------------------
# gsplat backend (CUDA only, imported lazily)
# ---------------------------------------------------------------------------------------------


def _gsplat_available() -> bool:
    try:
        import gsplat  # noqa: F401
    except Exception:
        return False
    return True


def _rasterize_gsplat(
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
    return _finish(feats, _alphas[..., 0], background, feats.shape[-1] - 4, projected)
