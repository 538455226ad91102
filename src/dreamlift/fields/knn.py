"""Exact k-nearest-neighbour distances of 3D points by spatial hashing, in plain torch.

Points are binned to cubic cells of a uniform grid and sorted by cell key (x-major, z
fastest), so the points of a run of cells along z are one contiguous slice, found with two
``searchsorted`` calls. A point's candidates are the points of the cells around its own,
taken in shells of growing Chebyshev radius. Once the shells up to radius r are searched,
every point not yet seen is more than r cell sizes away along some axis, so a point whose k-th
nearest candidate is closer than r cell sizes has its exact answer. The cell size follows
the data (a few points per cell where the points are); the points still open after two
shells (isolated points, sparse regions) go on to a 4x coarser grid, and so on, until so few
are left that comparing them with every point is cheaper.

Points of one cell share their candidates, so distances are computed in padded blocks of
(cells, points of a cell, candidates of a cell), cells grouped by size so padding wastes
little. :func:`knn_sq_distances_reference` is the brute-force reference; both compute a
squared distance with the same float operations, so they agree exactly.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

TARGET_OCCUPANCY = 2.5
"""Mean number of points sharing a point's cell that the cell size aims at."""
MAX_SHELL = 2
"""Shells searched on one grid before the open points move to a coarser one."""
COARSEN = 4.0
_SIZE_ITERATIONS = 8
_MIN_CELL_FRACTION = 2.0**-20  # of the extent: keeps cell keys well within int64
_SAFETY = 1.0 - 1e-5  # margin for rounding in the stopping test (float32 errors are ~1e-7)
_MAX_PAIRS = 1 << 21  # (point, candidate) distances held at once


def squared_distances(a: Tensor, b: Tensor) -> Tensor:
    """Squared Euclidean distances of (..., 3) points (broadcast), in a fixed order of float
    operations."""
    dx = a[..., 0] - b[..., 0]
    dy = a[..., 1] - b[..., 1]
    dz = a[..., 2] - b[..., 2]
    return dx * dx + dy * dy + dz * dz


def knn_sq_distances_reference(points: Tensor, k: int, chunk: int = 1024) -> Tensor:
    """Brute-force version of :func:`knn_sq_distances` (O(N²) time, for tests)."""
    n = points.shape[0]
    _check_k(n, k)
    ids = torch.arange(n, device=points.device)
    out = [_brute_force(points, ids[i : i + chunk], k) for i in range(0, n, chunk)]
    return torch.cat(out) if out else points.new_zeros(0, k)


def knn_sq_distances(points: Tensor, k: int) -> Tensor:
    """Squared distances (N, k), ascending, from each of N points (N, 3) to its k nearest
    other points (a duplicate of a point is at distance 0). Needs ``k < N``. Not
    differentiable."""
    points = points.detach()
    n = points.shape[0]
    _check_k(n, k)
    best = points.new_full((n, k), math.inf)
    if n == 0 or k == 0:
        return best
    p64 = points.double()
    origin = p64.amin(0)
    extent = float((p64.amax(0) - origin).max())
    if extent == 0.0:  # all points coincide
        return best.zero_()
    cell = _cell_size(p64, origin, extent, n)
    open_ids = torch.arange(n, device=points.device)
    while open_ids.numel() * n > _MAX_PAIRS:
        grid = _Grid(p64, origin, cell)
        open_ids = _search(points, grid, open_ids, best, k)
        best[open_ids] = math.inf  # start over on the coarser grid: no candidate twice
        cell *= COARSEN
    if open_ids.numel() > 0:  # a few isolated points: brute force is cheaper than more grids
        best[open_ids] = _brute_force(points, open_ids, k)
    return best


def _check_k(n: int, k: int) -> None:
    if k < 0 or (n > 0 and k > n - 1):
        raise ValueError(f"k must be in 0..{n - 1} for {n} points, got {k}")


def _brute_force(points: Tensor, ids: Tensor, k: int) -> Tensor:
    """k smallest squared distances (len(ids), k) from the points ``ids`` to all others."""
    d2 = squared_distances(points[ids, None, :], points[None])
    d2[torch.arange(ids.numel(), device=ids.device), ids] = math.inf  # not its own neighbour
    return torch.topk(d2, k, dim=-1, largest=False).values


