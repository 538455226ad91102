"""How close an inversion of a world head came to the truth: novel views and the mesh.

Whole-image PSNR on the white background flatters (most pixels are background and easy), so
PSNR over the head's pixels (its silhouette dilated by one pixel) is reported beside it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dreamlift.cameras import Cameras
from dreamlift.generators.base import Generator3D
from dreamlift.methods.invert.inputs import Pose, pose_cameras, render_world_head
from dreamlift.metrics.image import masked_psnr

NOVEL_POSES = (Pose(-40.0, 10.0), Pose(40.0, 10.0), Pose(0.0, 45.0))
"""±40° of yaw and a view from above: the views a single-image inversion must invent."""
SILHOUETTE_POSES = tuple(Pose(45.0 * i, 10.0) for i in range(8))


def head_pixels(alpha: Tensor) -> Tensor:
    """The head's silhouette (alpha > 0.5) dilated by one pixel, as a float mask."""
    return F.max_pool2d((alpha > 0.5).float(), 3, 1, 1)


def identity_embedding(identity: nn.Module, images: Tensor) -> Tensor:
    """Unit embeddings of images (N, 3, H, W) at the identity network's own resolution
    (toy-id: 64 px, ArcFace's role); differentiable, for identity losses."""
    size = identity.cfg.resolution
    if images.shape[-1] != size:
        images = F.interpolate(images, size=(size, size), mode="bilinear")
    return identity(images.float())


def identity_similarity(identity: nn.Module, a: Tensor, b: Tensor) -> Tensor:
    """Cosine similarity (N,) of an identity network's embeddings of image batches ``a`` and
    ``b`` (N, 3, H, W)."""
    with torch.no_grad():
        return (identity_embedding(identity, a) * identity_embedding(identity, b)).sum(-1)


@torch.no_grad()
def novel_view_scores(
    gen: Generator3D,
    ws: Tensor,
    head: int,
    resolution: int,
    poses: tuple[Pose, ...] = NOVEL_POSES,
    identity: nn.Module | None = None,
) -> dict[str, float]:
    """Mean PSNR over ``poses``, whole image and head pixels, and with an ``identity``
    network the mean cosine similarity of each novel view's identity embedding with the true
    view's (``novel_identity``: whether the invented views are still the same person)."""
    truth = render_world_head(head, list(poses), resolution)
    cams = pose_cameras(poses, resolution)
    planes = gen.synthesis(ws)
    pred = gen.render(planes, cams.to(planes.device)).rgb.cpu()
    whole = [masked_psnr(pred[i], truth["rgb"][i]) for i in range(len(poses))]
    inner = [
        masked_psnr(pred[i], truth["rgb"][i], head_pixels(truth["alpha"][i : i + 1])[0])
        for i in range(len(poses))
    ]
    scores = {"novel_psnr": sum(whole) / len(whole), "novel_psnr_head": sum(inner) / len(inner)}
    if identity is not None:
        scores["novel_identity"] = float(identity_similarity(identity, pred, truth["rgb"]).mean())
    return scores


def _edge(p: Tensor, q: Tensor, x: Tensor) -> Tensor:
    """Signed area of (p, q, x): which side of the edge p→q the points x lie on."""
    return (q[..., 0] - p[..., 0]) * (x[..., 1] - p[..., 1]) - (q[..., 1] - p[..., 1]) * (
        x[..., 0] - p[..., 0]
    )


def _covered(tri: Tensor, centres: Tensor) -> Tensor:
    """Whether each pixel centre (…, 2) lies in its triangle (…, 3, 2), either winding."""
    a, b, c = tri[..., 0, :], tri[..., 1, :], tri[..., 2, :]
    e0, e1, e2 = _edge(a, b, centres), _edge(b, c, centres), _edge(c, a, centres)
    return ((e0 >= 0) & (e1 >= 0) & (e2 >= 0)) | ((e0 <= 0) & (e1 <= 0) & (e2 <= 0))


def mesh_silhouettes(
    vertices: np.ndarray, faces: np.ndarray, cameras: Cameras, window: int = 4
) -> Tensor:
    """(V, H, W) bool: pixels whose centre falls inside a projected triangle (a silhouette
    needs no depth test). Each triangle tests the ``window``² pixel centres from the corner
    of its bounding box; the few larger triangles test every pixel of their box."""
    verts = torch.from_numpy(vertices).float()
    tris = torch.from_numpy(faces).long()
    h, w = cameras.height, cameras.width
    offsets = torch.stack(
        torch.meshgrid(torch.arange(window), torch.arange(window), indexing="xy"), -1
    ).reshape(-1, 2)
    out = []
    for v in range(len(cameras)):
        uv = cameras[v].project(verts[None])[0][0]
        tri = uv[tris]  # (F, 3, 2) pixel coordinates
        lo = (tri.amin(dim=1) - 0.5).ceil().long()  # first pixel whose centre may be inside
        hi = (tri.amax(dim=1) - 0.5).floor().long()
        mask = torch.zeros(h * w, dtype=torch.bool)
        small = ((hi - lo) < window).all(dim=1)
        pix = lo[small][:, None, :] + offsets[None]  # (F_small, window², 2)
        hit = _covered(tri[small][:, None], pix.float() + 0.5)
        hit &= (pix[..., 0] >= 0) & (pix[..., 0] < w) & (pix[..., 1] >= 0) & (pix[..., 1] < h)
        mask[(pix[..., 1] * w + pix[..., 0])[hit]] = True
        for t, a, b in zip(tri[~small], lo[~small], hi[~small], strict=False):
            x0, x1 = max(int(a[0]), 0), min(int(b[0]), w - 1)
            y0, y1 = max(int(a[1]), 0), min(int(b[1]), h - 1)
            if x0 > x1 or y0 > y1:
                continue
            xs, ys = torch.arange(x0, x1 + 1), torch.arange(y0, y1 + 1)
            grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).reshape(-1, 2)
            inside = _covered(t[None], grid.float() + 0.5)
            mask[(grid[:, 1] * w + grid[:, 0])[inside]] = True
        out.append(mask.view(h, w))
    return torch.stack(out)


def mesh_silhouette_iou(
    vertices: np.ndarray, faces: np.ndarray, head: int, resolution: int = 64
) -> float:
    """Mean IoU of the mesh's silhouettes against the true head's at 8 views around it."""
    poses = list(SILHOUETTE_POSES)
    truth = render_world_head(head, poses, resolution)["alpha"][:, 0] > 0.5
    cams = pose_cameras(poses, resolution)
    pred = mesh_silhouettes(vertices, faces, cams)
    inter = (pred & truth).flatten(1).sum(1).float()
    union = (pred | truth).flatten(1).sum(1).float().clamp(min=1)
    return float((inter / union).mean())