class _Grid:
    """Points binned to cubic cells of side ``cell``; ``order`` lists the point ids sorted by
    cell key, ``sorted_keys`` their keys."""

    def __init__(self, p64: Tensor, origin: Tensor, cell: float) -> None:
        self.cell = cell
        self.coords = torch.floor((p64 - origin) / cell).long()
        self.dims = self.coords.amax(0) + 1
        self.sorted_keys, self.order = torch.sort(self.key(self.coords), stable=True)

    def key(self, coords: Tensor) -> Tensor:
        return (coords[..., 0] * self.dims[1] + coords[..., 1]) * self.dims[2] + coords[..., 2]

    def occupancy(self) -> float:
        """Mean number of points in a point's own cell (duplicates included)."""
        counts = torch.unique_consecutive(self.sorted_keys, return_counts=True)[1]
        return float((counts.double() ** 2).sum() / counts.sum())

    def lookup(self, cells: Tensor, ranges: Tensor) -> tuple[Tensor, Tensor]:
        """Start in ``order`` and point count (C, R) of each z-run of cells ``ranges`` (R, 4)
        = (dx, dy, dz_first, dz_last) relative to the cells (C, 3); runs are clipped to the
        grid."""
        x = cells[:, None, 0] + ranges[:, 0]
        y = cells[:, None, 1] + ranges[:, 1]
        z_first = (cells[:, None, 2] + ranges[:, 2]).clamp(min=0)
        z_last = torch.minimum(cells[:, None, 2] + ranges[:, 3], self.dims[2] - 1)
        inside = (x >= 0) & (x < self.dims[0]) & (y >= 0) & (y < self.dims[1])
        inside &= z_first <= z_last
        column = (x * self.dims[1] + y) * self.dims[2]
        start = torch.searchsorted(self.sorted_keys, column + z_first)
        end = torch.searchsorted(self.sorted_keys, column + z_last, right=True)
        return start, torch.where(inside, end - start, 0)


def _cell_size(p64: Tensor, origin: Tensor, extent: float, n: int) -> float:
    """A cell size giving about :data:`TARGET_OCCUPANCY` points per point's cell: a guess from
    the bounding box, refined a few times (data on surfaces or in clusters is denser than the
    box suggests)."""
    sides = (p64.amax(0) - origin).clamp(min=extent * 1e-3)
    cell = float((sides.prod() / n * TARGET_OCCUPANCY) ** (1.0 / 3.0))
    smallest = extent * _MIN_CELL_FRACTION
    for _ in range(_SIZE_ITERATIONS):
        occupancy = _Grid(p64, origin, cell).occupancy()
        if occupancy <= 2.0 * TARGET_OCCUPANCY or cell <= smallest:
            break
        # Occupancy grows at most with the cube of the cell size, so this never overshoots.
        cell = max(cell * (TARGET_OCCUPANCY / occupancy) ** (1.0 / 3.0), smallest)
    return cell


def _shell_ranges(radius: int, device: torch.device) -> Tensor:
    """The cells at Chebyshev distance ``radius`` (0 and 1 together for radius 1) as z-runs
    (R, 4) = (dx, dy, dz_first, dz_last): whole columns on the rim of the (x, y) square,
    the top and bottom cells inside it."""
    r = torch.arange(-radius, radius + 1, device=device)
    dx, dy = (c.reshape(-1) for c in torch.meshgrid(r, r, indexing="ij"))
    rim = torch.maximum(dx.abs(), dy.abs()) == radius
    if radius <= 1:
        rim = torch.ones_like(rim)

    def runs(mask: Tensor, z_first: int, z_last: int) -> Tensor:
        x, y = dx[mask], dy[mask]
        return torch.stack([x, y, torch.full_like(x, z_first), torch.full_like(x, z_last)], -1)

    return torch.cat(
        [runs(rim, -radius, radius), runs(~rim, -radius, -radius), runs(~rim, radius, radius)]
    )


def _search(points: Tensor, grid: _Grid, ids: Tensor, best: Tensor, k: int) -> Tensor:
    """Search shells 1..:data:`MAX_SHELL` around the points ``ids``, keeping each one's k
    nearest in ``best``; returns the ids whose answer is not proven yet."""
    for radius in range(1, MAX_SHELL + 1):
        _search_shell(points, grid, ids, _shell_ranges(radius, points.device), radius == 1, best, k)
        kth = best[ids, k - 1]
        reach = (radius * grid.cell) ** 2 * _SAFETY
        coords = grid.coords[ids]
        everything = ((coords - radius <= 0) & (coords + radius >= grid.dims - 1)).all(-1)
        ids = ids[(kth > reach) & ~everything]
        if ids.numel() == 0:
            break
    return ids


def _search_shell(
    points: Tensor,
    grid: _Grid,
    ids: Tensor,
    ranges: Tensor,
    has_self: bool,
    best: Tensor,
    k: int,
) -> None:
    """Merge into ``best`` the points in the cell runs ``ranges`` around each point of ``ids``
    (``has_self``: the runs include the point's own cell)."""
    dev = points.device
    # Padding candidates point at an extra point at infinity, so they are never among the
    # nearest; a point finds itself at distance exactly 0 and drops one zero below.
    padded = torch.cat([points, points.new_full((1, 3), math.inf)])
    keys, by_cell = torch.sort(grid.key(grid.coords[ids]), stable=True)
    ids = ids[by_cell]
    n_query = torch.unique_consecutive(keys, return_counts=True)[1]
    query_start = torch.cumsum(n_query, 0) - n_query
    starts, counts = grid.lookup(grid.coords[ids[query_start]], ranges)  # (C, R)
    n_cand = counts.sum(-1)
    band = _band(n_query) * 64 + _band(n_cand)
    cells = torch.argsort(band, stable=True)
    per_band = torch.unique_consecutive(band[cells], return_counts=True)[1]
    lo = 0
    for size in per_band.tolist():
        group = cells[lo : lo + size]
        lo += size
        max_q, max_c = int(n_query[group].max()), int(n_cand[group].max())
        take = min(k + has_self, max_c)
        if take <= has_self:
            continue
        step = max(1, _MAX_PAIRS // (max_q * max_c))
        slot = torch.arange(max_q, device=dev)
        for i in range(0, size, step):
            part = group[i : i + step]
            valid = slot < n_query[part, None]
            queries = ids[(query_start[part, None] + slot).clamp(max=ids.numel() - 1)]
            cands = _candidate_matrix(grid, starts[part], counts[part], max_c, points.shape[0])
            d2 = squared_distances(points[queries][:, :, None], padded[cands][:, None])
            near = torch.topk(d2, take, dim=-1, largest=False).values
            rows = queries[valid]
            merged = torch.cat([best[rows], near[valid][:, int(has_self) :]], dim=1)
            best[rows] = torch.sort(merged, dim=1).values[:, :k]


def _band(x: Tensor) -> Tensor:
    """Size bands: sizes in one band are within a factor 4/3 of each other (0 alone)."""
    return torch.floor(torch.log(x.double().clamp(min=1.0)) / math.log(4.0 / 3.0)).long() + (x > 0)


def _candidate_matrix(grid: _Grid, starts: Tensor, counts: Tensor, width: int, pad: int) -> Tensor:
    """Point ids (T, width) of the runs given by ``starts``, ``counts`` (T, R), row by row,
    padded with ``pad``."""
    t, r = counts.shape
    flat = counts.reshape(-1)
    total = int(flat.sum())
    dev = counts.device
    run = torch.repeat_interleave(torch.arange(t * r, device=dev), flat, output_size=total)
    first = torch.cumsum(flat, 0) - flat  # of each run, in the flat list of all pairs
    index = torch.arange(total, device=dev)
    row = torch.div(run, r, rounding_mode="floor")
    out = torch.full((t, width), pad, dtype=torch.long, device=dev)
    out[row, index - first[row * r]] = grid.order[starts.reshape(-1)[run] + index - first[run]]
    return out
